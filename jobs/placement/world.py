"""Placement's world: a generated reference world (echelon/reference_world.generate_tables: network tables
and items) and a forecasts partition in the shape of demand's `forecasts` contract, published to the lake.
For demos and tests of the lake path without running the demand pipeline; the nightly job reads whatever
the real producers published."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from echelon import lake, reference_world
from echelon.catalog.demand import FORECASTS, QUANTILES, qcol

HORIZON = 28


def forecasts_from_summary(summary: pd.DataFrame, ds: str, window: int, horizon: int = HORIZON) -> pd.DataFrame:
    """Daily decile forecasts whose window sums reproduce the summary (normal per day)."""
    from scipy.stats import norm

    day0 = dt.date.fromisoformat(ds)
    rows = summary.loc[summary.index.repeat(horizon)].reset_index(drop=True)
    rows["horizon"] = np.tile(np.arange(1, horizon + 1), len(summary)).astype("int32")
    rows["target_date"] = [day0 + dt.timedelta(days=int(h)) for h in rows["horizon"]]
    m, s = rows["mean"] / window, rows["sd"] / np.sqrt(window)
    out = pd.DataFrame({"item_id": rows["item_id"], "location_id": rows["region_id"],
                        "target_date": rows["target_date"], "horizon": rows["horizon"]})
    for q in QUANTILES:
        out[qcol(q)] = np.maximum(0.0, m + s * norm.ppf(q)).round(6)
    out["model_version"] = "generated/0"
    return out


def publish(ds: str, items: int = 12, facilities: int = 4, regions: int = 3, seed: int = 1) -> dict:
    t = reference_world.generate_tables(items, facilities, regions, seed)
    manifests = {"forecasts": lake.publish(forecasts_from_summary(t["summary"], ds, t["window"]), FORECASTS, ds)}
    return {**manifests, **reference_world.publish(t, ds)}

