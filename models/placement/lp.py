"""The placement LP, built in bulk from NumPy arrays straight into a MathOpt model proto, and solved by
OR-Tools MathOpt (HiGHS by default, or GLOP).

Per item n (indices: FC f, DC d, region r, speed s, scenario k with probability p_k; window W days):

  variables  x_f   >= 0   target units at FC f
             y_d   >= 0   target units at DC d
             w_df  >= 0   expected refill units DC d -> FC f over the window
             z_frsk >= 0  units of scenario k's speed-s demand in region r served from FC f
             u_rsk >= 0   units of that demand lost

  cost       h_n sum_f x_f + h'_n sum_d y_d + sum_df t_df w_df
             + sum_k p_k [ sum_frs (c_fr + l_s [FC f misses speed s in r]) z_frsk + pi_n sum_rs u_rsk ]

  demand     sum_f z_frsk + u_rsk = m_s D_nrk                (every r, s, k: the dynamic fulfillment)
  stock      sum_rs z_frsk <= x_f                            (every f, k: one pool serves every speed)
             (+ beta_f sum_d w_df on the left: the FC's lane cycle and lead-time safety, Instance.fc_extra)
  refill     sum_d w_df = sum_k p_k sum_rs z_frsk            (every f: DCs replace what FC f sells)
  DC cover   cover_d sum_f w_df <= y_d                       (every d: vendor lead time + safety)

Coupling (the capacities; `usage` below is each item's left-hand side):
  FC storage  sum_n cube_n x_nf <= S_f        DC storage  sum_n cube_n y_nd <= S_d
  FC flow     sum_n sum_k p_k sum_rs z_nfrsk / W <= Q_f   DC flow  sum_n sum_f w_ndf / W <= Q_d

Every block (one item) has the same constraint matrix; only costs, demands and the cube differ, so a
batch of items is one template shifted along the diagonal: no Python loop over rows or items.
The monolithic reference adds the coupling rows; a Lagrangian subproblem instead prices them into the
costs (lambda . usage); primal recovery gives each item its own share of every capacity (`caps`).

Size: the bulk LP build and its solve share one proto layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from echelon.models.placement.instance import SPEEDS, Instance

OPTIMAL = 1   # TerminationReasonProto.TERMINATION_REASON_OPTIMAL


class SolveError(RuntimeError):
    """The solver did not prove optimality: nothing built on this solve may be published."""


@dataclass(frozen=True)
class Layout:
    F: int
    D: int
    R: int
    S: int
    K: int

    @property
    def ox(self): return 0
    @property
    def oy(self): return self.F
    @property
    def ow(self): return self.F + self.D
    @property
    def oz(self): return self.ow + self.D * self.F
    @property
    def ou(self): return self.oz + self.F * self.R * self.S * self.K
    @property
    def n(self): return self.ou + self.R * self.S * self.K
    @property
    def resources(self): return 2 * (self.F + self.D)

    def z(self, f, r, s, k):
        return self.oz + ((f * self.R + r) * self.S + s) * self.K + k


def layout_of(inst: Instance) -> Layout:
    N, F, D, R, K = inst.shape
    return Layout(F, D, R, len(SPEEDS), K)


@lru_cache(maxsize=16)
def _template(lay: Layout, prob: tuple, cover: tuple, window: int, safety: tuple = ()):
    """The one-item constraint matrix (rows, cols, coefs, row kinds) and the usage matrix
    (rows, cols, coefs, multiply-by-cube flag), both sorted row-major."""
    F, D, R, S, K = lay.F, lay.D, lay.R, lay.S, lay.K
    p = np.asarray(prob)
    f, r, s, k = (a.ravel() for a in np.meshgrid(np.arange(F), np.arange(R), np.arange(S), np.arange(K), indexing="ij"))
    zcol = lay.z(f, r, s, k)
    rows, cols, coefs = [], [], []
    # demand rows 0..RSK-1
    dem = (r * S + s) * K + k
    rows += [dem, np.arange(R * S * K)]
    cols += [zcol, lay.ou + np.arange(R * S * K)]
    coefs += [np.ones(zcol.size), np.ones(R * S * K)]
    # stock rows RSK + f*K + k
    base = R * S * K
    rows += [base + f * K + k, base + np.arange(F * K)]
    cols += [zcol, lay.ox + np.repeat(np.arange(F), K)]
    coefs += [np.ones(zcol.size), -np.ones(F * K)]
    if any(safety):
        # lane cycle + lead-time safety stock: + beta_f sum_d w_df (the FC's expected refill flow) in every stock row
        sd_, sf_, sk_ = (a.ravel() for a in np.meshgrid(np.arange(D), np.arange(F), np.arange(K), indexing="ij"))
        rows += [base + sf_ * K + sk_]
        cols += [lay.ow + sd_ * F + sf_]
        coefs += [np.asarray(safety, float)[sf_]]
    # refill rows
    base2 = base + F * K
    dd, ff = (a.ravel() for a in np.meshgrid(np.arange(D), np.arange(F), indexing="ij"))
    rows += [base2 + ff, base2 + f]
    cols += [lay.ow + dd * F + ff, zcol]
    coefs += [np.ones(dd.size), -p[k]]
    # DC cover rows
    base3 = base2 + F
    rows += [base3 + dd, base3 + np.arange(D)]
    cols += [lay.ow + dd * F + ff, lay.oy + np.arange(D)]
    coefs += [np.asarray(cover)[dd], -np.ones(D)]
    rows, cols, coefs = map(np.concatenate, (rows, cols, coefs))
    order = np.lexsort((cols, rows))
    kinds = np.concatenate([np.zeros(R * S * K), np.ones(F * K), np.full(F, 2), np.full(D, 3)]).astype(int)
    matrix = (rows[order], cols[order], coefs[order], kinds)

    # usage rows: FC storage f, DC storage d, FC flow f, DC flow d
    urows = [np.arange(F), F + np.arange(D), F + D + f, 2 * F + D + dd]
    ucols = [lay.ox + np.arange(F), lay.oy + np.arange(D), zcol, lay.ow + dd * F + ff]
    ucoef = [np.ones(F), np.ones(D), p[k] / window, np.full(dd.size, 1.0 / window)]
    ucube = [np.ones(F, bool), np.ones(D, bool), np.zeros(zcol.size, bool), np.zeros(dd.size, bool)]
    urows, ucols, ucoef, ucube = map(np.concatenate, (urows, ucols, ucoef, ucube))
    order = np.lexsort((ucols, urows))
    usage = (urows[order], ucols[order], ucoef[order], ucube[order])
    return matrix, usage


def templates(inst: Instance):
    return _template(layout_of(inst), tuple(inst.prob), tuple(inst.dc_cover), inst.window_days,
                     tuple(inst.fc_extra))


def costs(inst: Instance) -> np.ndarray:
    """[N, n] objective coefficients of every item's variables (true costs, no prices)."""
    lay = layout_of(inst)
    N = len(inst.item_ids)
    c = np.zeros((N, lay.n))
    c[:, lay.ox:lay.oy] = inst.hold_fc[:, None]
    c[:, lay.oy:lay.ow] = inst.hold_dc[:, None]
    c[:, lay.ow:lay.oz] = inst.transfer_cost.ravel()[None, :]
    late = np.asarray(inst.params.late_penalty)[None, None, :] * ~inst.meets           # [F, R, S]
    zc = (inst.ship_cost[:, :, None] + late)[:, :, :, None] * inst.prob[None, None, None, :]
    c[:, lay.oz:lay.ou] = zc.ravel()[None, :]
    c[:, lay.ou:] = (inst.lost_penalty[:, None] * np.tile(inst.prob, lay.R * lay.S)[None, :])
    return c


