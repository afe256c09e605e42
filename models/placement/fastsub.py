"""Item subproblems at fixed capacity prices, solved in NumPy over all items at once, with a certificate.

With prices lambda fixed, an item's DC side collapses (lp.py's model: y_d = cover_d sum_f w_df is optimal
since DC holding + its storage price is >= 0): a unit of expected outflow from FC f costs

    g_f = min_d [ t_df + lam_Qd / W + cover_d (h'_n + lam_Sd cube_n) ]     (the refill comes from argmin d),

and the item's subproblem is a two-stage newsvendor on a network:

    min  sum_f a_f x_f + sum_k p_k [ sum_frs e_frs z_frsk + pi sum_rs u_rsk ]
    s.t. sum_f z_frsk + u_rsk = d_rsk,   sum_rs z_frsk <= x_f,   x, z, u >= 0
    a_f = h_n + lam_Sf cube_n,   e_frs = c_fr + l_s [f misses s in r] + lam_Qf / W + g_f.

Demands are comonotone (scenario k's demand rises with k in every region and speed), so demand comes in
nested layers: layer j (d_rsj - d_rs,j-1 units) is present in scenarios j..K, with probability P_j.

Primal (feasible, an upper bound): every layer of every (r, s) is stocked where a_f + P_j e_frs is least,
or lost when P_j pi is less; the stock serves that layer in every scenario where the layer appears.

Dual (feasible, a lower bound): the subproblem's LP dual is
    max_mu  sum_rsk d_rsk min( p_k pi, min_f (p_k e_frs + mu_fk) )   s.t.  mu >= 0,  sum_k mu_fk <= a_f,
and ANY such mu gives a valid lower bound. From the layered primal, v_rsk = c_rs,k - c_rs,k+1 (c the layer
costs) would match the primal exactly; the least mu that makes those v feasible is
mu_fk = max_rs (v_rsk - p_k e_frs)^+. Where sum_k mu_fk <= a_f for every f, the layered plan is proven
optimal (primal = dual); otherwise mu is scaled into the feasible set and improved by a few projected
supergradient steps, and the dual value is still a valid lower bound (the gap is reported per item).
For one region and speed the certificate always closes (the newsvendor argument); across regions it
closes unless one FC's stock would be shared between regions in different scenarios.

Items whose scenarios are not comonotone (no one order sorts every region's demand) go to the exact LP.

Size: one vectorised algorithm and its optimality certificate, not used apart.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from echelon.models.placement.instance import Instance


def prices(inst: Instance, lam) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """lam [C] split into FC storage, DC storage, FC flow, DC flow (zeros when lam is None)."""
    N, F, D, R, K = inst.shape
    lam = np.zeros(2 * (F + D)) if lam is None else np.asarray(lam, float)
    return lam[:F], lam[F:F + D], lam[F + D:2 * F + D], lam[2 * F + D:]


def reduced_costs(inst: Instance, lam):
    """a [N, F] (holding + storage price), g [N, F] (refill cost per unit out of FC f) and its DC [N, F],
    the true lane cost c + late [F, R, S], and the priced lane cost (+ lam_Qf / W) [F, R, S]:
    e [n, F, R, S] = priced lane + g, formed chunk by chunk (all items at once would not fit)."""
    lSf, lSd, lQf, lQd = prices(inst, lam)
    W = inst.window_days
    a = inst.hold_fc[:, None] + lSf[None, :] * inst.cube[:, None]
    dc_unit = (inst.transfer_cost[None, :, :] + (lQd / W)[None, :, None]
               + (inst.dc_cover[None, :] * (inst.hold_dc[:, None] + lSd[None, :] * inst.cube[:, None]))[:, :, None])
    dstar = dc_unit.argmin(axis=1)                                     # [N, F]
    g = np.take_along_axis(dc_unit, dstar[:, None, :], axis=1)[:, 0, :]
    # Lane cycle and lead-time safety stock beta_f (Instance.fc_extra, negative on short lanes) per unit of
    # expected outflow, held (and priced) like any FC stock:
    # min a_f x_f with x_f >= max_k sum z_k + beta_f sum_k p_k sum z_k is the same problem with a_f beta_f
    # added to every unit's cost out of f (and beta_f x outflow added to x afterwards, in _parts).
    g = g + inst.fc_extra[None, :] * a
    lane = inst.ship_cost[:, :, None] + np.asarray(inst.params.late_penalty)[None, None, :] * ~inst.meets
    return a, g, dstar, lane, lane + (lQf / W)[:, None, None]


def comonotone_order(inst: Instance):
    """Per item, the scenario order that sorts its demand, and whether it sorts every region."""
    order = np.argsort(inst.demand.sum(axis=1), axis=1, kind="stable")          # [N, K]
    sorted_d = np.take_along_axis(inst.demand, order[:, None, :], axis=2)
    ok = (np.diff(sorted_d, axis=2) >= -1e-12 * (1 + np.abs(sorted_d[:, :, 1:]))).all(axis=(1, 2))
    return order, sorted_d, ok


THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

# Chunk arrays keep FC f last ([n, R, S, K, F]): every min over FCs runs along contiguous memory.

def _layer_choice(a, e, P, pi):
    """Per item, region, speed and layer: least cost per unit and the FC chosen (-1: lost).
    a [n,F], e [n,R,S,F], P [n,K], pi [n] -> cost [n,R,S,K], choice [n,R,S,K]. The choice is made in
    float32 (it only picks a feasible plan); the cost of the choice is then taken in float64."""
    cost = (a[:, None, None, None, :].astype(np.float32)
            + P[:, None, None, :, None].astype(np.float32) * e[:, :, :, None, :].astype(np.float32))  # [n,R,S,K,F]
    choice = cost.argmin(axis=4)
    del cost
    e_ch = np.take_along_axis(e, choice, axis=3)                                             # [n,R,S,K]
    a_ch = np.take_along_axis(a, choice.reshape(len(a), -1), axis=1).reshape(choice.shape)
    best = a_ch + P[:, None, None, :] * e_ch
    lost = P[:, None, None, :] * pi[:, None, None, None]
    is_lost = lost <= best
    return np.where(is_lost, lost, best), np.where(is_lost, -1, choice)


def _dual_value(mu, d, p, e, pi, with_arg: bool = False):
    """sum_rsk d_rsk min(p_k pi, min_f (p_k e_frs + mu_fk)) [n] (float64: this is the certified bound)
    and, with_arg, per (n,r,s,k) the minimising f (-1: lost). mu [n,K,F], e [n,R,S,F]."""
    inner = p[:, None, None, :, None] * e[:, :, :, None, :] + mu[:, None, None, :, :]       # [n,R,S,K,F]
    lost = p[:, None, None, :] * pi[:, None, None, None]
    if not with_arg:
        return (d * np.minimum(inner.min(axis=4), lost)).sum(axis=(1, 2, 3)), None
    arg = inner.argmin(axis=4)
    best = np.take_along_axis(inner, arg[..., None], axis=4)[..., 0]
    is_lost = lost <= best
    return (d * np.minimum(best, lost)).sum(axis=(1, 2, 3)), np.where(is_lost, -1, arg)


def _project(mu, a):
    """Onto {mu >= 0, sum_k mu_fk <= a_f} (per item and FC; Euclidean, by the sorted-threshold rule).
    Works on mu [n, F, K]."""
    mu = np.maximum(mu, 0.0)
    over = mu.sum(axis=2) > a
    if not over.any():
        return mu
    v = mu[over]                                                       # [m, K]
    s = -np.sort(-v, axis=1)
    css = np.cumsum(s, axis=1) - a[over][:, None]
    idx = np.arange(1, v.shape[1] + 1)
    rho = ((s - css / idx) > 0).sum(axis=1)
    theta = css[np.arange(len(v)), rho - 1] / rho
    mu = mu.copy()
    mu[over] = np.maximum(v - theta[:, None], 0.0)
    return mu


def solve_chunk(a, e, d, p, pi, ascent: int = 0):
    """Layered primal and certified dual for a chunk of items whose scenarios are sorted (comonotone).
    a [n,F], e [n,R,S,F], d [n,R,S,K] sorted demand, p [n,K] sorted probabilities, pi [n].
    Returns primal priced cost [n], lower bound [n], layer choice [n,R,S,K], layer sizes [n,R,S,K], P [n,K]."""
    P = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]
    delta = np.diff(d, axis=3, prepend=0.0)
    layer_cost, choice = _layer_choice(a, e, P, pi)
    primal = (delta * layer_cost).sum(axis=(1, 2, 3))
    # Dual from the layered plan: v_k = c_k - c_{k+1}; least mu making every v feasible.
    v = layer_cost - np.concatenate([layer_cost[..., 1:], np.zeros_like(layer_cost[..., :1])], axis=3)
    # (in float32: any mu is valid once projected, and the bound is evaluated in float64 below)
    reach = (v[..., None].astype(np.float32)
             - p[:, None, None, :, None].astype(np.float32) * e[:, :, :, None, :].astype(np.float32))  # [n,R,S,K,F]
    mu = np.maximum(0.0, reach.max(axis=(1, 2)).astype(float))                                   # [n,K,F]
    del reach
    total = mu.sum(axis=1)
    mu = mu * np.minimum(1.0, a / np.maximum(total, 1e-300))[:, None, :]
    lower, _ = _dual_value(mu, d, p, e, pi)
    open_ = primal - lower > 1e-9 * np.maximum(1.0, np.abs(primal))
    if ascent and open_.any():
        # Projected supergradient ascent on the items whose certificate is still open (keep the best).
        i = np.flatnonzero(open_)
        m, ee, dd, pp, ppi, aa = mu[i], e[i], d[i], p[i], pi[i], a[i]
        best = lower[i].copy()
        for t in range(ascent):
            val, arg = _dual_value(m, dd, pp, ee, ppi, with_arg=True)
            best = np.maximum(best, val)
            gap = primal[i] - best
            # supergradient in mu_fk: the demand whose min is attained at f (sum_rs d_rsk [arg = f]);
            # the stock limit sum_k mu_fk <= a_f is kept by the projection
            grad = np.zeros_like(m)
            n_i, r_i, s_i, k_i = np.nonzero(arg >= 0)
            np.add.at(grad, (n_i, k_i, arg[n_i, r_i, s_i, k_i]), dd[n_i, r_i, s_i, k_i])
            norm = (grad ** 2).sum(axis=(1, 2))
            step = np.where(norm > 0, gap / np.maximum(norm, 1e-300), 0.0)
            m = _project((m + step[:, None, None] * grad).transpose(0, 2, 1), aa).transpose(0, 2, 1)
        lower[i] = best
    return primal, lower, choice, delta, P


def layered(inst: Instance, lam=None, chunk_cells: int = 1_000_000, ascent: int = 0) -> dict:
    """Every item at prices lam, in NumPy: the layered plan's parts (lp.parts_from_values's keys), and
    `lower` [N], a certified lower bound on each item's priced optimum, and `layered_priced` [N], the
    plan's priced cost summed layer by layer (equal to what its parts cost: a check on the accounting).
    Items whose scenarios are not comonotone get lower = -inf and are flagged in `needs_lp`."""
    N, F, D, R, K = inst.shape
    S = len(inst.params.speed_mix)
    a, g, dstar, lane, lane_priced = reduced_costs(inst, lam)
    order, dsort, ok = comonotone_order(inst)
    mix = np.asarray(inst.params.speed_mix)
    p = np.asarray(inst.prob)[order]                                            # [N,K] sorted
    pi = inst.lost_penalty
    lower, layer_total = np.zeros(N), np.zeros(N)
    x, served, zcost, lost_units = np.zeros((N, F)), np.zeros((N, F, S)), np.zeros((N, F, S)), np.zeros(N)
    rs_lane = lane.reshape(F, R * S)

    def chunk(sl):
        d = dsort[sl][:, :, None, :] * mix[None, None, :, None]                 # [n,R,S,K] sorted
        e = lane_priced.transpose(1, 2, 0)[None] + g[sl][:, None, None, :]         # [n,R,S,F]
        layer_total[sl], lower[sl], choice, delta, P = solve_chunk(a[sl], e, d, p[sl], pi[sl], ascent)
        n = choice.shape[0]
        expected = delta * P[:, None, None, :]                                  # expected units per layer
        hit = choice >= 0
        item = np.broadcast_to(np.arange(n)[:, None, None, None], choice.shape)[hit]
        f = choice[hit]
        s_idx = np.broadcast_to(np.arange(S)[None, None, :, None], choice.shape)[hit]
        r_idx = np.broadcast_to(np.arange(R)[None, :, None, None], choice.shape)[hit]
        ex = expected[hit]
        x[sl] = np.bincount(item * F + f, weights=delta[hit], minlength=n * F).reshape(n, F)
        cell = (item * F + f) * S + s_idx
        served[sl] = np.bincount(cell, weights=ex, minlength=n * F * S).reshape(n, F, S)
        zcost[sl] = np.bincount(cell, weights=ex * rs_lane[f, r_idx * S + s_idx], minlength=n * F * S).reshape(n, F, S)
        lost_units[sl] = (expected * ~hit).sum(axis=(1, 2, 3))

    by_chunks(N, chunk_cells // max(1, F * R * S * K), chunk)
    parts = _parts(inst, x, served, zcost, lost_units, dstar)
    return {"parts": parts, "lower": np.where(ok, lower, -np.inf), "needs_lp": ~ok, "layered_priced": layer_total}


def by_chunks(n_items: int, step: int, work) -> None:
    """work(slice) over consecutive chunks of `step` items, on a thread per core: NumPy releases the GIL
    in its array loops, and each chunk writes only its own rows of the output arrays."""
    step = max(1, step)
    chunks = [slice(start, min(n_items, start + step)) for start in range(0, n_items, step)]
    workers = min(THREADS, len(chunks))
    if workers <= 1:
        for sl in chunks:
            work(sl)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(work, chunks):      # (re-raises a chunk's exception here)
            pass


def _parts(inst: Instance, x, served, zcost, lost_units, dstar) -> dict:
    """A plan's linear parts (lp.parts_from_values's keys) from its FC side; each FC refills from dstar."""
    N, F, D, R, K = inst.shape
    outflow = served.sum(axis=2)                                                # [N,F] expected units
    dc_out = np.zeros((N, D))
    np.add.at(dc_out, (np.repeat(np.arange(N), F), dstar.ravel()), outflow.ravel())
    transfer = outflow * inst.transfer_cost[dstar, np.arange(F)[None, :]]
    x = x + inst.fc_extra[None, :] * outflow
    return {"x": x, "y": inst.dc_cover[None, :] * dc_out, "dc_out": dc_out, "transfer": transfer,
            "served": served, "zcost": zcost, "lost_units": lost_units, "lost_cost": inst.lost_penalty * lost_units}


def smoothed(inst: Instance, lam, temperature: float, chunk_cells: int = 1_000_000) -> tuple[np.ndarray, dict]:
    """The entropy-smoothed item response at prices lam: each demand layer is spread over the FCs (and
    losing it) with weights proportional to exp(-cost / tau), tau = temperature x the layer's lost-sale
    cost, instead of going all to the cheapest. Returns each item's smoothed value [N] (the soft minimum
    sum_layers delta (-tau log sum exp(-cost / tau)), a smooth concave function of lam whose gradient is the
    usage of the spread plan) and that plan's parts: a feasible plan for each item, its usage continuous in
    lam, which is what lets a quasi-Newton method find prices where the items' usage meets the capacities
    (the exact responses jump between FCs that are close substitutes). Comonotone items only (`layered`)."""
    N, F, D, R, K = inst.shape
    S = len(inst.params.speed_mix)
    a, g, dstar, lane, lane_priced = reduced_costs(inst, lam)
    order, dsort, _ = comonotone_order(inst)
    mix = np.asarray(inst.params.speed_mix)
    p = np.asarray(inst.prob)[order]
    value, lost_units = np.zeros(N), np.zeros(N)
    x, served, zcost = np.zeros((N, F)), np.zeros((N, F, S)), np.zeros((N, F, S))
    lane32 = lane.astype(np.float32)

    def chunk(sl):
        d = dsort[sl][:, :, None, :] * mix[None, None, :, None]                 # [n,R,S,K] sorted
        e = lane_priced.transpose(1, 2, 0)[None] + g[sl][:, None, None, :]         # [n,R,S,F]
        P = np.cumsum(p[sl][:, ::-1], axis=1)[:, ::-1]
        delta = np.diff(d, axis=3, prepend=0.0)
        lost = (P[:, None, None, :] * inst.lost_penalty[sl][:, None, None, None]).astype(np.float32)
        cost = np.concatenate([a[sl][:, None, None, None, :].astype(np.float32)
                               + P[:, None, None, :, None].astype(np.float32) * e[:, :, :, None, :].astype(np.float32),
                               np.broadcast_to(lost, d.shape)[..., None]], axis=4)        # [n,R,S,K,F+1]
        least = cost.min(axis=4, keepdims=True)
        tau = temperature * lost[..., None]
        cost -= least
        cost /= -tau
        w = np.exp(cost, out=cost)
        total = w.sum(axis=4, keepdims=True)
        w /= total
        value[sl] = (delta * (least - tau * np.log(total))[..., 0]).sum(axis=(1, 2, 3))
        stock = w[..., :F] * delta[..., None].astype(np.float32)                  # units per layer and FC
        x[sl] = stock.sum(axis=(1, 2, 3))
        expected = stock * P[:, None, None, :, None].astype(np.float32)           # expected units served
        served[sl] = expected.sum(axis=(1, 3)).transpose(0, 2, 1)
        zcost[sl] = np.einsum("nrskf,frs->nfs", expected, lane32, optimize=True)
        lost_units[sl] = (w[..., F] * delta * P[:, None, None, :]).sum(axis=(1, 2, 3))

    by_chunks(N, chunk_cells // max(1, F * R * S * K), chunk)
    return value, _parts(inst, x, served, zcost, lost_units, dstar)


def _widest(gap: np.ndarray, allowed: float) -> np.ndarray:
    """The fewest items, widest gaps first, whose closing leaves at most `allowed` of gap open."""
    order = np.argsort(-gap)
    open_after = gap.sum() - np.cumsum(gap[order])
    take = int((open_after > allowed).sum()) + 1 if gap.sum() > allowed else 0
    chosen = order[:take]
    return chosen[gap[chosen] > 0]


def tighten(inst: Instance, lam, priced, lower, items, steps: int = 60, chunk_cells: int = 1_000_000):
    """Each item's certified lower bound [N], those of `items` raised by `steps` projected supergradient
    steps on their duals (still certified: every dual-feasible point gives a bound); never above priced."""
    lower = lower.copy()
    if len(items):
        better = layered(inst.subset(items), lam, chunk_cells, steps)["lower"]
        lower[items] = np.minimum(np.maximum(lower[items], better), priced[items])
    return lower


def close_by_lp(inst: Instance, lam, priced, lower, items, budget_s: float, solver: str = "highs") -> np.ndarray:
    """Each item's lower bound [N], those of `items` (widest first) replaced by their exact LP optimum at
    prices lam, for as long as `budget_s` seconds allow (`within`)."""
    from echelon.models.placement import lp

    lower = lower.copy()

    def close(idx):
        lower[idx] = lp.solve_items(inst.subset(idx), lam=lam, solver=solver)["priced"]

    within(items, budget_s, close)
    return lower


def widest_open(priced, lower, cover: float) -> np.ndarray:
    """The fewest items whose open certificates (priced - lower) hold `cover` of the total open."""
    gap = np.maximum(np.nan_to_num(priced - lower, posinf=0.0), 0.0)
    return _widest(gap, (1 - cover) * gap.sum())


def solve(inst: Instance, lam=None, exact_gap: float | None = None, solver: str = "highs",
          ascent: int = 20, chunk_cells: int = 1_000_000, lp_budget_s: float | None = None) -> dict:
    """Every item at prices lam: the layered plan and certified bound; then, when `exact_gap` is given and
    more than exact_gap x the priced total is left open, `ascent` supergradient steps on the dual of the
    items with the widest gaps, and the exact LP (lp.solve_items) for the widest that are still open, until
    what stays open is at most that, or, with `lp_budget_s`, until that many seconds of LP are spent
    (widest first, in chunks sized by the measured seconds per item: what an iteration costs stays
    bounded however many items are open). Items that are not comonotone always go to the LP (outside the budget).
    Returns parts, cost [N], priced [N], lower [N] (<= each item's priced optimum), usage [N, C],
    exact [N] (solved by LP)."""
    from echelon.models.placement import lp

    lam_vec = np.zeros(len(inst.capacity)) if lam is None else np.asarray(lam, float)
    out = layered(inst, lam, chunk_cells)
    parts, lower = out["parts"], out["lower"]
    cost, use = lp.cost_and_usage(inst, parts)
    priced = cost + use @ lam_vec
    lower = np.minimum(lower, priced)
    exact = out["needs_lp"].copy()
    if exact_gap is not None:
        allowed = exact_gap * max(priced.sum(), 1e-9)
        closed = lambda: np.where(exact | (priced - lower <= 1e-7 * np.maximum(1.0, np.abs(priced))), 0.0,
                                  priced - lower)
        if ascent and closed().sum() > allowed:
            lower = tighten(inst, lam, priced, lower, _widest(closed(), allowed / 4), ascent, chunk_cells)
        wide = _widest(closed(), allowed)
        if lp_budget_s is None:
            exact[wide] = True
        else:
            done = _close_within(inst, lam, solver, parts, cost, use, priced, lower, wide[~exact[wide]], lp_budget_s)
            _close(inst, lam, solver, parts, cost, use, priced, lower, np.flatnonzero(exact))
            exact[done] = True
            return {"parts": parts, "cost": cost, "priced": priced, "lower": lower, "usage": use, "exact": exact}
    _close(inst, lam, solver, parts, cost, use, priced, lower, np.flatnonzero(exact))
    return {"parts": parts, "cost": cost, "priced": priced, "lower": lower, "usage": use, "exact": exact}


def _close(inst, lam, solver, parts, cost, use, priced, lower, idx) -> None:
    """Items `idx` solved exactly by LP, written into the arrays in place (their bound = their optimum)."""
    from echelon.models.placement import lp

    if not len(idx):
        return
    sub = inst.subset(idx)
    res = lp.solve_items(sub, lam=lam, solver=solver)
    sub_parts = lp.parts_from_values(sub, res["values"])
    for key in parts:
        parts[key][idx] = sub_parts[key]
    cost[idx], use[idx], priced[idx], lower[idx] = res["cost"], res["usage"], res["priced"], res["priced"]


def _close_within(inst, lam, solver, parts, cost, use, priced, lower, wide, budget_s):
    """`_close` on `wide` (widest first) within `budget_s` seconds (`within`); returns the items closed."""
    return within(wide, budget_s, lambda idx: _close(inst, lam, solver, parts, cost, use, priced, lower, idx))


def within(items, budget_s: float, work, first: int = 4, most: int = 64) -> np.ndarray:
    """work(chunk) over `items` in order until `budget_s` seconds are spent; returns the items done. Chunks
    are sized from the seconds per item measured so far (the first has `first` items), so the budget is
    overrun by at most about one item's time, whatever an item costs."""
    import time

    began, done, start, size = time.time(), [], 0, first
    while start < len(items):
        spent = time.time() - began
        if spent >= budget_s:
            break
        if start:
            size = int(np.clip((budget_s - spent) / max(spent / start, 1e-9), 1, most))
        idx = np.asarray(items[start:start + size])
        work(idx)
        done.append(idx)
        start += len(idx)
    return np.concatenate(done) if done else np.zeros(0, int)
