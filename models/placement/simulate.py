"""A network simulator: replay daily demand through DCs and FCs with a dynamic fulfillment policy.

Two stocked tiers. Each day, for every item:
1. arrivals: DC->FC transfers land at the FC; vendor receipts land at the DC, as far as the DC's storage
   (cubic feet) has room: the rest is refused (a DC cannot receive into space it does not have);
2. demand per region (gamma-Poisson with the forecast's daily mean and spread) splits over speeds by the
   mix; orders are served same-day first, each from the cheapest FC that keeps its promise and has stock
   and outbound flow left today, then from the cheapest FC that has stock (late), else lost. FC flow
   capacity is shared by all items (pro rata when a day's requests exceed it);
3. every `review_days`: each FC orders up to its target from its cheapest DC, which ships what it has,
   within its outbound flow over the review period (dc_flow x review_days, pro rata when exceeded); the
   transfer lands after a random lead time (lognormal with the lane's mean and sd). Each DC then orders up
   to its own level from its vendor (lognormal with the DC's vendor lead-time mean and sd).
FC storage is not enforced: its overruns are measured (facility-days over capacity, the largest excess).

Ledger, per item, facility and day: opening + arrived = shipped + refused + closing (FC: shipped to
customers; DC: transferred to FCs; refused: DC receipts that did not fit). Demand = shipped + lost.

Costs. Shipping: lane cost per unit shipped to a customer; late: the promise's penalty per late unit;
transfer: per unit sent DC->FC; lost: the lost-sale penalty. Holding two ways: `holding_cost` on the
units on hand each day (what a finance ledger sees); `reserved_holding_cost` on each facility's target,
the plan's own convention (its objective charges h x the target for the window, the space the capacity
rows reserve). `plan_cost` adds the reserved holding to shipping, late, transfer and lost: with one
scenario, deterministic demand and lead times it equals the plan's objective per window (a test).

Policies (`policies`), each a pair (FC targets [N, F], DC levels [N, D]):
- optimised: the plan's FC targets; DC level = the plan's DC stock y (safety over the vendor lead time)
  plus a review period of its refill flow (order-up-to: rate x (review + lead) + safety);
- newsvendor: each FC stocked to its own (home) regions' critical-fractile window demand, capacity ignored;
- cheapest: each region's stock all at its cheapest FC (transfer + lane cost), at the critical fractile;
- proportional: the optimised plan's units per item split over FCs by the demand each serves first (not
  independent of the optimiser: it inherits which items the plan holds in the scarce space);
- proportional_pooled: a planner's own split: each item's pooled network demand at the critical fractile,
  split the same way (`pooled_proportional_targets`).
Baselines' DC levels follow the same order-up-to rule from their FCs' expected daily flow. Every policy is
then scaled into the facilities' storage (`fit_capacity`): the comparison is at equal space.

Size: one simulator with two tiers, its ledger, the baselines and the replication summary.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

from echelon.models.placement.instance import SPEEDS, Instance


def home_fc(inst: Instance) -> np.ndarray:
    """[R] the FC that serves each region first: the cheapest lane meeting the fastest promise it can."""
    best_speed_cost = inst.ship_cost + 100.0 * (~inst.meets[:, :, 0]) + 10.0 * (~inst.meets[:, :, 1])
    return best_speed_cost.argmin(axis=0)


def _critical_z(inst: Instance, ship) -> np.ndarray:
    """[N] the newsvendor's critical-fractile z per item (underage: lost sale less shipping; overage: holding)."""
    under = np.maximum(inst.lost_penalty - ship, 1e-9)
    return norm.ppf(under / (under + inst.hold_fc))


def _fractile_targets(inst: Instance, assign: np.ndarray) -> np.ndarray:
    """[N, F] each FC covers the demand of the regions `assign` [R] gives it over its own replenishment
    cycle (the window scaled by `Instance.fc_cycle`, as the plan does), at the critical fractile (underage:
    lost sale less shipping; overage: holding); capacities ignored."""
    N, F, D, R, K = inst.shape
    mean = inst.daily_mean * inst.window_days
    var = (inst.daily_sd ** 2) * inst.window_days
    z = _critical_z(inst, inst.ship_cost[assign, np.arange(R)].mean())
    out = np.zeros((N, F))
    cover = 1.0 + inst.fc_cycle          # the FC's own replenishment cycle in windows (the plan's, too)
    for f in range(F):
        regions = assign == f
        m, v = mean[:, regions].sum(axis=1) * cover[f], var[:, regions].sum(axis=1) * cover[f]
        out[:, f] = np.maximum(0.0, m + z * np.sqrt(v))
    return out


