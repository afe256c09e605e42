"""A placement instance: the network and every item's demand scenarios, as NumPy arrays.

Two ways in, one shape out:
- `from_tables`: the published forecasts (item x region x day quantiles) and the network reference tables;
- `generate`: a seeded synthetic instance of any size (benchmarks, `--generate items=N,...`), drawn in
  the same table shapes and built through the same `from_tables`.

Demand over the planning window. The window is W = review period + the mean DC->FC transfer lead time:
stock placed tonight must cover demand until the next review plus the time a refill takes to arrive.
Per item x region, each forecast day's distribution is summarised by a mean (the average of its nine
deciles) and a standard deviation ((q_0.9 - q_0.1) / 2.563, exact for a normal); days are summed as
independent, and the stochastic lead time adds its textbook term:
    mean = sum_t m_t,   var = sum_{t<=W} s_t^2 + (mean / W)^2 * sd(L)^2.
Lead-time spread per lane also enters the model itself (`fc_safety`): each FC holds z x sd(its refill
lane's lead time) days of its own outflow on top of what its scenarios need, so a plan on unreliable lanes
stocks more there or moves demand to FCs on reliable lanes (lp.py, fastsub.py).
K equiprobable scenarios (sample average approximation) sit at the normal quantiles of levels
(k - 0.5) / K, the same level in every region of an item (comonotone: a conservative choice that leaves
regional risk pooling to the dynamic fulfillment). Each scenario splits over speeds by a fixed mix.

Size: one array layout with its two constructors (lake tables, generator) and its checks.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from echelon.catalog.demand import qcols
from echelon.reference_world import generate_tables  # noqa: F401  (the shared world's generated instances)

SPEEDS = ("same_day", "one_day", "two_day")
QUANTILE_COLUMNS = qcols()   # the forecast contract's deciles
NORMAL_Z90 = 1.2815515655446004


class InstanceError(ValueError):
    """Inputs a placement cannot be built from: the message names the table, the rows and the problem."""


@dataclass(frozen=True)
class Params:
    review_days: int = 7                 # nightly plan, weekly review: the window stock must cover
    scenarios: int = 5                   # K equiprobable demand scenarios per item
    speed_mix: tuple = (0.2, 0.35, 0.45)   # share of demand promised same-day, one-day, two-day
    late_penalty: tuple = (3.0, 1.5, 1.0)  # $/unit when the serving FC cannot meet that promise
    lost_sale_share: float = 0.35        # lost sale costs this share of the price (margin) ...
    lost_sale_fixed: float = 2.0         # ... plus a goodwill cost per unit
    hold_cuft_day: float = 0.02          # $/cuft/day of FC space
    capital_rate: float = 0.25           # annual cost of capital on inventory value
    dc_hold_share: float = 0.6           # DC holding relative to FC holding
    dc_safety_z: float = 1.28            # DC covers vendor lead time mean + z * sd of its refill flow
    fc_safety_z: float = 1.28            # FC holds z * sd(its refill lane's lead time) days of its outflow
    lane_cycle: bool = True              # FC covers review + its own lane's lead - 1 days (the simulator's cycle)

    def with_overrides(self, **kw) -> "Params":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


@dataclass
class Instance:
    """Arrays indexed by item n, FC f, DC d, region r, speed s, scenario k."""
    item_ids: np.ndarray          # [N]
    fc_ids: np.ndarray            # [F]
    dc_ids: np.ndarray            # [D]
    region_ids: np.ndarray        # [R]
    cube: np.ndarray              # [N] cubic feet per unit
    price: np.ndarray             # [N]
    demand: np.ndarray            # [N, R, K] units over the window in scenario k (all speeds)
    prob: np.ndarray              # [K]
    window_days: int
    ship_cost: np.ndarray         # [F, R] $/unit on the delivery lane
    meets: np.ndarray             # [F, R, S] bool: the lane keeps that speed's promise
    transfer_cost: np.ndarray     # [D, F] $/unit DC -> FC
    dc_cover: np.ndarray          # [D] DC stock per unit of refill flow over the window
    fc_storage: np.ndarray        # [F] cuft
    fc_flow: np.ndarray           # [F] outbound units/day
    dc_storage: np.ndarray        # [D] cuft
    dc_flow: np.ndarray           # [D] outbound units/day
    params: Params = field(default_factory=Params)
    daily_mean: np.ndarray | None = None   # [N, R] expected units/day (for the simulator)
    daily_sd: np.ndarray | None = None     # [N, R]
    transfer_lead: np.ndarray | None = None      # [D, F] mean DC -> FC lead time, days
    transfer_lead_sd: np.ndarray | None = None   # [D, F]
    vendor_lead: np.ndarray | None = None        # [D] mean vendor -> DC lead time, days
    vendor_lead_sd: np.ndarray | None = None     # [D]

    # --- derived sizes and per-item costs ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return len(self.item_ids), len(self.fc_ids), len(self.dc_ids), len(self.region_ids), len(self.prob)

    @property
    def hold_fc(self) -> np.ndarray:
        """$/unit held at an FC over the window: space by cube plus capital by price."""
        p = self.params
        return (p.hold_cuft_day * self.cube + p.capital_rate / 365.0 * self.price) * self.window_days

    @property
    def hold_dc(self) -> np.ndarray:
        return self.params.dc_hold_share * self.hold_fc

    @property
    def fc_safety(self) -> np.ndarray:
        """[F] safety stock per unit of window outflow at each FC against its refill lane's lead-time spread:
        z x sd(L) / W (the textbook z sd(L) x daily rate, the rate being outflow / W). The lane is the FC's
        cheapest DC's (the one the simulator refills from). Zero without lead-time spreads."""
        if self.transfer_lead_sd is None or not self.params.fc_safety_z:
            return np.zeros(len(self.fc_ids))
        src = self.transfer_cost.argmin(axis=0)
        sd = np.asarray(self.transfer_lead_sd, float)[src, np.arange(len(self.fc_ids))]
        return self.params.fc_safety_z * sd / self.window_days

    @property
    def fc_cycle(self) -> np.ndarray:
        """[F] stock per unit of window outflow that each FC's order-up-to level covers beyond the window:
        (review + L_f - 1) / W - 1, L_f its refill lane's mean lead time (>= 1 day). A refill ordered at a
        review's close lands L_f days later, at the start of that day, so the level covers the days up to the
        next refill's arrival: review + L_f - 1 of them (the simulator's timing), not the network-wide W.
        Negative on short lanes (less stock), positive on long ones. Zero when `Params.lane_cycle` is off."""
        if self.transfer_lead is None or not self.params.lane_cycle:
            return np.zeros(len(self.fc_ids))
        src = self.transfer_cost.argmin(axis=0)
        lead = np.maximum(1.0, np.asarray(self.transfer_lead, float)[src, np.arange(len(self.fc_ids))])
        return (self.params.review_days + lead - 1.0) / self.window_days - 1.0

    @property
    def fc_extra(self) -> np.ndarray:
        """[F] FC stock per unit of expected window outflow on top of its scenarios' demand: the lane's
        cycle (`fc_cycle`) plus the lead-time safety (`fc_safety`); what the stock rows add (lp, fastsub)."""
        return self.fc_safety + self.fc_cycle

    @property
    def lost_penalty(self) -> np.ndarray:
        return self.params.lost_sale_share * self.price + self.params.lost_sale_fixed

    @property
    def capacity(self) -> np.ndarray:
        """The coupling right-hand sides, in resource order: FC storage, DC storage, FC flow, DC flow."""
        return np.concatenate([self.fc_storage, self.dc_storage, self.fc_flow, self.dc_flow]).astype(float)

    def resources(self) -> pd.DataFrame:
        """facility_id and resource (storage|flow) of each coupling row, in `capacity` order."""
        return pd.DataFrame({
            "facility_id": np.concatenate([self.fc_ids, self.dc_ids, self.fc_ids, self.dc_ids]),
            "resource": ["storage"] * (len(self.fc_ids) + len(self.dc_ids)) + ["flow"] * (len(self.fc_ids) + len(self.dc_ids)),
            "echelon": ["FC"] * len(self.fc_ids) + ["DC"] * len(self.dc_ids) + ["FC"] * len(self.fc_ids) + ["DC"] * len(self.dc_ids),
        })

    def subset(self, index) -> "Instance":
        """The same network with only some items (a Spark bucket, a test slice)."""
        index = np.asarray(index)
        return replace(self, item_ids=self.item_ids[index], cube=self.cube[index], price=self.price[index],
                       demand=self.demand[index],
                       daily_mean=None if self.daily_mean is None else self.daily_mean[index],
                       daily_sd=None if self.daily_sd is None else self.daily_sd[index])

    def network_arrays(self) -> dict:
        """Everything but the items: what every Spark task needs (small, pickled once per job)."""
        return {k: getattr(self, k) for k in ("fc_ids", "dc_ids", "region_ids", "prob", "window_days",
                                              "ship_cost", "meets", "transfer_cost", "dc_cover", "fc_storage",
                                              "fc_flow", "dc_storage", "dc_flow", "params", "transfer_lead",
                                              "transfer_lead_sd", "vendor_lead", "vendor_lead_sd")}


