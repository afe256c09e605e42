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
  their share), and the cheaper plan is kept. With fast subproblems, once the loop stalls, `polish`
  re-solves items by LP within their own usage, those adding most to the gap first (the layered plans keep
  each demand layer's stock apart; the LP pools it). gap = (UB - bound) / UB.
- Prices: the master's capacity duals, published in `capacity_prices` (zero where a capacity is slack).

Size: the decomposition loop, its price updates and the monolithic reference share Result.
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


def polish(inst: Instance, best: dict, lam: np.ndarray, lower: np.ndarray, bound: float, tol: float,
           budget_s: float, solver: str = "highs", progress=None) -> tuple[dict, int]:
    """The plan `best` (parts, cost [N], usage [N, C]; capacity-feasible) with items re-solved exactly by LP
    within their own usage of every capacity, those adding most to the gap first, until the gap to `bound`
    is at most `tol` or `budget_s` seconds are spent. Returns the plan and the number of items re-solved.

    Why: the fast subproblems' layered plans keep every demand layer's stock apart, while the item LP lets
    stock that a high demand layer holds serve other regions' orders in the scenarios where that layer does
    not come (pooling). Measured at the best prices of 3,000 x 20 x 40: the layered plans cost 1.0% more
    than the items' LP optima while the tightened certificates are within 0.1% of them, so the gap left
    after the loop is on the plan's side. An item re-solved within its own shares stays inside them, so
    the plan still fits every capacity, and it is never worse (its old plan is feasible there).
    An item's part of the gap: its priced cost at `lam` less its certified lower bound there (the parts add
    up to the gap less the prices' slack)."""
    from echelon.models.placement import fastsub

    parts = {k: np.array(best[k], float, copy=True) for k in PLAN_KEYS}
    cost, use = np.array(best["cost"], float, copy=True), np.array(best["usage"], float, copy=True)
    open_ = np.nan_to_num(cost + use @ lam - lower, nan=0.0, posinf=0.0)
    order = np.argsort(-open_)
    order = order[open_[order] > 1e-9 * max(1.0, abs(bound) / max(len(cost), 1))]
    solved = [0]

    N, F, D, R, K = inst.shape

    def work(idx):
        for n in idx:
            if (cost.sum() - bound) / max(abs(cost.sum()), 1e-9) <= tol:
                return                                       # (the gap is met: the rest is skipped)
            # Only the FCs where the item has space can hold its stock: its LP on those FCs alone
            # (on 3,000 x 20 x 40 a third of the variables or fewer).
            keep = np.flatnonzero(use[n, :F] > 0)
            if not len(keep):
                continue
            cols = np.concatenate([keep, F + np.arange(D), F + D + keep, 2 * F + D + np.arange(D)])
            sub = with_fcs(inst.subset([n]), keep)
            try:
                res = lp.solve_items(sub, caps=use[n][cols][None, :] * (1 - 1e-7), solver=solver)
            except lp.SolveError:
                continue
            if res["cost"][0] >= cost[n] - 1e-9 * max(1.0, abs(cost[n])):
                continue
            new = lp.parts_from_values(sub, res["values"])
            for key in PLAN_KEYS:
                if key in ("x", "transfer", "served", "zcost"):             # the parts indexed by FC
                    parts[key][n] = 0.0
                    parts[key][n, keep] = new[key][0]
                else:
                    parts[key][n] = new[key][0]
            cost[n] = res["cost"][0]
            use[n] = 0.0
            use[n, cols] = res["usage"][0]
            solved[0] += 1
            if progress and solved[0] % 100 == 0:
                progress(f"placement lagrangian: polish, {solved[0]} items re-solved, plan {cost.sum():,.2f}")

    fastsub.within(order, budget_s, work, first=4, most=16)
    return {**parts, "cost": cost, "usage": use}, solved[0]


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


@dataclass(frozen=True)
class Strategy:
    """How `solve` attacks an instance, chosen from its properties (`strategy`), with the reason."""
    subproblems: str        # "lp": every item's exact LP; "fast": fastsub's NumPy plan and certificate
    prices: str             # "kelley": the restricted master's duals; "smoothed": a sample's smoothed dual
    sample_items: int       # items in the price sample (smoothed prices)
    reason: str


# Measured on the 2-core machine (benchmarks/results/placement_scaling.md): an item LP costs ~1e-5 s per
# cell (F x R x S x K), so up to ~250,000 cells in all every item's LP takes a few seconds an iteration.
LP_CELLS = 250_000
# Kelley's cutting planes need iterations in proportion to the capacities they price; below this many
# priced capacities (8 FCs + 1 DC: 18) they converged in 17-30 iterations, above it (20 FCs: 48; 50 FCs:
# 120) they crawl from the zero-price bound while the smoothed dual's quasi-Newton search does not.
KELLEY_CAPACITIES = 30
# A smoothed-dual evaluation of this many cells (item x F x R x S x K) takes ~0.5 s on a loaded 2-core
# machine; the price search makes ~200 of them.
SAMPLE_CELLS = 10_000_000


def strategy(inst: Instance, subproblems: str = "auto", prices: str = "auto") -> Strategy:
    """The subproblem method and the price method from what the instance needs (not from an item count):
    - subproblems: "lp" when all item LPs together are small (items x cells per item <= LP_CELLS), else
      "fast" (the NumPy plan with a certificate, items left open closed by LP within a time budget);
    - prices: "smoothed" when many capacities are priced (2 (FCs + DCs) > KELLEY_CAPACITIES) and the
      subproblems are fast, else Kelley's cutting planes;
    - the price sample: as many items as fit SAMPLE_CELLS cells (all items when they fit).
    `prices="warm"` (never chosen by itself): Kelley's cutting planes started and centred at the sample's
    smoothed prices; on 3,000 x 20 x 40 its bound stayed at the start's for 10+ iterations (measured)."""
    N, F, D, R, K = inst.shape
    cells = F * R * len(inst.params.speed_mix) * K
    C = len(inst.capacity)
    why = []
    if subproblems == "auto":
        subproblems = "lp" if N * cells <= LP_CELLS else "fast"
        why.append(f"{N} items x {cells} cells {'<=' if subproblems == 'lp' else '>'} {LP_CELLS:,}: {subproblems} "
                   "subproblems")
    if prices == "auto":
        prices = "smoothed" if subproblems == "fast" and C > KELLEY_CAPACITIES else "kelley"
        why.append(f"{C} priced capacities {'>' if C > KELLEY_CAPACITIES else '<='} {KELLEY_CAPACITIES}: "
                   f"{prices} prices")
    sample = int(min(N, max(500, SAMPLE_CELLS // max(cells, 1))))
    return Strategy(subproblems, prices, sample, "; ".join(why))


def auto_subproblems(inst: Instance) -> str:
    return strategy(inst).subproblems


def price_scale(inst: Instance) -> np.ndarray:
    """[C] a unit per capacity for the price search: 1% of the price at which the median item would rather
    lose its sale than use a cubic foot (storage) or a unit/day of outbound flow (flow), times
    sqrt(mean capacity of its kind / its capacity): a small facility's usage moves less per unit of price,
    so its price gets a larger unit (a diagonal preconditioner for the quasi-Newton search)."""
    N, F, D, R, K = inst.shape
    storage = 0.01 * np.median(inst.lost_penalty / inst.cube)
    flow = 0.01 * np.median(inst.lost_penalty) * inst.window_days
    cap = inst.capacity
    kind = np.repeat(np.arange(4), [F, D, F, D])
    mean = np.array([cap[kind == k].mean() for k in range(4)])[kind]
    return (np.array([storage, storage, flow, flow])[kind]
            * np.sqrt(mean / np.maximum(cap, 1e-3 * np.maximum(mean, 1e-12))))


def smooth_prices(inst: Instance, lam=None, temperatures=(0.05, 0.02, 0.01, 0.005), evaluations: int = 50,
                  progress=None) -> np.ndarray:
    """Prices that maximise the entropy-smoothed dual  sum_n soft-min_n(lam) - lam . b  (fastsub.smoothed),
    by L-BFGS-B from `lam`, one temperature after another (each warm-starts the next, sharper one).

    The exact dual L is piecewise linear: where several FCs are close substitutes, an item's whole demand
    jumps from one to another as prices move, and cutting planes need many iterations per capacity to
    price them apart. The smoothed dual is differentiable (its gradient is the spread plan's usage minus the
    capacity), so a quasi-Newton method finds prices where usage meets capacity in tens of evaluations; the
    exact bound is then evaluated at those prices, so the smoothing never weakens what is certified."""
    from scipy.optimize import minimize

    from echelon.models.placement import fastsub

    cap = inst.capacity
    scale = price_scale(inst)
    u = np.zeros(len(cap)) if lam is None else np.asarray(lam, float) / scale
    for temperature in temperatures:
        def negative_dual(u, temperature=temperature):
            lam = u * scale
            value, parts = fastsub.smoothed(inst, lam, temperature)
            _, use = lp.cost_and_usage(inst, parts)
            return -(value.sum() - lam @ cap), -(use.sum(axis=0) - cap) * scale

        u = minimize(negative_dual, u, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(cap),
                     options={"maxfun": evaluations, "maxiter": evaluations}).x
        if progress:
            progress(f"placement lagrangian: smoothed prices at temperature {temperature}")
    return u * scale


def with_capacity(inst: Instance, cap: np.ndarray) -> Instance:
    """The instance with its coupling capacities replaced (in `capacity` order)."""
    from dataclasses import replace

    N, F, D, R, K = inst.shape
    fc_storage, dc_storage, fc_flow, dc_flow = np.split(np.asarray(cap, float), [F, F + D, 2 * F + D])
    return replace(inst, fc_storage=fc_storage, dc_storage=dc_storage, fc_flow=fc_flow, dc_flow=dc_flow)


def with_fcs(inst: Instance, keep) -> Instance:
    """The instance on the FCs `keep` only (every DC, region and item kept)."""
    from dataclasses import replace

    keep = np.asarray(keep)
    cols = lambda a: None if a is None else np.asarray(a)[:, keep]
    return replace(inst, fc_ids=inst.fc_ids[keep], ship_cost=inst.ship_cost[keep], meets=inst.meets[keep],
                   transfer_cost=inst.transfer_cost[:, keep], fc_storage=inst.fc_storage[keep],
                   fc_flow=inst.fc_flow[keep], transfer_lead=cols(inst.transfer_lead),
                   transfer_lead_sd=cols(inst.transfer_lead_sd))


def sample(inst: Instance, items: int, seed: int = 0) -> Instance:
    """A random sample of the items with every capacity scaled by the sample's share of the items (the
    network in miniature: its prices approximate the whole instance's when items are many)."""
    N = len(inst.item_ids)
    index = np.sort(np.random.default_rng(seed).choice(N, size=min(items, N), replace=False))
    return with_capacity(inst.subset(index), inst.capacity * len(index) / N)


def corrected_sample_prices(part: Instance, share: float, cap: np.ndarray, lam: np.ndarray, usage: np.ndarray,
                            temperature: float, evaluations: int = 25) -> np.ndarray:
    """Next prices from the sample as a surrogate of the whole instance, corrected for its sampling error.

    `usage` is the whole instance's smoothed usage at `lam`; the sample's, scaled up by 1 / share, misses
    it by a bias. The sample's smoothed dual is maximised again from `lam` with every capacity moved by that
    bias (share x (cap - bias)), so its prices are those where the whole instance's usage would meet the
    capacities if the bias stayed put. One smoothed solve of all items per call; the rest is the sample."""
    from echelon.models.placement import fastsub

    _, parts = fastsub.smoothed(part, lam, temperature)
    bias = usage - lp.cost_and_usage(part, parts)[1].sum(axis=0) / share
    target = with_capacity(part, share * np.maximum(cap - bias, 0.0))
    return smooth_prices(target, lam, temperatures=(temperature,), evaluations=evaluations)


def _combine(store: dict, alpha: np.ndarray, group: np.ndarray) -> dict:
    """Each item's plan as the master's convex combination of its columns: sum_j alpha[j, g(n)] part_j[n]."""
    out = {}
    for j, sol in store.items():
        weight = alpha[j][group]
        for key in PLAN_KEYS:
            value = sol[key] * weight.reshape((-1,) + (1,) * (np.ndim(sol[key]) - 1))
            out[key] = out[key] + value if key in out else value
    return out


def solve(inst: Instance, subsolve=None, max_iter: int = 60, tol: float = 1e-3, groups: int | None = None,
          time_limit_s: float | None = None, solver: str = "highs", progress=None,
          subproblems: str = "auto", stabilise: float | None = None, keep: int | None = None,
          lp_recovery_items: int = 500, prices: str = "auto", sample_items: int | None = None,
          temperature: float = 0.002, memory_gb: float = 6.0, ascent: int = 100,
          lp_share: float = 1.0, price_evaluations: int = 50, stall: float = 2e-4,
          loop_share: float = 0.6) -> Result:
    """Prices from the restricted master (Kelley's cutting planes on L, i.e. Dantzig-Wolfe), item
    subproblems at those prices, until the master's upper bound and the best dual bound meet.

    The bound adds each item's certified lower bound (exact where the item was solved exactly), so it is
    valid whatever the subproblem method. Items left open by the fast solver are closed by LP once the
    gap comes near the target: the subproblems are asked to leave open at most a third of the last gap
    (never less than half of `tol`), relative to the priced total.

    Stabilised (Wentges): prices are asked at centre + stabilise x (master's prices - centre), the centre
    being the prices of the best bound so far, which damps Kelley's swings between extreme prices
    (default 0.5 with fast subproblems, 1.0 = plain Kelley with LP ones). With fast subproblems the item
    LPs of an iteration get at most `lp_share` x the first iteration's seconds (widest certificates first),
    so an iteration does not slow down as more certificates open near the target (a 3,000 x 20 x 40
    instance went from 1-3 s to 120-150 s an iteration without it); after the loop the best prices'
    open certificates get supergradient steps, then LPs for up to 4 iterations' budget.

    Which subproblems and which prices: `strategy` (from the instance's properties, not its item count).
    With smoothed prices (fast subproblems, many priced capacities, where cutting planes move them too
    slowly), the prices come from a `sample_items` sample instead of the master: first the
    prices that maximise the sample's smoothed dual (`smooth_prices`), then, each iteration, the sample's
    prices corrected for its sampling error against all items' smoothed usage at the current prices
    (`corrected_sample_prices`). Every iteration adds, beside each item's exact response (the bound), its
    smoothed response at `temperature` (a column whose usage moves continuously with the prices, which
    the master mixes to fit the capacities: the upper bound and the plan), and items are pooled ~100 per
    group. There no item is closed by LP inside the loop (at 100,000 items that cost ~100 s an iteration
    and lifted the bound by 0.1%); instead, once the loop ends, the open certificates at the best bound's
    prices get `ascent` supergradient steps on their duals (`fastsub.tighten`).

    With fast subproblems the loop ends early when it stalls (the master's upper bound and the best bound
    each moved less than `stall`, relative, over the last 3 iterations) or has used `loop_share` of
    `time_limit_s`: what is left of the gap then is mostly the layered plans' own excess over the item
    LPs (no price moves it), which `polish` takes off the recovered plan item by item, the widest first,
    in the time that is left (without a time limit: as long as the loop took).

    `time_limit_s`: no iteration starts that would, as long as the last one and followed by the plan's
    recovery, end past it (the final tightening of the bound and the polish come after, within it)."""
    from echelon.models.placement import fastsub
    from echelon.models.placement.parallel import LocalSolver

    plan = strategy(inst, subproblems, prices)
    subproblems = plan.subproblems
    sample_items = sample_items or plan.sample_items
    if stabilise is None:
        stabilise = 0.5 if subproblems == "fast" else 1.0
    subsolve = subsolve or LocalSolver(inst, solver, subproblems)
    progress = progress or (lambda msg: log.info(msg))
    began = time.time()
    cap = inst.capacity
    N = len(inst.item_ids)
    smooth = subproblems == "fast" and plan.prices == "smoothed"
    progress(f"placement lagrangian: {plan.reason}")
    lp_budget = [None]              # seconds of item LPs allowed per iteration: lp_share x the fast solve's
    # Items pooled into groups, one convex combination per group: 256 by default; ~100 items per group on
    # the smoothed path, where the master's finer mixing of near-feasible columns is what closes the gap.
    groups = groups or (min(2048, max(256, N // 100)) if smooth else 256)
    G = max(1, min(groups, N))
    group = np.arange(N) % G                      # items interleaved over groups
    pool = lambda values: np.stack([np.bincount(group, weights=col, minlength=G) for col in np.atleast_2d(values.T)], axis=-1)
    comonotone = fastsub.comonotone_order(inst)[2]

    def column(lam, target, soft: float | None, exact: dict | None = None) -> dict:
        """Every item's plan at prices lam: exact (with its bound), or smoothed at temperature `soft` (the
        exact one, passed in or solved, for the items that are not comonotone)."""
        if exact is None and not (soft and comonotone.all()):
            exact = subsolve(lam, with_plan=True, exact_gap=target, **({"lp_budget_s": lp_budget[0]}
                                                                       if lp_budget[0] is not None else {}))
        if not soft:
            return exact
        _, parts = fastsub.smoothed(inst, lam, soft)
        mixed = {key: parts[key] if exact is None else
                 np.where(comonotone.reshape((-1,) + (1,) * (parts[key].ndim - 1)), parts[key], exact[key])
                 for key in PLAN_KEYS}
        mixed["cost"], mixed["usage"] = lp.cost_and_usage(inst, mixed)
        return mixed

    # Column 0: every item ships nothing and loses its demand: uses no capacity, so the master is feasible.
    lost_units = (inst.demand * inst.prob).sum(axis=(1, 2))
    lost_all = inst.lost_penalty * lost_units
    zero = lambda *shape: np.zeros((N,) + shape)
    N_, F, D, R, K = inst.shape
    store = {0: {"x": zero(F), "y": zero(D), "dc_out": zero(D), "transfer": zero(F), "served": zero(F, 3),
                 "zcost": zero(F, 3), "lost_units": lost_units, "lost_cost": lost_all}}
    # Item-level plans are kept for the columns the master uses, at most `keep` of them (`memory_gb`); a
    # column the final master uses without its plan is made again from its recipe (prices, kind).
    keep = keep or max(2, int(memory_gb * 1e9 // (8 * N * sum(np.prod(np.shape(v)[1:]) for v in store[0].values()))))
    costs, uses, recipes = [np.bincount(group, weights=lost_all, minlength=G)], [np.zeros((G, len(cap)))], [None]
    lam = np.zeros(len(cap))
    if smooth or plan.prices == "warm":
        # (warm: Kelley's cutting planes, started and centred at the sample's smoothed prices)
        part = sample(inst, sample_items)
        lam = smooth_prices(part, progress=progress, evaluations=price_evaluations)
        progress(f"placement lagrangian: prices from a {min(N, sample_items)}-item sample, {time.time() - began:.1f}s")
    best_bound, best_lam, master_lam = -np.inf, lam, lam
    history, status, it = [], "iteration_limit", 0
    upper, gap, alpha = float(lost_all.sum()), np.inf, np.ones((1, G))
    priced_total = None
    for it in range(1, max_iter + 1):
        started = time.time()
        target = None
        if priced_total is not None and np.isfinite(gap) and not smooth:
            target = max(tol / 2, min(gap, 1.0) / 3) * abs(upper) / max(priced_total, 1e-9)
        sub = column(lam, target, None)
        made = [time.time() - started]                       # seconds per column made this iteration
        if subproblems == "fast" and lp_budget[0] is None:
            # The first iteration closes nothing by LP (no target yet): its time is the fast solve's, and
            # item LPs may take at most lp_share x that per iteration from now on (an iteration then costs
            # at most ~(1 + lp_share) x the first, however many certificates are open).
            lp_budget[0] = max(0.5, lp_share * made[0])
        priced_total = float(sub["priced"].sum())
        bound = float(sub["lower"].sum() - lam @ cap)
        if bound > best_bound:
            best_bound, best_lam, best_sub = bound, lam, {k: sub[k] for k in ("priced", "lower")}
        for soft in (None, temperature) if smooth else (None,):
            t0 = time.time()
            col = column(lam, target, soft, exact=sub)
            if soft:
                made.append(time.time() - t0)
            store[len(costs)] = {k: col[k] for k in PLAN_KEYS}
            recipes.append((lam, target, soft))
            costs.append(np.bincount(group, weights=col["cost"], minlength=G))
            uses.append(pool(col["usage"]))
        upper, alpha, master_lam = _master(costs, uses, cap, solver)
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
        if subproblems == "fast" and len(history) > 3:
            moved = lambda key, sign: sign * (history[-1][key] - history[-4][key]) / max(abs(history[-1][key]), 1e-9)
            if moved("objective", -1) < stall and moved("best_bound", 1) < stall:
                status = "stalled"
                break
            if time_limit_s and time.time() - began > loop_share * time_limit_s:
                status = "time_limit"
                break
        # Stop when another iteration like this one, and then re-making the master's columns whose plans
        # were dropped (at this iteration's seconds per column), would end past the limit.
        remake = sum(1 for j in np.flatnonzero(alpha.max(axis=1) > 0) if j not in store)
        if time_limit_s and time.time() - began + (time.time() - started) + remake * max(made) > time_limit_s:
            status = "time_limit"
            break
        if smooth:
            lam = corrected_sample_prices(part, len(part.item_ids) / N, cap, lam, col["usage"].sum(axis=0),
                                          temperature)
        else:
            lam = best_lam + stabilise * (master_lam - best_lam)

    lower, loop_s = best_sub["lower"], time.time() - began
    if subproblems == "fast" and gap > tol:
        # The bound's open certificates, widest first (those holding 95% of what is open), raised by
        # supergradient steps on their duals at the best prices: cheap, and still a certified bound; then
        # the widest still open solved exactly by LP, for as long as the loop allowed one iteration's LPs
        # (x4; x1 under a time limit, where the plan's polish needs the time more: on 3,000 x 20 x 40 the
        # tightened certificates were within 0.1% of the item optima, the plans 1.0% above them) and the
        # time limit leaves (the plan's recovery is reserved).
        priced = best_sub["priced"]
        lower = fastsub.tighten(inst, best_lam, priced, lower, fastsub.widest_open(priced, lower, 0.95), ascent)
        budget = (1 if time_limit_s else 4) * (lp_budget[0] or 0.0)
        if time_limit_s:
            budget = min(budget, time_limit_s - (time.time() - began) - 2 * max(made))
        if budget > 0:
            lower = fastsub.close_by_lp(inst, best_lam, priced, lower, fastsub.widest_open(priced, lower, 0.95),
                                        budget, solver)
        best_bound = max(best_bound, float(lower.sum() - best_lam @ cap))
        progress(f"placement lagrangian: bound {best_bound:,.2f} after tightening open certificates, "
                 f"{time.time() - began:.1f}s")

    # Primal recovery: the master's convex combination of item plans fits every capacity (its rows), and
    # costs the master's objective. A column whose plan was dropped is made again from its recipe.
    for j in np.flatnonzero(alpha.max(axis=1) > 0):
        if j not in store:          # (never column 0: it is always kept)
            lam_j, target_j, soft_j = recipes[j]
            again = column(lam_j, target_j, soft_j)
            store[j] = {k: again[k] for k in PLAN_KEYS}
    best = _combine({j: store[j] for j in np.flatnonzero(alpha.max(axis=1) > 0)}, alpha, group)
    best["cost"], best["usage"] = lp.cost_and_usage(inst, best)
    if N <= lp_recovery_items:
        # Small instances also try re-solving each item by LP within its share of every capacity (its usage
        # in the combination), which can beat the combination when the loop stopped early; the cheaper wins.
        again = recover(subsolve, inst, best["usage"])
        if again["cost"].sum() < best["cost"].sum():
            best = {k: again[k] for k in PLAN_KEYS + ("cost", "usage")}
    polished = 0
    if subproblems == "fast" and (best["cost"].sum() - best_bound) / max(abs(best["cost"].sum()), 1e-9) > tol:
        budget = time_limit_s - (time.time() - began) if time_limit_s else loop_s
        best, polished = polish(inst, best, best_lam, lower, best_bound, tol, budget, solver,
                                lambda m: progress(f"{m}, {time.time() - began:.1f}s"))
        progress(f"placement lagrangian: {polished} items re-solved by LP within their shares, plan "
                 f"{best['cost'].sum():,.2f}, {time.time() - began:.1f}s")
    plan = lp.plan_from_parts(inst, best)
    plan["cost"], plan["usage"] = best["cost"], best["usage"]
    objective = float(plan["cost"].sum())
    gap = (objective - best_bound) / max(abs(objective), 1e-9)
    if gap <= tol and status != "optimal":
        status = "gap_limit"            # (reached by the final tightening or recovery)
    history.append({"iteration": it, "bound": best_bound, "best_bound": best_bound, "objective": objective,
                    "gap": gap, "seconds": time.time() - began, "max_violation": 0.0, "recovered": True,
                    "polished_items": polished})
    return Result(method="lagrangian", objective=objective, bound=best_bound, gap=gap, iterations=it,
                  seconds=time.time() - began, status=status, prices=master_lam, usage=best["usage"].sum(axis=0),
                  plan=plan, history=history, solver=solver, bound_prices=best_lam)


def monolithic(inst: Instance, solver: str = "highs", time_limit_s: float | None = None,
               memory_gb: float | None = None) -> Result:
    """The reference: the whole LP in one solve; duals of the capacity rows are the shadow prices. Raises
    lp.TooLarge before building a model whose estimated memory exceeds `memory_gb` (default: available)."""
    began = time.time()
    out = lp.solve_monolithic(inst, solver, time_limit_s, memory_gb)
    plan = lp.plan_parts(inst, out["values"])
    plan.update({"cost": (lp.costs(inst) * out["values"]).sum(axis=1), "usage": out["usage"]})
    return Result(method="monolithic", objective=out["objective"], bound=out["objective"], gap=0.0,
                  iterations=1, seconds=time.time() - began, status="optimal", prices=out["prices"],
                  usage=out["usage"].sum(axis=0), plan=plan,
                  history=[{"iteration": 0, "bound": out["objective"], "best_bound": out["objective"],
                            "objective": out["objective"], "gap": 0.0, "seconds": time.time() - began}],
                  solver=solver)