def newsvendor_targets(inst: Instance) -> np.ndarray:
    """[N, F] independent single-echelon newsvendor targets for each FC's home regions."""
    return _fractile_targets(inst, home_fc(inst))


def cheapest_fc(inst: Instance) -> np.ndarray:
    """[R] each region's cheapest FC per unit landed: its refill transfer (from its cheapest DC) plus the
    delivery lane, promises ignored."""
    return (inst.ship_cost + inst.transfer_cost.min(axis=0)[:, None]).argmin(axis=0)


def cheapest_targets(inst: Instance) -> np.ndarray:
    """[N, F] all of a region's stock at its cheapest FC (`cheapest_fc`), at the critical fractile."""
    return _fractile_targets(inst, cheapest_fc(inst))


def proportional_targets(inst: Instance, total_units: np.ndarray) -> np.ndarray:
    """[N, F] the same units per item as `total_units`, split by the demand each FC serves first."""
    home = home_fc(inst)
    served = np.zeros((len(inst.item_ids), len(inst.fc_ids)))
    np.add.at(served.T, home, inst.daily_mean.T)
    share = served / np.maximum(served.sum(axis=1, keepdims=True), 1e-12)
    return total_units[:, None] * share


def pooled_proportional_targets(inst: Instance) -> np.ndarray:
    """[N, F] a planner's proportional split, independent of the optimiser: each item's network-wide
    stock is its pooled window demand (regions independent) at the critical fractile, split over FCs by the
    demand each serves first, each FC's share scaled to its own replenishment cycle (`fc_cycle`)."""
    mean = (inst.daily_mean * inst.window_days).sum(axis=1)
    sd = np.sqrt(((inst.daily_sd ** 2) * inst.window_days).sum(axis=1))
    home = home_fc(inst)
    total = np.maximum(0.0, mean + _critical_z(inst, float(inst.ship_cost[home, np.arange(len(home))].mean())) * sd)
    return proportional_targets(inst, total) * (1.0 + inst.fc_cycle)[None, :]


def source_dc(inst: Instance) -> np.ndarray:
    """[F] the DC that refills each FC: the cheapest transfer lane."""
    return inst.transfer_cost.argmin(axis=0)


def dc_levels(inst: Instance, fc_daily_flow: np.ndarray, y: np.ndarray | None = None):
    """DC order-up-to levels [N, D] from each FC's expected daily outflow [N, F] and the stock the plan
    reserves at the DC [N, D]: y, the plan's (lead time + safety of flow), when given, else the same rule
    (vendor lead mean + z x sd) x rate; the level adds a review period of flow."""
    N, F, D, R, K = inst.shape
    rate = np.zeros((N, D))
    np.add.at(rate.T, source_dc(inst), fc_daily_flow.T)
    vendor, vendor_sd = _vendor(inst)
    if y is None:
        y = rate * (vendor + inst.params.dc_safety_z * vendor_sd)[None, :]
    return y + rate * inst.params.review_days, y


def fit_capacity(inst: Instance, targets: np.ndarray, levels: np.ndarray, reserved: np.ndarray):
    """The policy scaled into the network's storage: each FC's targets (each DC's levels and reserved stock)
    shrunk pro rata where their cube exceeds the facility's storage, as a planner must before ordering.
    Without it a baseline that ignores capacity is stocked beyond the space it has (3.9x an FC's storage on
    the benchmark's network) and its on-time share is bought with space the plan is not allowed to use."""
    def shrink(units, space):
        cube = (units * inst.cube[:, None]).sum(axis=0)
        return units * np.minimum(1.0, space / np.maximum(cube, 1e-12))[None, :]
    dc_factor = np.minimum(1.0, inst.dc_storage / np.maximum((levels * inst.cube[:, None]).sum(axis=0), 1e-12))
    return shrink(targets, inst.fc_storage), levels * dc_factor[None, :], reserved * dc_factor[None, :]