# -------------------------------------------------------------------------------------------------
# From tables
# -------------------------------------------------------------------------------------------------

def window_days(transfer_lanes: pd.DataFrame, params: Params) -> int:
    lead = float(transfer_lanes["lead_time_mean_days"].mean()) if len(transfer_lanes) else 0.0
    return int(params.review_days + round(lead))


def demand_summary(forecasts: pd.DataFrame, window: int, lead_time_sd: float) -> pd.DataFrame:
    """Forecast rows (item_id, location_id, horizon, q_0.1..q_0.9) -> item_id, region_id, mean, sd over
    the first `window` horizon days (see the module docstring)."""
    missing = [c for c in ["item_id", "location_id", "horizon", *QUANTILE_COLUMNS] if c not in forecasts.columns]
    if missing:
        raise InstanceError(f"forecasts: missing column(s) {missing}; found {list(forecasts.columns)}")
    days = forecasts[forecasts["horizon"] <= window]
    q = days[QUANTILE_COLUMNS].to_numpy(dtype=float)
    frame = pd.DataFrame({"item_id": days["item_id"].to_numpy(), "region_id": days["location_id"].to_numpy(),
                          "mean": q.mean(axis=1), "var": ((q[:, -1] - q[:, 0]) / (2 * NORMAL_Z90)) ** 2})
    out = frame.groupby(["item_id", "region_id"], as_index=False, sort=True)[["mean", "var"]].sum()
    out["sd"] = np.sqrt(out["var"] + (out["mean"] / window) ** 2 * lead_time_sd ** 2)
    return out.drop(columns="var")