def demand_rhs(inst: Instance) -> np.ndarray:
    """[N, R*S*K] right-hand sides of the demand rows."""
    mix = np.asarray(inst.params.speed_mix)
    return (inst.demand[:, :, None, :] * mix[None, None, :, None]).reshape(len(inst.item_ids), -1)


def usage(inst: Instance, v: np.ndarray) -> np.ndarray:
    """[N, C] each item's use of every coupling resource, from its variable values v [N, n]."""
    _, (ur, uc, ucoef, ucube) = templates(inst)
    lay = layout_of(inst)
    coef = ucoef[None, :] * np.where(ucube[None, :], inst.cube[:, None], 1.0)
    out = np.zeros((len(inst.item_ids), lay.resources))
    np.add.at(out.T, ur, (coef * v[:, uc]).T)
    return out


def build(inst: Instance, lam: np.ndarray | None = None, caps: np.ndarray | None = None,
          coupled: bool = False):
    """One MathOpt ModelProto for all items of `inst`: block diagonal, plus
    - lam [C]: capacity prices added to the costs (Lagrangian subproblem),
    - caps [N, C]: each item's own share of every capacity (primal recovery),
    - coupled: the capacity rows across items (the monolithic model)."""
    lay = layout_of(inst)
    N, n = len(inst.item_ids), lay.n
    (mr, mc, mv, kinds), (ur, uc, uv, ucube) = templates(inst)
    m0 = len(kinds)
    c = costs(inst)
    ucoef = uv[None, :] * np.where(ucube[None, :], inst.cube[:, None], 1.0)       # [N, nnz_u]
    if lam is not None:
        np.add.at(c.T, uc, (ucoef * lam[ur][None, :]).T)

    block = np.arange(N)[:, None]
    rows = [(mr[None, :] + block * m0).ravel()]
    cols = [(mc[None, :] + block * n).ravel()]
    vals = [np.broadcast_to(mv, (N, mv.size)).ravel()]
    rhs = np.zeros((N, m0))
    rhs[:, kinds == 0] = demand_rhs(inst)
    equality = np.isin(kinds, (0, 2))[None, :]          # demand and refill rows; stock and DC cover are <= 0
    lower = np.where(equality, rhs, -np.inf)
    upper = rhs
    lo, up = [lower.ravel()], [upper.ravel()]
    next_row = N * m0
    C = lay.resources
    if caps is not None:                 # per-item capacity rows, item-major after the blocks
        rows.append((next_row + block * C + ur[None, :]).ravel())
        cols.append((uc[None, :] + block * n).ravel())
        vals.append(ucoef.ravel())
        lo.append(np.full(N * C, -np.inf))
        up.append(np.asarray(caps, float).ravel())
        next_row += N * C
    if coupled:                          # capacity rows over all items, resource-major
        order = np.lexsort((np.broadcast_to(uc[None, :] + block * n, ucoef.shape).ravel(),
                            np.broadcast_to(ur, ucoef.shape).ravel()))
        rows.append((next_row + np.broadcast_to(ur, ucoef.shape).ravel())[order])
        cols.append(np.broadcast_to(uc[None, :] + block * n, ucoef.shape).ravel()[order])
        vals.append(ucoef.ravel()[order])
        lo.append(np.full(C, -np.inf))
        up.append(inst.capacity)
        next_row += C

    model = proto_from_coo(c.ravel(), np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                           np.concatenate(lo), np.concatenate(up))
    nvars = N * n
    return model, {"blocks_rows": N * m0, "per_item_rows": N * C if caps is not None else 0,
                   "variables": nvars, "rows": next_row, "nonzeros": len(model.linear_constraint_matrix.row_ids)}