def policies(inst: Instance, plan: dict, fit: bool = True, uncapped: bool = False) -> dict:
    """The optimised plan and the baselines as {name: (FC targets [N, F], DC levels [N, D], DC reserved
    stock [N, D])}; `plan` is a Result.plan (x, y, served) or the published targets (x, y). `fit`: every
    policy scaled into the facilities' storage (`fit_capacity`; the plan's FC targets already fit);
    `uncapped`: the newsvendor as computed, capacity ignored, added as "newsvendor_uncapped"."""
    W = inst.window_days
    # Each FC's expected daily outflow: what the plan serves from it (a published plan has only its
    # targets: then the target over the window, the order-up-to level's own rate).
    flow = plan["served"].sum(axis=2) / W if "served" in plan else plan["x"] / W
    optimised = (plan["x"], *dc_levels(inst, flow, plan.get("y")))
    out = {"optimised": optimised}
    home = home_fc(inst)
    for name, targets in (("newsvendor", newsvendor_targets(inst)), ("cheapest", cheapest_targets(inst)),
                          ("proportional", proportional_targets(inst, plan["x"].sum(axis=1))),
                          ("proportional_pooled", pooled_proportional_targets(inst))):
        assign = home if name != "cheapest" else cheapest_fc(inst)
        flow = np.zeros_like(targets)
        np.add.at(flow.T, assign, inst.daily_mean.T)
        out[name] = (targets, *dc_levels(inst, flow))
    if uncapped:
        out["newsvendor_uncapped"] = out["newsvendor"]
    return {name: fit_capacity(inst, *policy) if fit and name != "newsvendor_uncapped" else policy
            for name, policy in out.items()}


def _vendor(inst: Instance):
    D = len(inst.dc_ids)
    mean = inst.vendor_lead if inst.vendor_lead is not None else np.full(D, 14.0)
    sd = inst.vendor_lead_sd if inst.vendor_lead_sd is not None else np.zeros(D)
    return np.asarray(mean, float), np.asarray(sd, float)


def _transfer(inst: Instance):
    D, F = inst.transfer_cost.shape
    mean = inst.transfer_lead if inst.transfer_lead is not None else \
        np.full((D, F), max(1.0, inst.window_days - inst.params.review_days))
    sd = inst.transfer_lead_sd if inst.transfer_lead_sd is not None else np.zeros((D, F))
    return np.asarray(mean, float), np.asarray(sd, float)


