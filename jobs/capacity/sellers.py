"""Per-seller aggregation (Spark): projected sales from the demand forecasts and past inventory
performance from the seller inventory extract, one row per seller and storage type.

Inputs (all partitions of the run's date, except reference data, which is read as of the latest
partition on or before it):
- published/demand/forecasts  ds, item_id, location_id, target_date, horizon, q_0.1..q_0.9 (contract)
- reference/demand/items      item_id, cube_cuft, price, seller_id (contract)
- source/capacity/inventory   week_ending, seller_id, storage_type, on_hand_cuft, aged_cuft, sold_cuft,
                              sales (cumulative weekly extract of sellers' stock; jobs/capacity/world.py
                              writes a synthetic one)
The per-item rows (forecasts: items x locations x 28 days) are the big side, so the join and the
group-by run in Spark; the result (sellers x storage types) is small and comes back as pandas.
"""
from __future__ import annotations

import pandas as pd

from echelon import lake
from echelon.catalog.capacity import INVENTORY
from echelon.catalog.demand import FORECASTS, ITEMS
from echelon.catalog.network import FACILITIES
from echelon.catalog.placement import PRICES as CAPACITY_PRICES
from echelon.lake import LakeError, Table
from echelon.spark import get_spark, load_sql

PERFORMANCE_WEEKS = 13
OVERSIZE_CUFT = 1.0


def reference_partition(table: Table, ds: str) -> str:
    """Reference data is as of a date: the latest partition on or before ds."""
    found = [p for p in lake.partitions(table) if p <= ds]
    if not found:
        raise LakeError(f"{table} has no partition on or before ds={ds} (partitions: {lake.partitions(table)[:5]}); "
                        f"generate the world first (echelon world ...)")
    return found[-1]


def projection(spark, ds: str):
    """Spark frame: seller_id, storage_type, items, projected_daily_cuft, projected_daily_sales."""
    lake.read_spark(spark, FORECASTS, ds).createOrReplaceTempView("capacity_forecasts")
    lake.read_spark(spark, ITEMS, reference_partition(ITEMS, ds)).createOrReplaceTempView("capacity_items")
    return spark.sql(load_sql("capacity/seller_projection", oversize_cuft=OVERSIZE_CUFT))


def performance(spark, ds: str, weeks: int = PERFORMANCE_WEEKS):
    """Spark frame: seller_id, storage_type, sell_through, aged_share, on_hand_cuft over the last weeks."""
    lake.read_spark(spark, INVENTORY, ds).createOrReplaceTempView("capacity_inventory")
    return spark.sql(load_sql("capacity/seller_performance", ds=ds, weeks=int(weeks)))


def sellers(ds: str, spark=None) -> pd.DataFrame:
    """Projection joined with performance. A seller with forecasts but no inventory history yet gets the
    median performance of its storage type (a newcomer is neither rewarded nor punished)."""
    spark = spark or get_spark("echelon-capacity")
    joined = projection(spark, ds).join(performance(spark, ds), ["seller_id", "storage_type"], "left").toPandas()
    for column in ("sell_through", "aged_share"):
        median = joined.groupby("storage_type")[column].transform("median")
        joined[column] = joined[column].fillna(median).fillna(0.5 if column == "sell_through" else 0.0)
    joined["on_hand_cuft"] = joined["on_hand_cuft"].fillna(0.0)
    return joined.sort_values(["seller_id", "storage_type"]).reset_index(drop=True)


def period_usage(spark, ds: str, start: str, end: str) -> pd.DataFrame:
    """Per seller and storage type over the weeks ending in [start, end]: sales, average occupied cube."""
    from pyspark.sql import functions as F

    weeks = lake.read_spark(spark, INVENTORY, ds).where(F.col("week_ending").between(start, end))
    return (weeks.groupBy("seller_id", "storage_type")
            .agg(F.sum("sales").alias("sales"), F.avg("on_hand_cuft").alias("used_cuft"))
            .toPandas())