def scenario_levels(k: int) -> np.ndarray:
    from scipy.stats import norm

    return norm.ppf((np.arange(k) + 0.5) / k)


def from_tables(summary: pd.DataFrame, items: pd.DataFrame, facilities: pd.DataFrame,
                delivery_lanes: pd.DataFrame, transfer_lanes: pd.DataFrame, window: int,
                params: Params = Params()) -> Instance:
    """Arrays from the demand summary and the network tables (checked: every item is reachable, every
    capacity present and non-negative, every item has a cube). Raises InstanceError naming the rows."""
    check_network(facilities, delivery_lanes, transfer_lanes)
    fcs = facilities[facilities["facility_type"] == "FC"].sort_values("facility_id")
    dcs = facilities[facilities["facility_type"] == "DC"].sort_values("facility_id")
    fc_ids, dc_ids = fcs["facility_id"].to_numpy(), dcs["facility_id"].to_numpy()
    region_ids = np.array(sorted(set(delivery_lanes["region_id"]) | set(summary["region_id"])))
    item_ids = np.array(sorted(summary["item_id"].unique()))

    lanes = delivery_lanes[delivery_lanes["facility_id"].isin(fc_ids)]
    unreachable = sorted(set(summary["region_id"]) - set(lanes["region_id"]))
    if unreachable:
        bad = summary[summary["region_id"].isin(unreachable)]
        raise InstanceError(f"{bad['item_id'].nunique()} item(s) have no reachable FC: no delivery lane from any "
                            f"FC reaches region(s) {unreachable}; e.g. items {sorted(bad['item_id'].unique())[:5]}")
    info = items.drop_duplicates("item_id").set_index("item_id").reindex(item_ids)
    no_cube = info.index[info["cube_cuft"].isna() | ~(info["cube_cuft"] > 0) | info["price"].isna()].tolist()
    if no_cube:
        raise InstanceError(f"{len(no_cube)} forecast item(s) have no valid cube_cuft/price in items: {no_cube[:5]}")

    F, D, R = len(fc_ids), len(dc_ids), len(region_ids)
    f_of, r_of = {f: i for i, f in enumerate(fc_ids)}, {r: i for i, r in enumerate(region_ids)}
    fi, ri = lanes["facility_id"].map(f_of).to_numpy(), lanes["region_id"].map(r_of).to_numpy()
    # A missing lane is unusable: a prohibitive cost keeps the LP simple (no lane -> no shipment).
    ship = np.full((F, R), 1e4)
    ship[fi, ri] = lanes["cost_per_unit"].to_numpy(dtype=float)
    meets = np.zeros((F, R, len(SPEEDS)), dtype=bool)
    for s, speed in enumerate(SPEEDS):
        meets[fi, ri, s] = lanes[speed].to_numpy(dtype=bool)

    d_of = {d: i for i, d in enumerate(dc_ids)}
    tl = transfer_lanes[transfer_lanes["from_facility_id"].isin(dc_ids) & transfer_lanes["to_facility_id"].isin(fc_ids)]
    transfer = np.full((D, F), 1e4)
    lane_at = (tl["from_facility_id"].map(d_of).to_numpy(), tl["to_facility_id"].map(f_of).to_numpy())
    transfer[lane_at] = tl["cost_per_unit"].to_numpy(dtype=float)
    lead, lead_sd = np.full((D, F), float(window - params.review_days)), np.zeros((D, F))
    if "lead_time_mean_days" in tl.columns:
        lead[lane_at] = tl["lead_time_mean_days"].fillna(window - params.review_days).to_numpy(dtype=float)
    if "lead_time_std_days" in tl.columns:
        lead_sd[lane_at] = tl["lead_time_std_days"].fillna(0.0).to_numpy(dtype=float)
    vendor_lt = dcs["vendor_lead_time_mean_days"].fillna(0.0).to_numpy(dtype=float)
    vendor_sd = dcs["vendor_lead_time_std_days"].fillna(0.0).to_numpy(dtype=float)
    dc_cover = (vendor_lt + params.dc_safety_z * vendor_sd) / window

    K = params.scenarios
    n_of = {n: i for i, n in enumerate(item_ids)}
    mean = np.zeros((len(item_ids), R))
    sd = np.zeros((len(item_ids), R))
    ni, rj = summary["item_id"].map(n_of).to_numpy(), summary["region_id"].map(r_of).to_numpy()
    mean[ni, rj], sd[ni, rj] = summary["mean"].to_numpy(), summary["sd"].to_numpy()
    demand = np.maximum(0.0, mean[:, :, None] + sd[:, :, None] * scenario_levels(K)[None, None, :])

    return Instance(
        item_ids=item_ids, fc_ids=fc_ids, dc_ids=dc_ids, region_ids=region_ids,
        cube=info["cube_cuft"].to_numpy(dtype=float), price=info["price"].to_numpy(dtype=float),
        demand=demand, prob=np.full(K, 1.0 / K), window_days=window, ship_cost=ship, meets=meets,
        transfer_cost=transfer, dc_cover=dc_cover,
        fc_storage=fcs["storage_capacity_cuft"].to_numpy(dtype=float),
        fc_flow=fcs["flow_capacity_units_per_day"].to_numpy(dtype=float),
        dc_storage=dcs["storage_capacity_cuft"].to_numpy(dtype=float),
        dc_flow=dcs["flow_capacity_units_per_day"].to_numpy(dtype=float), params=params,
        daily_mean=mean / window, daily_sd=sd / np.sqrt(window), transfer_lead=lead, transfer_lead_sd=lead_sd,
        vendor_lead=vendor_lt, vendor_lead_sd=vendor_sd)