def _lead(rng, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Whole days >= 1: lognormal with that mean and sd (exactly the mean, rounded, where sd is 0)."""
    mean = np.maximum(np.asarray(mean, float), 1e-9)
    sigma2 = np.log1p((np.asarray(sd, float) / mean) ** 2)
    draw = mean * np.exp(np.sqrt(sigma2) * rng.standard_normal(mean.shape) - sigma2 / 2)
    return np.maximum(1, np.round(draw)).astype(int)


def daily_demand(inst: Instance, days: int, rng) -> np.ndarray:
    """[T, N, R] integer demand: gamma-Poisson with the daily mean and (at least Poisson) variance."""
    m = np.maximum(inst.daily_mean, 0.0)
    v = np.maximum(inst.daily_sd ** 2, m + 1e-9)
    shape = m ** 2 / np.maximum(v - m, 1e-9)
    rate = rng.gamma(np.broadcast_to(np.maximum(shape, 1e-9), (days, *m.shape)), 1.0) * (m / np.maximum(shape, 1e-9))
    return rng.poisson(rate)


def _scale_to(amount: np.ndarray, limit: float, integer: bool) -> np.ndarray:
    """`amount` (all >= 0) scaled down pro rata so that it sums to at most `limit`."""
    total = amount.sum()
    if total <= limit:
        return amount
    scaled = amount * (max(limit, 0.0) / total)
    return np.floor(scaled) if integer else scaled


def simulate(inst: Instance, targets: np.ndarray, levels: np.ndarray | None = None,
             reserved: np.ndarray | None = None, days: int = 28, seed: int = 0, demand=None,
             lead_times: str = "random", integer: bool = True, ledger: bool = False) -> dict:
    """Replay `days` of demand against FC targets [N, F] and DC levels [N, D] (`reserved` [N, D]: the DC
    stock the reserved holding is charged on, default the levels); the metrics (and, with
    `ledger`, the per-day stock ledger of every facility: arrays [T, N, F] and [T, N, D]).
    `lead_times="mean"` uses every lane's mean lead time; `integer=False` keeps fractional units (with a
    fractional `demand` [T, N, R], split over speeds exactly by the mix: the deterministic check)."""
    N, F, D, R, K = inst.shape
    p = inst.params
    S = len(p.speed_mix)
    W = inst.window_days
    rng = np.random.default_rng([seed, 11])
    demand = daily_demand(inst, days, rng) if demand is None else np.asarray(demand)
    lead_rng = np.random.default_rng([seed, 12])
    src = source_dc(inst)
    t_mean, t_sd = _transfer(inst)
    v_mean, v_sd = _vendor(inst)
    if lead_times == "mean":
        t_sd, v_sd = np.zeros_like(t_sd), np.zeros_like(v_sd)
    lane_lead, lane_sd = t_mean[src, np.arange(F)], t_sd[src, np.arange(F)]
    transfer_unit = inst.transfer_cost[src, np.arange(F)]
    rnd = np.round if integer else (lambda a: a)
    down = np.floor if integer else (lambda a: a)          # pro-rata shares: never more than there is
    targets = rnd(np.maximum(np.asarray(targets, float), 0.0))
    if levels is None:
        levels, reserved = dc_levels(inst, targets / W)
    levels = rnd(np.maximum(np.asarray(levels, float), 0.0))
    reserved = levels if reserved is None else np.asarray(reserved, float)
    stock, dc = targets.copy(), levels.copy()
    horizon = days + int(np.ceil(max(lane_lead.max(initial=1) + 6 * lane_sd.max(initial=0),
                                      v_mean.max(initial=1) + 6 * v_sd.max(initial=0)))) + 2
    fc_pipe, dc_pipe = np.zeros((horizon, N, F)), np.zeros((horizon, N, D))
    fc_mask = src[None, :] == np.arange(D)[:, None]                    # [D, F] FCs each DC refills
    tot = {k: 0.0 for k in ("ship", "late_cost", "transfer", "lost", "lost_cost", "hold", "reserved",
                            "refused", "units_held")}
    on_time, by_speed = np.zeros(S), np.zeros(S)
    storage_fc, storage_dc = np.zeros((days, F)), np.zeros((days, D))
    dc_empty = np.zeros((days, D))
    book = {k: [] for k in ("fc_open", "fc_in", "fc_out", "fc_close", "dc_open", "dc_in", "dc_out",
                            "dc_refused", "dc_close", "demand", "served", "lost")} if ledger else None
    order = {}
    for r in range(R):
        for s in range(S):
            keep = inst.meets[:, r, s]
            order[r, s] = np.argsort(inst.ship_cost[:, r] + np.where(keep, 0.0, 1e6), kind="stable")
    reserved_day = (float((targets * inst.hold_fc[:, None]).sum()) + float((reserved * inst.hold_dc[:, None]).sum())) / W
    mix = np.asarray(p.speed_mix, float)
    for t in range(days):
        fc_open, dc_open = stock.copy(), dc.copy()
        stock += fc_pipe[t]
        room = np.maximum(inst.dc_storage - (dc * inst.cube[:, None]).sum(axis=0), 0.0)      # [D] cuft
        arriving = dc_pipe[t]
        fits = np.stack([_scale_to(arriving[:, d] * inst.cube, room[d], False) for d in range(D)], axis=1)
        took = down(np.where(inst.cube[:, None] > 0, fits / np.maximum(inst.cube[:, None], 1e-12), arriving))
        took = np.minimum(took, arriving)
        dc += took
        tot["refused"] += float((arriving - took).sum())
        flow_left = inst.fc_flow.astype(float).copy()
        today = demand[t]
        if integer:
            split = np.zeros((N, R, S), dtype=np.int64)
            rest = today.astype(np.int64)
            for s in range(S - 1):
                split[:, :, s] = rng.binomial(rest, min(1.0, mix[s] / max(1e-12, mix[s:].sum())))
                rest = rest - split[:, :, s]
            split[:, :, -1] = rest
        else:
            split = today[:, :, None] * mix[None, None, :]
        shipped_today = np.zeros((N, F))
        lost_today = np.zeros(N)
        for s in range(S):
            for r in range(R):
                need = split[:, r, s].astype(float)
                by_speed[s] += need.sum()
                for f in order[r, s]:
                    if not need.any():
                        break
                    take = np.minimum(need, stock[:, f])
                    asked = take.sum()
                    if asked > max(flow_left[f], 0.0) and asked > 0:
                        take = np.minimum(take, down(take * (max(flow_left[f], 0.0) / asked)))
                    units = float(take.sum())
                    stock[:, f] -= take
                    shipped_today[:, f] += take
                    need = need - take
                    flow_left[f] -= units
                    tot["ship"] += units * inst.ship_cost[f, r]
                    if inst.meets[f, r, s]:
                        on_time[s] += units
                    else:
                        tot["late_cost"] += units * p.late_penalty[s]
                tot["lost"] += float(need.sum())
                tot["lost_cost"] += float((need * inst.lost_penalty).sum())
                lost_today += need
        dc_sent = np.zeros((N, D))
        if (t + 1) % p.review_days == 0:
            position = stock + fc_pipe[t + 1:].sum(axis=0)
            want = np.maximum(0.0, targets - position)                 # [N, F]
            lead = _lead(lead_rng, lane_lead, lane_sd)
            for d in range(D):
                fcs = np.flatnonzero(fc_mask[d])
                if not len(fcs):
                    continue
                ask = want[:, fcs]
                have = dc[:, d]
                # The DC's stock per item, shared pro rata among its FCs' requests; then its outbound flow.
                asked = ask.sum(axis=1)
                give = np.where(asked[:, None] > have[:, None],
                                down(ask * (have / np.maximum(asked, 1e-12))[:, None]), ask)
                give = _scale_to(give, inst.dc_flow[d] * p.review_days, integer)
                for j, f in enumerate(fcs):
                    fc_pipe[t + lead[f], :, f] += give[:, j]
                dc[:, d] -= give.sum(axis=1)
                dc_sent[:, d] = give.sum(axis=1)
                tot["transfer"] += float((give * transfer_unit[fcs][None, :]).sum())
            dc_position = dc + dc_pipe[t + 1:].sum(axis=0)
            vendor = _lead(lead_rng, v_mean, v_sd)
            buy = np.maximum(0.0, levels - dc_position)
            for d in range(D):
                dc_pipe[t + vendor[d], :, d] += buy[:, d]
        storage_fc[t] = (stock * inst.cube[:, None]).sum(axis=0)
        storage_dc[t] = (dc * inst.cube[:, None]).sum(axis=0)
        dc_empty[t] = ((dc <= 0) & (levels > 0)).sum(axis=0)
        tot["hold"] += float((stock * (inst.hold_fc / W)[:, None]).sum() + (dc * (inst.hold_dc / W)[:, None]).sum())
        tot["units_held"] += float(stock.sum() + dc.sum())
        tot["reserved"] += reserved_day
        if ledger:
            for key, value in (("fc_open", fc_open), ("fc_in", fc_pipe[t]), ("fc_out", shipped_today),
                               ("fc_close", stock.copy()), ("dc_open", dc_open), ("dc_in", took),
                               ("dc_out", dc_sent), ("dc_refused", arriving - took), ("dc_close", dc.copy()),
                               ("demand", today.sum(axis=1).astype(float)), ("served", shipped_today.sum(axis=1)),
                               ("lost", lost_today)):
                book[key].append(np.array(value, float))
    return _metrics(inst, tot, on_time, by_speed, storage_fc, storage_dc, dc_empty, demand, levels, book)


def _metrics(inst, tot, on_time, by_speed, storage_fc, storage_dc, dc_empty, demand, levels, book) -> dict:
    W = inst.window_days
    total = float(demand.sum())
    served = float(on_time.sum()) + (total - tot["lost"] - float(on_time.sum()))
    over = storage_fc - inst.fc_storage[None, :]
    out = {
        "shipping_cost": tot["ship"], "shipping_cost_per_unit": tot["ship"] / max(served, 1.0),
        "late_cost": tot["late_cost"], "transfer_cost": tot["transfer"], "holding_cost": tot["hold"],
        "lost_units": tot["lost"], "lost_cost": tot["lost_cost"], "demand_units": total,
        "on_time_share": float(on_time.sum()) / total if total else 1.0,
        **{f"on_time_{name}": float(on_time[s] / by_speed[s]) if by_speed[s] else 1.0 for s, name in enumerate(SPEEDS)},
        "units_held_mean": tot["units_held"] / len(storage_fc),
        "total_cost": tot["ship"] + tot["late_cost"] + tot["transfer"] + tot["hold"] + tot["lost_cost"],
        "reserved_holding_cost": tot["reserved"],
        "fc_storage_overrun_days": int((over > 1e-9).sum()),
        "fc_storage_overrun_max": float(np.max(over / np.maximum(inst.fc_storage, 1e-9), initial=0.0).clip(0)),
        "dc_storage_utilisation_max": float(np.max(storage_dc / np.maximum(inst.dc_storage, 1e-9), initial=0.0)),
        "dc_refused_units": tot["refused"], "dc_stockout_item_days": int(dc_empty.sum()),
    }
    out["plan_cost"] = (out["shipping_cost"] + out["late_cost"] + out["transfer_cost"] + out["lost_cost"]
                        + out["reserved_holding_cost"])
    out["overrun_days_by_fc"] = dict(zip(inst.fc_ids, (over > 1e-9).sum(axis=0).tolist()))
    if book is not None:
        out["ledger"] = {k: np.stack(v) for k, v in book.items()}
    return out


def replicate(inst: Instance, policies: dict, days: int = 56, replications: int = 10, seed: int = 0,
              lead_times: str = "random") -> pd.DataFrame:
    """Every policy on the same demand and lead-time draws (common random numbers), `replications` times:
    one row per policy and replication (scalar metrics)."""
    rows = []
    for rep in range(replications):
        demand = daily_demand(inst, days, np.random.default_rng([seed, rep, 11]))
        for name, (targets, levels, reserved) in policies.items():
            out = simulate(inst, targets, levels, reserved, days, seed=seed * 1000 + rep, demand=demand,
                           lead_times=lead_times)
            rows.append({"policy": name, "replication": rep, "target_units": float(np.round(targets).sum()),
                         **{k: v for k, v in out.items() if np.isscalar(v)}})
    return pd.DataFrame(rows)


def _half_width(values: pd.Series, level: float) -> float:
    """The `level` t-interval half-width of the mean of `values` (NaN for a single value)."""
    n = len(values)
    return float(student_t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def summarise(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and a `level` t-interval half-width over replications, per policy and metric (long format:
    policy, metric, mean, half_width, low, high, replications)."""
    metrics = [c for c in runs.columns if c not in ("policy", "replication")]
    rows = []
    for policy, group in runs.groupby("policy", sort=False):
        n = len(group)
        for m in metrics:
            values = group[m].astype(float)
            half = _half_width(values, level)
            rows.append({"policy": policy, "metric": m, "mean": float(values.mean()), "half_width": half,
                         "low": float(values.mean()) - half, "high": float(values.mean()) + half,
                         "replications": n})
    return pd.DataFrame(rows)


def paired(runs: pd.DataFrame, a: str, b: str, metrics, level: float = 0.95) -> pd.DataFrame:
    """Policy `a` less policy `b`, replication by replication (both saw the same draws): per metric the mean
    difference, its `level` t-interval half-width, and the mean relative difference (a / b - 1). Common random
    numbers make these intervals much narrower than the two policies' own intervals."""
    wide = runs.pivot(index="replication", columns="policy")
    rows = []
    for m in metrics:
        diff = (wide[(m, a)] - wide[(m, b)]).astype(float)
        rows.append({"metric": m, "a": a, "b": b, "difference": float(diff.mean()), "half_width": _half_width(diff, level),
                     "relative": float(wide[(m, a)].mean() / wide[(m, b)].mean() - 1), "replications": len(diff)})
    return pd.DataFrame(rows)


def compare(inst: Instance, plan: dict, days: int = 28, seed: int = 0, replications: int = 1) -> pd.DataFrame:
    """The policies on the same draws: one row per policy, metrics averaged over the replications."""
    runs = replicate(inst, policies(inst, plan), days, replications, seed)
    return runs.drop(columns="replication").groupby("policy", sort=False, as_index=False).mean()
