"""Demand feature job: the canonical sales history -> one feature row per series x date (Spark SQL).

The rows are defined in echelon/demand_features.py (build_features, shared with LightGBM); this module
reads the lake, builds them (incrementally where it can) and publishes.

CLI: python -m echelon.jobs.demand.features --ds 2026-11-20 [--horizon 28] [--full]
reads raw/demand/sales (and raw/demand/plan, the future known covariates, when published) for ds and
publishes features/demand/sales_features for ds (and its carried state, features/demand/sales_anchors).

Incremental nights. A published row depends only on raw rows up to its own date, so when an earlier
feature partition (prev, within MAX_GAP_DAYS) was built by the same code from exactly today's raw rows
dated <= prev (checked per date: row count and an exact sum of row hashes, the `raw_fingerprint` that the
ingest records in the raw manifest and each feature manifest copies), its rows dated <= prev are today's
rows too. Only the rows after prev (the new days and the forecast horizon) are computed, from the raw rows
of the last LOOKBACK_DAYS plus a few anchor rows per series from before them (its first sale, last known
price, last row, largest category: the only values a row reads from further back). Where the ingest laid
the raw partition out in monthly files, only the files of those months are read (`recent_history`).

What a night carries from prev, so that its cost follows the new days and not the history's length:
- the feature rows: a partition is written in two segments of files (lake.publish `segment_by`), `hist-*`
  (rows dated <= its ds) and `tail-*` (the forecast horizon after it). The next night hard-links prev's
  `hist-*` files into its partition (lake.publish `carry`), with their row counts and hash sums from prev's
  manifest, and writes, gates and hashes only its new rows.
- the anchors: sales_anchors ds holds, per series, the raw rows that anchor everything dated up to
  ds - LOOKBACK_DAYS; the next night derives its own from them and the raw days that left its window.
- the raw fingerprint: read from the manifests, not from the data.
A restated or missing past day, a moved raw window (the ingest's start moves every WINDOW_STEP_DAYS), a
null category (filled from the item's later rows), other code, or no usable prev partition: a full build,
and the manifest says why. The late-rows check reads the raw manifest's fingerprint where the ingest
recorded one (no scan of the history). A raw partition not laid out by month (a user's file, an older partition) is read
whole with a date filter, and a partition with many carried file sets is rebuilt in full
(MAX_CARRIED_NIGHTS) to keep the file count bounded.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import time
from typing import Callable

from echelon import lake
from echelon.catalog.demand import FEATURE_ANCHORS as ANCHORS, FEATURES, RAW_PLAN as PLAN, RAW_SALES as SALES
from echelon.demand_features import (KEYS, RAW_COLUMNS, FeatureInputError, _normalise, _timestamp_column,
                                     build_features, raw_fingerprint)
from echelon.spark import get_spark

log = logging.getLogger(__name__)

DEFAULT_HORIZON = 28
# The furthest back a row's window frames read: year_ago_mean_28 covers 364..391 days before the row
# (sql/demand/series_stats.sql); a few days of margin.
LOOKBACK_DAYS = 400
# An incremental night may catch up at most this many days after the last partition; more: a full build.
MAX_GAP_DAYS = 28
# Incremental nights in a row before a full build compacts the partition's files (each night adds a few).
MAX_CARRIED_NIGHTS = 120
SEGMENT = "_segment"         # hist: rows dated <= ds; tail: the forecast horizon after it
NEW_FILES = 2                # files per segment an incremental night writes


def digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def history_fingerprint(history, ds: str) -> dict:
    """The raw fingerprint of sales ds: from its manifest when the ingest recorded one, else computed."""
    recorded = lake.read_manifest(SALES, ds).get("raw_fingerprint")
    return recorded if recorded is not None else raw_fingerprint(history)


def incremental_base(ds: str, fingerprint: dict) -> tuple[str | None, str]:
    """The earlier feature partition whose rows dated <= it stay valid for ds, or None and why not."""
    earlier = [p for p in lake.partitions(FEATURES) if p < ds]
    if not earlier:
        return None, "no earlier feature partition"
    prev = max(earlier)
    if (dt.date.fromisoformat(ds) - dt.date.fromisoformat(prev)).days > MAX_GAP_DAYS:
        return None, f"the last feature partition ds={prev} is more than {MAX_GAP_DAYS} days old"
    manifest = lake.read_manifest(FEATURES, prev)
    if "raw_fingerprint" not in manifest:
        return None, f"ds={prev} has no raw fingerprint"
    if manifest.get("code_version") != lake.code_version():
        return None, f"ds={prev} was built by code {manifest.get('code_version')}, this is {lake.code_version()}"
    if "row_sums" not in manifest:
        return None, f"ds={prev} lists no files (built before segmented partitions)"
    if manifest.get("carried_nights", 0) >= MAX_CARRIED_NIGHTS:
        return None, f"ds={prev} carries {manifest['carried_nights']} nights of files: compacting"
    if not lake.exists(ANCHORS, prev) or lake.read_manifest(ANCHORS, prev).get("raw_digest") != digest(
            manifest["raw_fingerprint"]):
        return None, f"{ANCHORS} has no partition ds={prev} built from the same raw history"
    if fingerprint["null_categories"]:
        return None, f"{fingerprint['null_categories']} raw rows have no category (filled from later rows)"
    before = manifest["raw_fingerprint"]["dates"]
    now = {d: v for d, v in fingerprint["dates"].items() if d <= prev}
    if now != before:
        changed = sorted(d for d in set(now) | set(before) if now.get(d) != before.get(d))
        return None, (f"raw history dated <= {prev} differs from the one ds={prev} was built from on "
                      f"{len(changed)} day(s), first {changed[0]} (restated, missing or dropped)")
    return prev, f"rows dated <= {prev} reused from ds={prev}"


def anchors(rows):
    """Per series, the raw rows that carry what an unbounded frame reads from before a lookback window:
    its first sale, last known price, last row and largest category. anchors(anchors(A) u B) has the
    same values as anchors(A u B), so a night derives its anchors from the previous night's."""
    from pyspark.sql import functions as F

    dates = (rows.groupBy("item_id", "location_id")
             .agg(F.min(F.when(F.col("target") > 0, F.col("date"))).alias("d1"),
                  F.max(F.when(F.col("price").isNotNull(), F.col("date"))).alias("d2"),
                  F.max("date").alias("d3"), F.max_by("date", "category").alias("d4"))
             .select("item_id", "location_id", F.explode(F.array("d1", "d2", "d3", "d4")).alias("date"))
             .where(F.col("date").isNotNull()).distinct())
    return rows.join(dates, KEYS, "left_semi").select(*RAW_COLUMNS)