def proto_from_coo(objective, rows, cols, vals, lower, upper):
    """min objective . v, lower <= M v <= upper, v >= 0, as a MathOpt ModelProto; (rows, cols) row-major."""
    from ortools.math_opt import model_pb2

    model = model_pb2.ModelProto()
    nvars = len(objective)
    model.variables.ids.extend(range(nvars))
    model.variables.lower_bounds.extend(np.zeros(nvars).tolist())
    model.variables.upper_bounds.extend(np.full(nvars, np.inf).tolist())
    model.variables.integers.extend([False] * nvars)
    nz = np.flatnonzero(objective)
    model.objective.linear_coefficients.ids.extend(nz.tolist())
    model.objective.linear_coefficients.values.extend(np.asarray(objective)[nz].tolist())
    model.linear_constraints.ids.extend(range(len(lower)))
    model.linear_constraints.lower_bounds.extend(np.asarray(lower, float).tolist())
    model.linear_constraints.upper_bounds.extend(np.asarray(upper, float).tolist())
    mat = model.linear_constraint_matrix
    mat.row_ids.extend(np.asarray(rows).tolist())
    mat.column_ids.extend(np.asarray(cols).tolist())
    mat.coefficients.extend(np.asarray(vals, float).tolist())
    return model


def solve_proto(model, solver: str = "highs", time_limit_s: float | None = None):
    """Solve a ModelProto with MathOpt; return (objective, values [nvars], duals [rows], seconds)."""
    from ortools.math_opt.core.python import solver as core
    from ortools.math_opt.python import callback, init_arguments, model_parameters, parameters

    kinds = {"highs": parameters.SolverType.HIGHS, "glop": parameters.SolverType.GLOP,
             "pdlp": parameters.SolverType.PDLP}
    if solver not in kinds:
        raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(kinds)}")
    params = parameters.SolveParameters()
    if time_limit_s:
        import datetime as dt

        params.time_limit = dt.timedelta(seconds=time_limit_s)
    result = core.solve(model, kinds[solver].value, init_arguments.StreamableSolverInitArguments().to_proto(),
                        params.to_proto(), model_parameters.ModelSolveParameters().to_proto(), None,
                        callback.CallbackRegistration().to_proto(), None, None)
    if result.termination.reason != OPTIMAL or not result.solutions:
        raise SolveError(f"{solver} did not reach optimality: termination {result.termination.reason} "
                         f"{result.termination.detail!r}")
    sol = result.solutions[0]
    values = np.zeros(len(model.variables.ids))
    pv = sol.primal_solution.variable_values
    values[np.asarray(pv.ids, dtype=int)] = np.asarray(pv.values)
    duals = np.zeros(len(model.linear_constraints.ids))
    dv = sol.dual_solution.dual_values
    if len(dv.ids):
        duals[np.asarray(dv.ids, dtype=int)] = np.asarray(dv.values)
    seconds = result.solve_stats.solve_time.seconds + result.solve_stats.solve_time.nanos / 1e9
    return sol.primal_solution.objective_value, values, duals, seconds


