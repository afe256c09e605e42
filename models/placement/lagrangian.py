"""Lagrangian decomposition of the placement LP: price the shared capacities, solve items apart.

Dualising the coupling rows A_n v_n <= b (storage and flow at every FC and DC) with prices lambda >= 0:

    L(lambda) = sum_n min_{v_n in V_n} (c_n + lambda A_n) v_n  -  lambda . b   <=   OPT   for every lambda.

Each item's minimum is a small LP, solved independently, in process or on Spark (parallel.py). By
default (`subproblems="fast"`, fastsub.py) all items are solved at once in NumPy: a layered newsvendor
plan (feasible: an upper bound per item) and a dual-feasible solution (a certified lower bound per item);
items whose certificate stays open are solved exactly by LP once the gap comes near the target.
`subproblems="lp"` solves every item's LP with HiGHS.
- Bound: L(lambda) with each item's certified lower bound in place of its minimum: still <= OPT.
- Multipliers: Kelley's cutting planes on L, i.e. the Dantzig-Wolfe restricted master over the item plans
  found so far (items pooled into <= `groups` groups), stabilised towards the best bound's prices.
- Primal recovery: the final master's convex combination of each item's plans (its parts are linear in
  the plan) respects every capacity (the master's rows) and costs the master's objective, an upper
  bound UB on OPT. Up to `lp_recovery_items` items, each item is also re-solved by LP within its share of
  every capacity (shares summing to the capacity; the capacity left over goes to the items held back by
  their share), and the cheaper plan is kept. gap = (UB - bound) / UB.
- Prices: the master's capacity duals, published in `capacity_prices` (zero where a capacity is slack).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from echelon.models.placement import lp
from echelon.models.placement.instance import Instance
from echelon.models.placement.parallel import PLAN_KEYS

log = logging.getLogger(__name__)


@dataclass
class Result:
    method: str
    objective: float            # cost of the recovered, capacity-feasible plan (upper bound)
    bound: float                # best Lagrangian dual bound (lower bound)
    gap: float
    iterations: int
    seconds: float
    status: str                 # optimal | gap_limit | iteration_limit | time_limit
    prices: np.ndarray          # [C] shadow prices, in capacity order
    usage: np.ndarray           # [C] the plan's use of every capacity
    plan: dict                  # per-item plan arrays (see lp.plan_parts)
    history: list = field(default_factory=list)
    solver: str = "highs"
    bound_prices: np.ndarray | None = None   # [C] the prices of the best bound

    def max_capacity_violation(self, inst: Instance) -> float:
        """Largest relative excess over any capacity (0 when every capacity holds)."""
        cap = inst.capacity
        return float(np.max(np.maximum(0.0, self.usage - cap) / np.maximum(cap, 1e-9), initial=0.0))


class _Average:
    """Mean of the iterates since the last-but-one power of two: the latter half-ish of the run."""

    def __init__(self):
        self.prev = self.cur = None
        self.n_prev = self.n_cur = 0
        self.t = 0

    def add(self, value):
        self.t += 1
        if self.t & (self.t - 1) == 0:          # a power of two: start a new segment
            self.prev, self.n_prev = self.cur, self.n_cur
            self.cur, self.n_cur = np.zeros_like(value), 0
        self.cur += value
        self.n_cur += 1

    def mean(self):
        total = self.cur + (self.prev if self.prev is not None else 0.0)
        return total / (self.n_cur + self.n_prev)


def shares(avg_usage: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """[N, C] each item's share of each capacity, proportional to its averaged usage, summing to cap."""
    total = avg_usage.sum(axis=0)
    n = avg_usage.shape[0]
    even = np.broadcast_to(cap / n, avg_usage.shape)
    scaled = avg_usage * np.where(total > 0, cap / np.where(total > 0, total, 1.0), 0.0)
    return np.where(total[None, :] > 0, scaled, even)


def recover(subsolve, inst: Instance, avg_usage: np.ndarray) -> dict:
    """Capacity-feasible plan from averaged usage: solve within shares, then hand out what is left."""
    cap = inst.capacity
    caps = shares(avg_usage, cap)
    first = subsolve(None, caps=caps, with_plan=True)
    left = np.maximum(0.0, cap - first["usage"].sum(axis=0))
    held = first["usage"] >= caps * (1 - 1e-6) - 1e-9          # items stopped by their share
    weight = np.where(held, first["usage"] + 1e-12, 0.0)
    wsum = weight.sum(axis=0)
    if (left[wsum > 0] > 1e-9 * cap[wsum > 0]).any():
        extra = np.where(wsum > 0, left / np.where(wsum > 0, wsum, 1.0), 0.0)[None, :] * weight
        # Spare capacity with no one held back goes back to everyone, evenly (it can only help).
        extra += np.where(wsum > 0, 0.0, left / len(caps))[None, :]
        second = subsolve(None, caps=np.minimum(first["usage"], caps) + extra, with_plan=True)
        if second["cost"].sum() <= first["cost"].sum():
            return second
    return first