def check_network(facilities: pd.DataFrame, delivery_lanes: pd.DataFrame, transfer_lanes: pd.DataFrame) -> None:
    """The in-process twin of the network gate (for generated instances and direct callers)."""
    problems = []
    for column in ("storage_capacity_cuft", "flow_capacity_units_per_day"):
        bad = facilities[facilities[column].isna() | (facilities[column] < 0)]
        if len(bad):
            problems.append(f"{column} missing or negative at {bad['facility_id'].tolist()[:5]}")
    if not (facilities["facility_type"] == "FC").any():
        problems.append("no FC in facilities")
    if not (facilities["facility_type"] == "DC").any():
        problems.append("no DC in facilities")
    known = set(facilities["facility_id"])
    strangers = sorted((set(delivery_lanes["facility_id"]) | set(transfer_lanes["from_facility_id"])
                        | set(transfer_lanes["to_facility_id"])) - known)
    if strangers:
        problems.append(f"lanes name facilities not in facilities: {strangers[:5]}")
    if problems:
        raise InstanceError("network: " + "; ".join(problems))


# -------------------------------------------------------------------------------------------------
# Generated instances
# -------------------------------------------------------------------------------------------------

def generate(items: int = 50, facilities: int = 6, regions: int = 4, seed: int = 42,
             params: Params = Params(), **kw) -> Instance:
    t = generate_tables(items, facilities, regions, seed, **kw)
    return from_tables(t["summary"], t["items"], t["facilities"], t["delivery_lanes"], t["transfer_lanes"],
                       t["window"], params)


def parse_generate(spec: str) -> dict:
    """'items=N,facilities=F,regions=R,seed=S' -> kwargs for `generate` (clear error on anything else)."""
    allowed = {"items", "facilities", "regions", "seed", "dcs"}
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in allowed or not value.lstrip("-").isdigit():
            raise ValueError(f"--generate expects items=N,facilities=F,regions=R,seed=S; cannot read {part!r}")
        out[key] = int(value)
        if out[key] < (0 if key == "seed" else 1):
            raise ValueError(f"--generate: {key} must be positive, got {value}")
    return out