def solve_items(inst: Instance, lam: np.ndarray | None = None, caps: np.ndarray | None = None,
                solver: str = "highs", chunk: int = 64) -> dict:
    """Solve every item's block (independently; in chunks so each LP stays small).
    Returns values [N, n], true cost [N], priced cost [N] and usage [N, C]."""
    lay = layout_of(inst)
    N = len(inst.item_ids)
    values = np.zeros((N, lay.n))
    seconds = 0.0
    for start in range(0, N, chunk):
        part = inst.subset(np.arange(start, min(N, start + chunk)))
        model, _ = build(part, lam=lam, caps=None if caps is None else caps[start:start + chunk])
        _, v, _, sec = solve_proto(model, solver)
        values[start:start + len(part.item_ids)] = v.reshape(len(part.item_ids), lay.n)
        seconds += sec
    true_cost = (costs(inst) * values).sum(axis=1)
    use = usage(inst, values)
    priced = true_cost + (use @ lam if lam is not None else 0.0)
    return {"values": values, "cost": true_cost, "priced": priced, "usage": use, "solver_seconds": seconds}


# Peak RSS per nonzero of a monolithic solve through MathOpt/HiGHS, measured on the 2,150 x 8 x 4 instance
# (2,098 MB for its nonzeros; benchmarks/results/placement_scaling.md): the proto, HiGHS' copy and its
# factorisation. 3,000 x 20 x 40 at this rate: ~77 GB (it was killed at 16 GB beside another job).
KB_PER_NONZERO = 0.49


class TooLarge(SolveError):
    """The monolithic model would not fit in memory: said before it is built."""


def monolithic_size(inst: Instance) -> dict:
    """Variables, rows, nonzeros and the estimated peak memory (GB) of the monolithic model, from the
    one-item templates (nothing is built)."""
    lay = layout_of(inst)
    (mr, _, _, kinds), (ur, _, _, _) = templates(inst)
    N = len(inst.item_ids)
    nonzeros = N * (len(mr) + len(ur))
    return {"variables": N * lay.n, "rows": N * len(kinds) + lay.resources, "nonzeros": nonzeros,
            "memory_gb": nonzeros * KB_PER_NONZERO / 1024 ** 2}


def available_memory_gb() -> float:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), in GB."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 1024 ** 3


def check_fits(inst: Instance, memory_gb: float | None = None) -> dict:
    """The monolithic model's size; raises TooLarge (one line: the size, the estimate, the memory) when its
    estimated peak exceeds `memory_gb` (default: the memory available now)."""
    size = monolithic_size(inst)
    limit = available_memory_gb() if memory_gb is None else memory_gb
    if size["memory_gb"] > limit:
        N, F, D, R, K = inst.shape
        raise TooLarge(f"the monolithic model of {N} items x {F} FCs x {R} regions ({size['variables']:,} variables, "
                       f"{size['nonzeros']:,} nonzeros) needs ~{size['memory_gb']:.1f} GB ({KB_PER_NONZERO} kB per "
                       f"nonzero, measured) and {limit:.1f} GB is available: not building it; use the decomposition")
    return size