def _master(costs: list, uses: list, cap: np.ndarray, solver: str):
    """The restricted master over the columns found so far (one column per item group and iteration):
        min sum_gj cost_gj a_gj  s.t.  sum_gj use_gj a_gj <= cap  (prices lambda),  sum_j a_gj = 1,  a >= 0.
    Returns its objective (an upper bound: a convex combination of item solutions that fits every
    capacity), the weights a [J, G] and the capacity prices lambda >= 0."""
    cost = np.stack(costs)                       # [J, G]
    use = np.stack(uses)                         # [J, G, C]
    J, G = cost.shape
    C = len(cap)
    by_row = use.transpose(2, 0, 1).reshape(C, J * G)
    r, c = np.nonzero(by_row)
    conv_rows = C + np.repeat(np.arange(G), J)
    conv_cols = (np.arange(J)[None, :] * G + np.arange(G)[:, None]).ravel()
    model = lp.proto_from_coo(cost.ravel(), np.concatenate([r, conv_rows]), np.concatenate([c, conv_cols]),
                              np.concatenate([by_row[r, c], np.ones(J * G)]),
                              np.concatenate([np.full(C, -np.inf), np.ones(G)]), np.concatenate([cap, np.ones(G)]))
    objective, alpha, duals, _ = lp.solve_proto(model, solver)
    return objective, alpha.reshape(J, G), np.maximum(0.0, -duals[:C])


def auto_subproblems(items: int, lp_items: int = 500) -> str:
    """Small instances: every item's LP is cheap, and exact columns need fewer iterations; else fast."""
    return "lp" if items <= lp_items else "fast"


def _combine(store: dict, alpha: np.ndarray, group: np.ndarray) -> dict:
    """Each item's plan as the master's convex combination of its columns: sum_j alpha[j, g(n)] part_j[n]."""
    out = {}
    for j, sol in store.items():
        weight = alpha[j][group]
        for key in PLAN_KEYS:
            value = sol[key] * weight.reshape((-1,) + (1,) * (np.ndim(sol[key]) - 1))
            out[key] = out[key] + value if key in out else value
    return out


