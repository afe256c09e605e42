"""A synthetic weekly extract of FBA sellers, deterministic by seed: what sellers hold and what they ask.

For round date ds (a week's cut-off) it publishes
- source/capacity/inventory  week_ending, seller_id, storage_type, on_hand_cuft, aged_cuft, sold_cuft,
                             sales: cumulative, every week from `history_weeks` before ds up to ds;
- source/capacity/requests   request_id, seller_id, storage_type, max_fee_per_cuft, cuft_requested,
                             submitted_at: the requests of the week ending at ds.

Sellers come from the demand forecasts (jobs/capacity/sellers.projection): their projected cube and
sales. Hidden per-seller traits (drawn from a hash of seed and seller, so the same on every run):
days of cover held (space efficiency), share of aged stock, sales per extra cubic foot used, private
value per cubic foot (what the requests bid) and how much of a grant it really fills. Weeks after a
grant hold the granted space times that fill rate, and sell more accordingly, so credits have
something real to measure.

CLI: echelon capacity world --ds 2026-11-22 [--seed 42] [--history-weeks 13]
"""
from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import pandas as pd

from echelon import lake, reference_world
from echelon.catalog.capacity import INVENTORY, REQUESTS
from echelon.catalog.demand import qcols
REQUEST_PROBABILITY = 0.45


def _rng(seed: int, *keys) -> np.random.Generator:
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


