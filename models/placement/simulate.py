"""A network simulator: replay daily demand through the FCs with a dynamic fulfillment policy.

Each day, for every item: demand per region (gamma-Poisson with the forecast's daily mean and spread)
splits over speeds by the mix; orders are served same-day first, each from the cheapest FC that keeps
its promise and has stock and outbound flow left today, then from the cheapest FC that has stock (late),
else lost. FC flow capacity is shared by all items (when a day's requests exceed it, each item gets its
pro-rata share). Every `review_days` each FC orders up to its target from its cheapest DC; refills
arrive after a random lead time (lognormal around the lane's mean). DCs are an ample source here.

Accounting is exact per item x FC: initial stock + received = shipped + final stock.

Policies compared (same demand draws, same seed):
- optimised: the plan's FC targets;
- newsvendor: per FC, the critical-fractile target of the regions it serves first, capacities ignored;
- proportional: the optimised plan's total units per item, split over FCs by the demand they serve first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from echelon.models.placement.instance import Instance


def home_fc(inst: Instance) -> np.ndarray:
    """[R] the FC that serves each region first: the cheapest lane meeting the fastest promise it can."""
    best_speed_cost = inst.ship_cost + 100.0 * (~inst.meets[:, :, 0]) + 10.0 * (~inst.meets[:, :, 1])
    return best_speed_cost.argmin(axis=0)


def newsvendor_targets(inst: Instance) -> np.ndarray:
    """[N, F] independent single-echelon newsvendor targets: each FC covers its home regions' window
    demand at the critical fractile (underage: lost sale less shipping; overage: holding)."""
    N, F, D, R, K = inst.shape
    home = home_fc(inst)
    mean = inst.daily_mean * inst.window_days
    var = (inst.daily_sd ** 2) * inst.window_days
    ship = inst.ship_cost[home, np.arange(R)].mean()
    under = np.maximum(inst.lost_penalty - ship, 1e-9)
    fractile = under / (under + inst.hold_fc)
    out = np.zeros((N, F))
    for f in range(F):
        regions = home == f
        m, v = mean[:, regions].sum(axis=1), var[:, regions].sum(axis=1)
        out[:, f] = np.maximum(0.0, m + norm.ppf(fractile) * np.sqrt(v))
    return out


def proportional_targets(inst: Instance, total_units: np.ndarray) -> np.ndarray:
    """[N, F] the same units per item as `total_units`, split by the demand each FC serves first."""
    home = home_fc(inst)
    served = np.zeros((len(inst.item_ids), len(inst.fc_ids)))
    np.add.at(served.T, home, inst.daily_mean.T)
    share = served / np.maximum(served.sum(axis=1, keepdims=True), 1e-12)
    return total_units[:, None] * share


def _daily_demand(inst: Instance, days: int, rng) -> np.ndarray:
    """[T, N, R] integer demand: gamma-Poisson with the daily mean and (at least Poisson) variance."""
    m = np.maximum(inst.daily_mean, 0.0)
    v = np.maximum(inst.daily_sd ** 2, m + 1e-9)
    shape = m ** 2 / np.maximum(v - m, 1e-9)
    rate = rng.gamma(np.broadcast_to(np.maximum(shape, 1e-9), (days, *m.shape)), 1.0) * (m / np.maximum(shape, 1e-9))
    return rng.poisson(rate)


def simulate(inst: Instance, targets: np.ndarray, days: int = 28, seed: int = 0, demand=None) -> dict:
    """Replay `days` of demand against FC targets [N, F]; return the metrics and the stock ledger."""
    N, F, D, R, K = inst.shape
    p = inst.params
    rng = np.random.default_rng([seed, 11])
    demand = _daily_demand(inst, days, rng) if demand is None else demand
    lead_rng = np.random.default_rng([seed, 12])
    source = inst.transfer_cost.argmin(axis=0)                      # [F] each FC's cheapest DC
    transfer = inst.transfer_cost[source, np.arange(F)]
    mean_lead = max(1.0, inst.window_days - p.review_days)
    targets = np.round(np.maximum(targets, 0.0))
    stock = targets.copy()
    initial = stock.copy()
    pipeline = np.zeros((days + 64, N, F))
    received = np.zeros((N, F))
    shipped = np.zeros((N, F))
    ship_cost = late_units = on_time = lost = lost_cost = holding = transfer_cost = 0.0
    storage_use = np.zeros((days, F))
    flow_use = np.zeros((days, F))
    speeds = len(p.speed_mix)
    # Candidate FCs per (region, speed): promise keepers by lane cost, then the rest (late) by cost.
    order = {}
    for r in range(R):
        for s in range(speeds):
            keep = inst.meets[:, r, s]
            key = inst.ship_cost[:, r] + np.where(keep, 0.0, 1e6)
            order[r, s] = np.argsort(key, kind="stable")
    for t in range(days):
        arriving = pipeline[t]
        stock += arriving
        received += arriving
        flow_left = inst.fc_flow.astype(float).copy()
        today = demand[t]                                             # [N, R]
        split = np.zeros((N, R, speeds), dtype=np.int64)
        rest = today.astype(np.int64)
        for s in range(speeds - 1):
            split[:, :, s] = rng.binomial(rest, min(1.0, p.speed_mix[s] / max(1e-12, sum(p.speed_mix[s:]))))
            rest = rest - split[:, :, s]
        split[:, :, -1] = rest
        for s in range(speeds):
            for r in range(R):
                need = split[:, r, s].astype(float)
                for f in order[r, s]:
                    if not need.any():
                        break
                    take = np.minimum(need, stock[:, f])
                    asked = take.sum()
                    if asked > flow_left[f]:
                        take = np.floor(take * flow_left[f] / asked)
                    stock[:, f] -= take
                    shipped[:, f] += take
                    need -= take
                    flow_left[f] -= take.sum()
                    ship_cost += float(take.sum() * inst.ship_cost[f, r])
                    if inst.meets[f, r, s]:
                        on_time += float(take.sum())
                    else:
                        late_units += float(take.sum())
                        ship_cost += float(take.sum() * p.late_penalty[s])
                lost += float(need.sum())
                lost_cost += float((need * inst.lost_penalty).sum())
        flow_use[t] = inst.fc_flow - flow_left
        storage_use[t] = (stock * inst.cube[:, None]).sum(axis=0)
        holding += float((stock * (inst.hold_fc / inst.window_days)[:, None]).sum())
        if (t + 1) % p.review_days == 0:
            position = stock + pipeline[t + 1:].sum(axis=0)
            order_qty = np.maximum(0.0, targets - position)
            lead = np.maximum(1, np.round(lead_rng.lognormal(np.log(mean_lead), 0.3, F))).astype(int)
            for f in range(F):
                pipeline[t + lead[f], :, f] += order_qty[:, f]
            transfer_cost += float((order_qty * transfer[None, :]).sum())
    total = float(demand.sum())
    cap_storage = np.maximum(inst.fc_storage, 1e-9)
    return {
        "shipping_cost": ship_cost,
        "shipping_cost_per_unit": ship_cost / max(on_time + late_units, 1.0),
        "total_cost": ship_cost + transfer_cost + holding + lost_cost, "transfer_cost": transfer_cost, "holding_cost": holding,
        "lost_units": lost, "lost_cost": lost_cost,
        "demand_units": total, "on_time_units": on_time, "late_units": late_units,
        "on_time_share": on_time / total if total else 1.0,
        "storage_utilisation_mean": float((storage_use / cap_storage).mean()),
        "storage_utilisation_max": float((storage_use / cap_storage).max()),
        "flow_utilisation_mean": float((flow_use / np.maximum(inst.fc_flow, 1e-9)).mean()),
        "ledger": {"initial": initial, "received": received, "shipped": shipped, "final": stock},
    }


def compare(inst: Instance, optimised: np.ndarray, days: int = 28, seed: int = 0) -> pd.DataFrame:
    """The three policies on the same demand draws: one row per policy."""
    demand = _daily_demand(inst, days, np.random.default_rng([seed, 11]))
    policies = {"optimised": optimised, "newsvendor": newsvendor_targets(inst),
                "proportional": proportional_targets(inst, optimised.sum(axis=1))}
    rows = []
    for name, targets in policies.items():
        out = simulate(inst, targets, days, seed, demand=demand)
        out.pop("ledger")
        rows.append({"policy": name, "target_units": float(np.round(targets).sum()), **out})
    return pd.DataFrame(rows)