def solve(inst: Instance, subsolve=None, max_iter: int = 60, tol: float = 1e-3, groups: int = 256,
          time_limit_s: float | None = None, solver: str = "highs", progress=None,
          subproblems: str = "auto", stabilise: float | None = None, keep: int | None = None,
          lp_recovery_items: int = 500) -> Result:
    """Prices from the restricted master (Kelley's cutting planes on L, i.e. Dantzig-Wolfe), item
    subproblems at those prices, until the master's upper bound and the best dual bound meet.

    The bound adds each item's certified lower bound (exact where the item was solved exactly), so it is
    valid whatever the subproblem method. Items left open by the fast solver are closed by LP once the
    gap comes near the target: the subproblems are asked to leave open at most a third of the last gap
    (never less than half of `tol`), relative to the priced total.

    Stabilised (Wentges): prices are asked at centre + stabilise x (master's prices - centre), the centre
    being the prices of the best bound so far, which damps Kelley's swings between extreme prices
    (default 0.5 with fast subproblems, 1.0 = plain Kelley with LP ones). `subproblems="auto"`: LP up to
    `lp_recovery_items` items, fast above."""
    from echelon.models.placement.parallel import LocalSolver

    if subproblems == "auto":
        subproblems = auto_subproblems(len(inst.item_ids), lp_recovery_items)
    if stabilise is None:
        stabilise = 0.5 if subproblems == "fast" else 1.0
    subsolve = subsolve or LocalSolver(inst, solver, subproblems)
    progress = progress or (lambda msg: log.info(msg))
    began = time.time()
    cap = inst.capacity
    N = len(inst.item_ids)
    G = max(1, min(groups, N))
    group = np.arange(N) % G                      # items interleaved over groups
    pool = lambda values: np.stack([np.bincount(group, weights=col, minlength=G) for col in np.atleast_2d(values.T)], axis=-1)

    # Column 0: every item ships nothing and loses its demand: uses no capacity, so the master is feasible.
    lost_units = (inst.demand * inst.prob).sum(axis=(1, 2))
    lost_all = inst.lost_penalty * lost_units
    zero = lambda *shape: np.zeros((N,) + shape)
    N_, F, D, R, K = inst.shape
    store = {0: {"x": zero(F), "y": zero(D), "dc_out": zero(D), "transfer": zero(F), "served": zero(F, 3),
                 "zcost": zero(F, 3), "lost_units": lost_units, "lost_cost": lost_all}}
    # Item-level plans are kept for the columns the master uses, at most `keep` of them (~2 GB); a column
    # the final master uses without its plan is solved again at its prices.
    keep = keep or max(2, int(2e9 // (8 * N * sum(np.prod(np.shape(v)[1:]) for v in store[0].values()))))
    costs, uses, lams = [np.bincount(group, weights=lost_all, minlength=G)], [np.zeros((G, len(cap)))], [None]
    exact_at = [None]
    lam = np.zeros(len(cap))
    best_bound, best_lam, master_lam = -np.inf, lam, lam
    history, status, it = [], "iteration_limit", 0
    upper, gap, alpha = float(lost_all.sum()), np.inf, np.ones((1, G))
    priced_total = None
    for it in range(1, max_iter + 1):
        target = None
        if priced_total is not None and np.isfinite(gap):
            target = max(tol / 2, min(gap, 1.0) / 3) * abs(upper) / max(priced_total, 1e-9)
        sub = subsolve(lam, with_plan=True, exact_gap=target)
        priced_total = float(sub["priced"].sum())
        bound = float(sub["lower"].sum() - lam @ cap)
        if bound > best_bound:
            best_bound, best_lam = bound, lam
        store[len(costs)] = {k: sub[k] for k in PLAN_KEYS}
        lams.append(lam)
        exact_at.append(target)
        costs.append(np.bincount(group, weights=sub["cost"], minlength=G))
        uses.append(pool(sub["usage"]))
        upper, alpha, master_lam = _master(costs, uses, cap, solver)
        lam = best_lam + stabilise * (master_lam - best_lam)
        # Keep item-level plans only for the columns the master uses (the others live on in the master).
        # Column 0 (lose everything) is cheap to rebuild, so it never counts against `keep`.
        for j in [j for j in store if j and alpha[j].max() <= 0] + sorted(set(store) - {0})[:-keep]:
            store.pop(j, None)
        gap = (upper - best_bound) / max(abs(upper), 1e-9)
        history.append({"iteration": it, "bound": bound, "best_bound": best_bound, "objective": upper,
                        "gap": gap, "seconds": time.time() - began, "exact_items": int(np.sum(sub.get("exact", 0))),
                        "max_violation": float(np.max((sub["usage"].sum(axis=0) - cap) / np.maximum(cap, 1.0)))})
        progress(f"placement lagrangian: iteration {it}/{max_iter}, bound {best_bound:,.2f}, master "
                 f"{upper:,.2f}, gap {gap:.4%}, {int(np.sum(sub.get('exact', 0)))} items by LP, "
                 f"{time.time() - began:.1f}s")
        if gap <= tol:
            status = "optimal" if gap <= 1e-7 else "gap_limit"
            break
        if time_limit_s and time.time() - began > time_limit_s:
            status = "time_limit"
            break

    # Primal recovery: the master's convex combination of item plans fits every capacity (its rows), and
    # costs the master's objective. A column whose plan was dropped is solved again at its prices.
    for j in np.flatnonzero(alpha.max(axis=1) > 0):
        if j not in store:          # (never column 0: it is always kept)
            again = subsolve(lams[j], with_plan=True, exact_gap=exact_at[j])
            store[j] = {k: again[k] for k in PLAN_KEYS}
    best = _combine({j: store[j] for j in np.flatnonzero(alpha.max(axis=1) > 0)}, alpha, group)
    best["cost"], best["usage"] = lp.cost_and_usage(inst, best)
    if N <= lp_recovery_items:
        # Small instances also try re-solving each item by LP within its share of every capacity (its usage
        # in the combination), which can beat the combination when the loop stopped early; the cheaper wins.
        again = recover(subsolve, inst, best["usage"])
        if again["cost"].sum() < best["cost"].sum():
            best = {k: again[k] for k in PLAN_KEYS + ("cost", "usage")}
    plan = lp.plan_from_parts(inst, best)
    plan["cost"], plan["usage"] = best["cost"], best["usage"]
    objective = float(plan["cost"].sum())
    gap = (objective - best_bound) / max(abs(objective), 1e-9)
    history.append({"iteration": it, "bound": best_bound, "best_bound": best_bound, "objective": objective,
                    "gap": gap, "seconds": time.time() - began, "max_violation": 0.0, "recovered": True})
    return Result(method="lagrangian", objective=objective, bound=best_bound, gap=gap, iterations=it,
                  seconds=time.time() - began, status=status, prices=master_lam, usage=best["usage"].sum(axis=0),
                  plan=plan, history=history, solver=solver, bound_prices=best_lam)


def monolithic(inst: Instance, solver: str = "highs", time_limit_s: float | None = None) -> Result:
    """The reference: the whole LP in one solve; duals of the capacity rows are the shadow prices."""
    began = time.time()
    out = lp.solve_monolithic(inst, solver, time_limit_s)
    plan = lp.plan_parts(inst, out["values"])
    plan.update({"cost": (lp.costs(inst) * out["values"]).sum(axis=1), "usage": out["usage"]})
    return Result(method="monolithic", objective=out["objective"], bound=out["objective"], gap=0.0,
                  iterations=1, seconds=time.time() - began, status="optimal", prices=out["prices"],
                  usage=out["usage"].sum(axis=0), plan=plan,
                  history=[{"iteration": 0, "bound": out["objective"], "best_bound": out["objective"],
                            "objective": out["objective"], "gap": 0.0, "seconds": time.time() - began}],
                  solver=solver)