def check_no_late_rows(sales, ds: str, source: str) -> None:
    """A history partition must not hold rows dated after its own date (they would be future leakage).
    Where the ingest recorded the partition's raw fingerprint (its dates, from the rows it published),
    the dates are read from the manifest instead of scanning the history; else the rows are scanned."""
    from pyspark.sql import functions as F

    recorded = lake.read_manifest(SALES, ds).get("raw_fingerprint")
    if recorded is not None:
        late = sorted(d for d in recorded["dates"] if d > ds)
        if late:
            raise FeatureInputError(f"{source}: rows dated after the partition date, on {late[:5]} "
                                    f"(its manifest's raw_fingerprint)")
        return
    late = sales.where(F.to_date(F.col(_timestamp_column(sales))) > F.lit(ds).cast("date")).limit(5).collect()
    if late:
        raise FeatureInputError(f"{source}: rows dated after the partition date, e.g. {[r.asDict() for r in late]}")


def _start(day: str):
    from pyspark.sql import functions as F

    return F.date_sub(F.lit(day).cast("date"), LOOKBACK_DAYS)


def recent_history(spark, ds: str, prev: str, history, source: str):
    """The raw rows an incremental night reads: only the files of the months after prev's lookback start
    where the ingest laid the partition out by month (jobs/demand/ingest.py), so the read does not grow
    with the history's length; else the whole partition (filtered by date afterwards)."""
    from echelon.jobs.demand.ingest import files_since

    since = dt.date.fromisoformat(prev) - dt.timedelta(days=LOOKBACK_DAYS - 1)
    files = files_since(ds, since)
    if files is None:
        return history
    log.info("features ds=%s: reading %d of the raw partition's files (months from %s)", ds, len(files),
             f"{since:%Y-%m}")
    return _normalise(spark.read.parquet(*map(str, files)), source, with_target=True)


