"""Gates for callouts tables whose checks need more than the staged rows: the partition date as a column
(`_ds`), and joins (a click's impression, a served callout's catalog entry). The suites stay data in
expectations/suites/callouts_*.json; this only prepares the frame they are run on."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

from echelon import lake
from echelon.catalog.callouts import CATALOG, IMPRESSIONS


def _days(ds: str, back: int) -> list[str]:
    day = dt.date.fromisoformat(ds)
    return [(day - dt.timedelta(days=k)).isoformat() for k in range(back, -1, -1)]


def gate(suite: str, table: lake.Table, ds: str, prepare: Callable | None = None,
         params: dict | None = None) -> Callable[[Path], None]:
    """Like echelon.expectations.gate.gate, with `_ds` added and an optional prepare(spark, frame)."""
    def run_gate(staged: Path) -> None:
        from pyspark.sql import functions as F

        from echelon.expectations.gate import validate
        from echelon.spark import get_spark

        spark = get_spark()
        frame = spark.read.parquet(str(staged)).withColumn("_ds", F.lit(ds))
        if prepare is not None:
            frame = prepare(spark, frame)
        validate(frame, suite, str(table), ds, params)
    return run_gate


def with_impressions(window_days: int, ds: str):
    """prepare(): add `_shown_at` of each click's impression, looked up in the impressions published for
    the attribution window ending at ds (null when the impression is unknown)."""
    def prepare(spark, clicks):
        from pyspark.sql import functions as F

        found = [d for d in _days(ds, window_days) if lake.exists(IMPRESSIONS, d)]
        if not found:
            return clicks.withColumn("_shown_at", F.lit(None).cast("timestamp"))
        shown = None
        for d in found:
            part = spark.read.parquet(str(IMPRESSIONS.partition(d))).select("impression_id", F.col("shown_at").alias("_shown_at"))
            shown = part if shown is None else shown.unionByName(part)
        return clicks.join(shown, "impression_id", "left")
    return prepare


def with_catalog(ds: str):
    """prepare(): add `_catalog_family` of each served callout from the catalog partition of ds."""
    def prepare(spark, serving):
        from pyspark.sql import functions as F

        if not lake.exists(CATALOG, ds):
            return serving.withColumn("_catalog_family", F.lit(None).cast("string"))
        catalog = spark.read.parquet(str(CATALOG.partition(ds))).select("callout_id", F.col("family").alias("_catalog_family"))
        return serving.join(catalog, "callout_id", "left")
    return prepare