def solve_monolithic(inst: Instance, solver: str = "highs", time_limit_s: float | None = None,
                     memory_gb: float | None = None) -> dict:
    """The reference: every item and every capacity in one LP. Shadow prices are the coupling rows' duals
    (MathOpt's sign convention for a binding <= row of a minimisation is negative: flip it). Says up front
    (TooLarge) when the model would not fit in `memory_gb` (default: the memory available)."""
    check_fits(inst, memory_gb)
    model, size = build(inst, coupled=True)
    objective, v, duals, seconds = solve_proto(model, solver, time_limit_s)
    lay = layout_of(inst)
    N = len(inst.item_ids)
    values = v.reshape(N, lay.n)
    return {"objective": objective, "values": values, "usage": usage(inst, values),
            "prices": np.maximum(0.0, -duals[-lay.resources:]), "solver_seconds": seconds, **size}


def parts_from_values(inst: Instance, values: np.ndarray) -> dict:
    """The plan's linear parts from an item's variables v [N, n] (what `plan_from_parts` needs; a convex
    combination of plans is the same combination of their parts): x [N,F], y [N,D], dc_out [N,D] (refill
    units out of each DC), transfer [N,F] (refill cost into each FC), served and zcost [N,F,S] (expected units and their shipping + late cost per FC and
    speed), lost_units and lost_cost [N]."""
    lay = layout_of(inst)
    N, F, D, R, K = inst.shape
    S = lay.S
    c = costs(inst)
    w = values[:, lay.ow:lay.oz].reshape(N, D, F)
    z = values[:, lay.oz:lay.ou].reshape(N, F, R, S, K)
    u = values[:, lay.ou:]
    return {"x": values[:, lay.ox:lay.oy], "y": values[:, lay.oy:lay.ow], "dc_out": w.sum(axis=2),
            "transfer": (inst.transfer_cost[None] * w).sum(axis=1),
            "served": (z * inst.prob).sum(axis=(2, 4)),
            "zcost": (c[:, lay.oz:lay.ou].reshape(N, F, R, S, K) * z).sum(axis=(2, 4)),
            "lost_units": (u.reshape(N, R * S, K) * inst.prob).sum(axis=(1, 2)),
            "lost_cost": (c[:, lay.ou:] * u).sum(axis=1)}


def cost_and_usage(inst: Instance, parts: dict) -> tuple[np.ndarray, np.ndarray]:
    """True cost [N] and use of every coupling resource [N, C] of a plan given by its linear parts
    (FC flow is what the FC serves; DC flow what the DC sends out)."""
    W = inst.window_days
    x, y, served = parts["x"], parts["y"], parts["served"]
    cost = (inst.hold_fc * x.sum(axis=1) + inst.hold_dc * y.sum(axis=1) + parts["transfer"].sum(axis=1)
            + parts["zcost"].sum(axis=(1, 2)) + parts["lost_cost"])
    use = np.concatenate([inst.cube[:, None] * x, inst.cube[:, None] * y, served.sum(axis=2) / W,
                          parts["dc_out"] / W], axis=1)
    return cost, use


def plan_from_parts(inst: Instance, parts: dict) -> dict:
    """The plan with its expected cost attributed to facilities: x [N,F] and y [N,D] targets; served [N,F,S]
    expected units per FC and speed; fcost [N,F,S] the FC's holding (split over speeds by what it serves),
    shipping, late penalties and refill transfers; dcost [N,D] DC holding; lost units and their penalty
    (not attributable to any facility)."""
    S = len(SPEEDS)
    x, served = parts["x"], parts["served"]
    total = served.sum(axis=2, keepdims=True)
    share = np.where(total > 0, served / np.where(total > 0, total, 1.0), 1.0 / S)        # idle stock: even split
    fcost = parts["zcost"] + share * (inst.hold_fc[:, None] * x + parts["transfer"])[:, :, None]
    return {"x": x, "y": parts["y"], "served": served, "fcost": fcost, "dcost": inst.hold_dc[:, None] * parts["y"],
            "lost_units": parts["lost_units"], "lost_cost": parts["lost_cost"]}


def plan_parts(inst: Instance, values: np.ndarray) -> dict:
    """`plan_from_parts` of an item's variables v [N, n]."""
    return plan_from_parts(inst, parts_from_values(inst, values))