def traits(sellers: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Hidden, fixed traits per seller and storage type."""
    rows = []
    for s in sellers.itertuples():
        rng = _rng(seed, "traits", s.seller_id, s.storage_type)
        skill = rng.uniform(0.0, 1.0)   # good operators turn stock faster and use extra space better
        rows.append({"seller_id": s.seller_id, "storage_type": s.storage_type,
                     "cover_days": 20.0 + 60.0 * (1.0 - skill) * rng.uniform(0.7, 1.3),
                     "aged_base": 0.02 + 0.4 * (1.0 - skill) * rng.uniform(0.5, 1.0),
                     "productivity": 0.4 + 1.2 * skill,     # sales per extra cuft relative to its average
                     "value_per_cuft": float(np.round(np.exp(rng.normal(np.log(2.0 + 4.0 * skill), 0.25)), 2)),
                     "fill_rate": rng.uniform(0.5, 1.0)})
    return pd.DataFrame(rows)


def inventory(sellers: pd.DataFrame, ds: str, seed: int, history_weeks: int = 13,
              grants: pd.DataFrame | None = None) -> pd.DataFrame:
    """Weekly stock per seller and storage type up to ds. `grants`: seller_id, storage_type,
    granted_from (the round date), granted_until (its period's end), cuft_granted."""
    end = dt.date.fromisoformat(ds)
    hidden = sellers.merge(traits(sellers, seed), on=["seller_id", "storage_type"])
    rows = []
    for k in range(history_weeks, -1, -1):
        week = end - dt.timedelta(days=7 * k)
        for s in hidden.itertuples():
            rng = _rng(seed, "week", s.seller_id, s.storage_type, week.isoformat())
            noise = rng.lognormal(0.0, 0.15)
            sold = s.projected_daily_cuft * 7.0 * noise
            base_on_hand = s.projected_daily_cuft * s.cover_days * rng.lognormal(0.0, 0.1)
            extra = 0.0
            if grants is not None and len(grants):
                mine = grants[(grants["seller_id"] == s.seller_id) & (grants["storage_type"] == s.storage_type)
                              & (grants["granted_from"] < week.isoformat()) & (grants["granted_until"] >= week.isoformat())]
                extra = float(mine["cuft_granted"].sum()) * s.fill_rate
            sales_per_cuft = s.projected_daily_sales * 7.0 / max(base_on_hand, 1e-9)
            rows.append({"week_ending": week, "seller_id": s.seller_id, "storage_type": s.storage_type,
                         "on_hand_cuft": round(base_on_hand + extra, 3),
                         "aged_cuft": round(base_on_hand * min(0.95, s.aged_base * rng.uniform(0.8, 1.2)), 3),
                         "sold_cuft": round(sold, 3),
                         "sales": round(s.projected_daily_sales * 7.0 * noise + extra * sales_per_cuft * s.productivity, 2)})
    return pd.DataFrame(rows)


def requests(sellers: pd.DataFrame, ds: str, seed: int, cover_days: float = 42.0) -> pd.DataFrame:
    """The week's requests: some sellers ask for 5-30% more than ~six weeks of their projected cube,
    bidding near their private value per cubic foot, at a time during the week ending at ds."""
    cutoff = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(hours=23, minutes=59, seconds=59)
    hidden = sellers.merge(traits(sellers, seed), on=["seller_id", "storage_type"])
    rows = []
    for s in hidden.itertuples():
        rng = _rng(seed, "request", s.seller_id, s.storage_type, ds)
        if rng.uniform() >= REQUEST_PROBABILITY:
            continue
        rows.append({"request_id": f"{ds}-{s.seller_id}-{s.storage_type}", "seller_id": s.seller_id,
                     "storage_type": s.storage_type,
                     "max_fee_per_cuft": float(np.round(s.value_per_cuft * rng.uniform(0.85, 1.1), 2)),
                     "cuft_requested": float(max(50.0, np.round(s.projected_daily_cuft * cover_days * rng.uniform(0.05, 0.3)))),
                     "submitted_at": cutoff - pd.Timedelta(seconds=int(rng.integers(60, 7 * 86400 - 60)))})
    columns = ["request_id", "seller_id", "storage_type", "max_fee_per_cuft", "cuft_requested", "submitted_at"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True).astype("datetime64[us, UTC]")
    return frame


def run(ds: str, seed: int | None = None, history_weeks: int = 13, spark=None) -> dict:
    """Publish the synthetic inventory and requests extract for ds (ungated: the pipeline gates it)."""
    from echelon.jobs.capacity import sellers as seller_job
    from echelon.jobs.capacity.periods import granted_windows
    from echelon.settings import get_settings
    from echelon.spark import get_spark

    ds = lake.parse_ds(ds)
    seed = get_settings().seed if seed is None else seed
    spark = spark or get_spark("echelon-capacity-world")
    projected = seller_job.projection(spark, ds).toPandas().sort_values(["seller_id", "storage_type"])
    grants = granted_windows(ds)
    return {"inventory": lake.publish(inventory(projected, ds, seed, history_weeks, grants), INVENTORY, ds),
            "requests": lake.publish(requests(projected, ds, seed), REQUESTS, ds)}


def stub_upstream(ds: str, items: int = 24, sellers: int = 6, seed: int = 42, utilisation: float = 0.86) -> None:
    """Stand-ins for the upstream contracts the capacity round reads (items and facilities reference
    tables, demand forecasts, placement capacity_prices) at ds: for tests and offline demos only, when
    the demand and placement domains have not published. The reference tables are the shared reference
    world's stub (echelon/reference_world.stub_tables), written once."""
    from echelon.jobs.capacity.sellers import CAPACITY_PRICES, FORECASTS

    reference = reference_world.stub_tables(items, sellers, seed)
    reference_world.publish(reference, ds, only_missing=True)
    ids, facilities = list(reference["items"]["item_id"]), reference["facilities"]
    start = dt.date.fromisoformat(ds) + dt.timedelta(days=1)
    rows = []
    for item in ids:
        level = _rng(seed, "level", item).lognormal(np.log(20.0), 0.7)
        for h in range(1, 8):
            median = level * _rng(seed, "f", item, ds, h).lognormal(0.0, 0.1)
            rows.append({"item_id": item, "location_id": "R01", "target_date": start + dt.timedelta(days=h - 1), "horizon": h,
                         **{c: round(median * (0.6 + 0.1 * k), 3) for k, c in enumerate(qcols(), 1)},
                         "model_version": "demand_forecaster/stub"})
    lake.publish(pd.DataFrame(rows), FORECASTS, ds)
    prices = pd.DataFrame([{"facility_id": f, "resource": r, "shadow_price": 0.5, "utilisation": utilisation}
                           for f in facilities["facility_id"] for r in ("storage", "flow")])
    lake.publish(prices, CAPACITY_PRICES, ds)
