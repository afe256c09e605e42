"""Placement's Spark side: read and gate the inputs of a night (forecasts of ds, the network snapshot for
it), reduce the forecasts to a demand summary per item x region, and publish the plan and prices through
their gates. The solve itself (models/placement/) sees only pandas/NumPy; models/placement/steps.py
joins the two."""
from __future__ import annotations

import numpy as np
import pandas as pd

from echelon import lake
from echelon.catalog.demand import FORECASTS, ITEMS, qcols
from echelon.catalog.network import DELIVERY_LANES, FACILITIES, TRANSFER_LANES
from echelon.catalog.placement import PLAN, PRICES

NORMAL_Z90 = 1.2815515655446004


class PlacementInputError(ValueError):
    """An input partition placement cannot run on (absent, or rejected): names the table and partition."""


def reference_partition(table: lake.Table, ds: str) -> str:
    """Reference data is a snapshot: ds itself, else the latest before it, else the earliest after it."""
    parts = lake.partitions(table)
    if not parts:
        raise PlacementInputError(f"{table} has no published partition (looked under {table.root()}); "
                                  f"generate the world (echelon world ...) or load the network")
    if ds in parts:
        return ds
    before = [p for p in parts if p <= ds]
    return max(before) if before else min(parts)


def read_inputs(spark, ds: str) -> dict:
    """Spark frames of the forecasts partition of `ds` and the network snapshot for it."""
    if not lake.exists(FORECASTS, ds):
        raise PlacementInputError(f"forecasts missing for the date: {FORECASTS} has no partition ds={ds} "
                                  f"(looked in {FORECASTS.partition(ds)}); run demand_nightly for {ds} first")
    frames = {}
    for name, table, part in (("forecasts", FORECASTS, ds), *[(n, t, reference_partition(t, ds)) for n, t in (
            ("items", ITEMS), ("facilities", FACILITIES), ("delivery_lanes", DELIVERY_LANES),
            ("transfer_lanes", TRANSFER_LANES))]):
        # A re-published partition keeps its path: drop the session's cached file listing of it.
        spark.catalog.refreshByPath(str(table.partition(part)))
        frames[name] = lake.read_spark(spark, table, part).drop("ds")
    return frames


def check_inputs(ds: str, spark=None) -> dict:
    """Gate the inputs (Great Expectations): forecasts, facility capacities, and reachability of every
    forecast item x region. Raises GateFailed naming the table, partition, check and offending rows."""
    from echelon.expectations.gate import validate
    from echelon.spark import get_spark, load_sql

    ds = lake.parse_ds(ds)
    spark = spark or get_spark("placement-inputs")
    frames = read_inputs(spark, ds)
    validate(frames["forecasts"], "placement_input_forecasts", str(FORECASTS), ds)
    validate(frames["facilities"], "placement_input_facilities", str(FACILITIES), ds)
    for name, frame in frames.items():
        frame.createOrReplaceTempView(f"placement_{name}")
    reach = spark.sql(load_sql("placement/reach"))
    outcome = validate(reach, "placement_input_reach", "placement/reach (forecasts x network)", ds)
    return {"ds": ds, "forecast_rows": frames["forecasts"].count(), "item_regions": outcome.rows}


def demand_summary(forecasts, ds: str, window: int, lead_sd: float) -> pd.DataFrame:
    """item_id, region_id, mean, sd of demand over the window, reduced in Spark (rows: item x region).
    Mean and variance per day from the deciles, summed per item x region (see instance.demand_summary)."""
    from pyspark.sql import functions as F

    q = [F.col(f"`{c}`") for c in qcols()]
    daily = (forecasts.where(F.col("horizon") <= window)
             .select("item_id", "location_id", "horizon", *[c.alias(name) for name, c in zip(qcols(), q)]))
    sums = (daily.groupBy("item_id", "location_id")
            .agg(F.sum(sum(q) / 9.0).alias("mean"), F.sum(((q[-1] - q[0]) / (2 * NORMAL_Z90)) ** 2).alias("var"))
            .toPandas())
    summary = pd.DataFrame({"item_id": sums["item_id"], "region_id": sums["location_id"], "mean": sums["mean"],
                            "sd": np.sqrt(sums["var"] + (sums["mean"] / window) ** 2 * lead_sd ** 2)})
    if summary.empty:
        raise PlacementInputError(f"{FORECASTS} ds={ds} has no rows within the {window}-day window")
    return summary.sort_values(["item_id", "region_id"])


def publish(spark, plan: pd.DataFrame, prices: pd.DataFrame, ds: str, facility_ids: list[str],
            extra: dict) -> tuple[dict, dict]:
    """Both tables through their gates, the prices checked first, so a rejected prices table never
    follows a new plan. Returns both manifests."""
    from echelon.expectations.gate import validate

    params = {"facility_ids": facility_ids}
    validate(spark.createDataFrame(prices), PRICES.suite, str(PRICES), ds, params)
    with lake.transaction(ds) as tx:   # plan and prices together or not at all
        plan_manifest = tx.publish(plan, PLAN, gate=True, params=params, extra=extra)
        prices_manifest = tx.publish(prices, PRICES, gate=True, params=params, extra=extra)
    return plan_manifest, prices_manifest