def run(ds: str, gate: Callable | None = None, horizon: int = DEFAULT_HORIZON, spark=None,
        incremental: bool = True) -> dict:
    """Read raw/demand/sales (+ raw/demand/plan when published) for ds, build, publish. Returns the manifest.

    incremental: reuse the rows of the last feature partition where they are provably unchanged (see
    the module docstring); the manifest's `build` says "full" or "incremental" and `build_reason` why."""
    from pyspark.sql import functions as F

    ds = lake.parse_ds(ds)
    spark = spark or get_spark("echelon-demand-features")
    started = time.time()
    sales = lake.read_spark(spark, SALES, ds).drop("ds")
    source = f"{SALES} ds={ds}"
    check_no_late_rows(sales, ds, source)
    plan = lake.read_spark(spark, PLAN, ds).drop("ds") if lake.exists(PLAN, ds) else None
    history = _normalise(sales, source, with_target=True)
    fingerprint = history_fingerprint(history, ds)
    prev, reason = incremental_base(ds, fingerprint) if incremental else (None, "asked for a full build")
    log.info("features ds=%s: %s history rows over %d days (fingerprint in %.1f s); %s build: %s",
             ds, f"{sum(int(v.split(':')[0]) for v in fingerprint['dates'].values()):,}",
             len(fingerprint["dates"]), time.time() - started, "incremental" if prev else "full", reason)
    carry, nights = None, 0
    if prev is None:
        features = build_features(spark, history, plan, horizon=horizon, source=source)
        state = anchors(history.where(F.col("date") <= _start(ds)))
    else:
        # the raw rows the new rows read: the last LOOKBACK_DAYS before prev and later, and the anchors
        # of everything before (prev's state)
        before = lake.read_spark(spark, ANCHORS, prev).drop("ds").select(*RAW_COLUMNS)
        recent = recent_history(spark, ds, prev, history, source).where(F.col("date") > _start(prev))
        built = build_features(spark, recent.unionByName(before), plan, horizon=horizon, source=source)
        features = built.where(F.col("date") > F.lit(prev).cast("date")).coalesce(NEW_FILES)
        state = anchors(before.unionByName(recent.where(F.col("date") <= _start(ds))))
        prev_manifest = lake.read_manifest(FEATURES, prev)
        carry = {name: (FEATURES.partition(prev) / name, sums) for name, sums in prev_manifest["row_sums"].items()
                 if name.startswith("hist-")}
        nights = prev_manifest.get("carried_nights", 0) + 1
    segment = F.when(F.col("date") <= F.lit(ds).cast("date"), F.lit("hist")).otherwise(F.lit("tail"))
    manifest = lake.publish(features.withColumn(SEGMENT, segment), FEATURES, ds, gate=gate,
                            segment_by=SEGMENT, carry=carry,
                            extra={"horizon": horizon, "future_covariates": plan is not None,
                                   "build": "incremental" if prev else "full", "build_reason": reason,
                                   "carried_nights": nights, "raw_fingerprint": fingerprint})
    lake.publish(state, ANCHORS, ds, extra={"raw_digest": digest(fingerprint), "lookback_days": LOOKBACK_DAYS})
    log.info("published %s ds=%s (%s build): %d rows (%d carried from ds=%s) in %.1f s", FEATURES, ds,
             manifest["build"], manifest["rows"], sum(s[0] for _, s in (carry or {}).values()), prev,
             time.time() - started)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True, help="partition date YYYY-MM-DD")
    parser.add_argument("--horizon", type=int, default=DEFAULT_HORIZON,
                        help="future days to add when no plan partition exists (default %(default)s)")
    parser.add_argument("--full", action="store_true", help="rebuild from the whole raw history")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = run(args.ds, horizon=args.horizon, incremental=not args.full)
    print(f"{FEATURES} ds={manifest['ds']}: {manifest['rows']} rows ({manifest['build']} build)")


if __name__ == "__main__":
    main()
