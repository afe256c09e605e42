"""Lagrangian decomposition of the placement LP: price the shared capacities, solve items apart.

Dualising the coupling rows A_n v_n <= b (storage and flow at every FC and DC) with prices lambda >= 0:

    L(lambda) = sum_n min_{v_n in V_n} (c_n + lambda A_n) v_n  -  lambda . b   <=   OPT   for every lambda.

Each item's minimum is a small LP (its own network flow), solved independently: in process or on Spark.
- Multipliers: projected subgradient with Polyak steps, in scale-free units (mu_c = lambda_c b_c,
  g_c = (usage_c - b_c) / b_c): mu <- max(0, mu + theta (UB - L) g / |g|^2); theta halves after
  `patience` iterations without a better bound.
- Primal recovery (every `recover_every` iterations and at the end): the subgradient iterates'
  usage, averaged over the last half or so of iterations (ergodic averages converge to an optimal
  primal for LPs), sets each item's share of every capacity, shares summing exactly to the capacity;
  each item is re-solved at true costs within its shares. The result respects every capacity by
  construction and its cost is an upper bound UB; were the shares the optimal usages, UB = OPT.
  A second pass hands the capacity left over to the items that were held back by their share.
- Bound and gap: the best L(lambda) is the dual bound; gap = (UB - bound) / UB. The prices at the best
  bound are the shadow prices published in `capacity_prices` (zero where a capacity is slack).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from echelon.models.placement.instance import Instance

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
    from echelon.models.placement import lp

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


def solve(inst: Instance, subsolve=None, max_iter: int = 60, tol: float = 1e-3, groups: int = 256,
          time_limit_s: float | None = None, solver: str = "highs", progress=None) -> Result:
    """Prices from the restricted master (Kelley's cutting planes on L, i.e. Dantzig-Wolfe), item
    subproblems at those prices, until the master's upper bound and the best dual bound meet."""
    from echelon.models.placement.parallel import LocalSolver

    subsolve = subsolve or LocalSolver(inst, solver)
    progress = progress or (lambda msg: log.info(msg))
    began = time.time()
    cap = inst.capacity
    N = len(inst.item_ids)
    G = max(1, min(groups, N))
    group = np.arange(N) % G                      # items interleaved over groups
    pool = lambda values: np.stack([np.bincount(group, weights=col, minlength=G) for col in np.atleast_2d(values.T)], axis=-1)

    # Column 0: every item ships nothing and loses its demand: uses no capacity, so the master is feasible.
    lost_all = inst.lost_penalty * (inst.demand * inst.prob).sum(axis=(1, 2))
    item_uses = [np.zeros((N, len(cap)))]
    costs, uses = [np.bincount(group, weights=lost_all, minlength=G)], [np.zeros((G, len(cap)))]
    lam = np.zeros(len(cap))
    best_bound, best_lam = -np.inf, lam
    history, status, it = [], "iteration_limit", 0
    upper = float(lost_all.sum())
    for it in range(1, max_iter + 1):
        sub = subsolve(lam)
        bound = float(sub["priced"].sum() - lam @ cap)
        if bound > best_bound:
            best_bound, best_lam = bound, lam
        item_uses.append(sub["usage"])
        costs.append(np.bincount(group, weights=sub["cost"], minlength=G))
        uses.append(pool(sub["usage"]))
        upper, alpha, lam = _master(costs, uses, cap, solver)
        gap = (upper - best_bound) / max(abs(upper), 1e-9)
        history.append({"iteration": it, "bound": bound, "best_bound": best_bound, "objective": upper,
                        "gap": gap, "seconds": time.time() - began,
                        "max_violation": float(np.max((sub["usage"].sum(axis=0) - cap) / np.maximum(cap, 1.0)))})
        progress(f"placement lagrangian: iteration {it}/{max_iter}, bound {best_bound:,.2f}, master "
                 f"{upper:,.2f}, gap {gap:.4%}, {time.time() - began:.1f}s ({N / max(time.time() - began, 1e-9) * it:,.0f} item solves/s)")
        if gap <= tol:
            status = "optimal" if gap <= 1e-7 else "gap_limit"
            break
        if time_limit_s and time.time() - began > time_limit_s:
            status = "time_limit"
            break

    # Primal recovery: each item's share of every capacity is its usage in the master's combination.
    combined = sum(alpha[j][group][:, None] * item_uses[j] for j in range(len(item_uses)))
    best = recover(subsolve, inst, combined)
    objective = float(best["cost"].sum())
    gap = (objective - best_bound) / max(abs(objective), 1e-9)
    history.append({"iteration": it, "bound": best_bound, "best_bound": best_bound, "objective": objective,
                    "gap": gap, "seconds": time.time() - began, "max_violation": 0.0, "recovered": True})
    return Result(method="lagrangian", objective=objective, bound=best_bound, gap=gap, iterations=it,
                  seconds=time.time() - began, status=status, prices=lam, usage=best["usage"].sum(axis=0),
                  plan=best, history=history, solver=solver)


def monolithic(inst: Instance, solver: str = "highs", time_limit_s: float | None = None) -> Result:
    """The reference: the whole LP in one solve; duals of the capacity rows are the shadow prices."""
    from echelon.models.placement import lp

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
