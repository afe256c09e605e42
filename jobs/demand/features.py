"""Demand feature job: the canonical sales history -> one feature row per series x date (Spark SQL).

The rows are defined in echelon/demand_features.py (build_features, shared with LightGBM); this module
reads the lake, builds them (incrementally where it can) and publishes.

CLI: python -m echelon.jobs.demand.features --ds 2026-11-20 [--horizon 28] [--full]
reads raw/demand/sales (and raw/demand/plan, the future known covariates, when published) for ds and
publishes features/demand/sales_features for ds.

Incremental nights. A published row depends only on raw rows up to its own date, so when an earlier
feature partition (prev, within MAX_GAP_DAYS) was built by the same code from exactly today's raw rows
dated <= prev (checked per date: row count and an exact sum of row hashes, kept in each manifest as
`raw_fingerprint`), its rows dated <= prev are today's rows too. Only the rows after prev (the new days
and the forecast horizon) are computed, from the last LOOKBACK_DAYS of raw history plus a few anchor rows
per series from before it (its first sale, last known price, last row, largest category: the only
values a row reads from further back). The partition is then prev's rows + the new ones: the same
content as a full build, so readers do not change. A restated or missing past day, a slid raw window
(ingest's trailing history_days dropped its oldest day), a null category (filled from the item's later
rows), other code, or no usable prev partition: a full build, and the manifest says why.
Cost: the windows run over LOOKBACK_DAYS + new days per series, whatever the history's length; the raw
fingerprint scan, the copy of prev's rows and the publish (checksum, gate) still read the whole history.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from typing import Callable

from echelon import lake
from echelon.catalog.demand import FEATURES, RAW_PLAN as PLAN, RAW_SALES as SALES
from echelon.demand_features import KEYS, FeatureInputError, _normalise, _timestamp_column, build_features
from echelon.spark import get_spark

log = logging.getLogger(__name__)

DEFAULT_HORIZON = 28
# The furthest back a row's window frames read: year_ago_mean_28 covers 364..391 days before the row
# (sql/demand/series_stats.sql); a few days of margin.
LOOKBACK_DAYS = 400
# An incremental night may catch up at most this many days after the last partition; more: a full build.
MAX_GAP_DAYS = 28
RAW_COLUMNS = ["item_id", "location_id", "date", "target", "in_stock", "price", "promo", "category"]


def raw_fingerprint(history) -> dict:
    """Per date of a normalised history: "rows:sum of row hashes" (exact, order-free), and the count of
    null categories. Equal fingerprints for a date: the same rows that day (up to a 64-bit hash clash)."""
    from pyspark.sql import functions as F

    row_hash = F.xxhash64(*[F.col(c) for c in RAW_COLUMNS]).cast("decimal(38,0)")
    rows = (history.groupBy("date")
            .agg(F.count(F.lit(1)).alias("n"), F.sum(row_hash).alias("h"),
                 F.sum(F.col("category").isNull().cast("long")).alias("null_categories"))
            .collect())
    return {"dates": {r["date"].isoformat(): f"{r['n']}:{r['h']}" for r in rows},
            "null_categories": int(sum(r["null_categories"] for r in rows))}


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
    if fingerprint["null_categories"]:
        return None, f"{fingerprint['null_categories']} raw rows have no category (filled from later rows)"
    before = manifest["raw_fingerprint"]["dates"]
    now = {d: v for d, v in fingerprint["dates"].items() if d <= prev}
    if now != before:
        changed = sorted(d for d in set(now) | set(before) if now.get(d) != before.get(d))
        return None, (f"raw history dated <= {prev} differs from the one ds={prev} was built from on "
                      f"{len(changed)} day(s), first {changed[0]} (restated, missing or dropped)")
    return prev, f"rows dated <= {prev} reused from ds={prev}"


def _recent_history(history, prev: str):
    """Raw rows the rows after prev can read: the last LOOKBACK_DAYS before prev and later, plus per
    series the older rows that carry what an unbounded frame reads (first sale, last known price,
    last row, largest category)."""
    from pyspark.sql import functions as F

    start = F.date_sub(F.lit(prev).cast("date"), LOOKBACK_DAYS)
    old = history.where(F.col("date") <= start)
    anchors = (old.groupBy("item_id", "location_id")
               .agg(F.min(F.when(F.col("target") > 0, F.col("date"))).alias("d1"),
                    F.max(F.when(F.col("price").isNotNull(), F.col("date"))).alias("d2"),
                    F.max("date").alias("d3"), F.max_by("date", "category").alias("d4"))
               .select("item_id", "location_id", F.explode(F.array("d1", "d2", "d3", "d4")).alias("date"))
               .where(F.col("date").isNotNull()).distinct())
    return history.where(F.col("date") > start).unionByName(old.join(anchors, KEYS, "left_semi"))


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
    ts = _timestamp_column(sales)
    # a history partition must not hold rows dated after its own date (they would be future leakage)
    late = sales.where(F.to_date(F.col(ts)) > F.lit(ds).cast("date")).limit(5).collect()
    if late:
        raise FeatureInputError(f"{source}: rows dated after the partition date, e.g. {[r.asDict() for r in late]}")
    plan = lake.read_spark(spark, PLAN, ds).drop("ds") if lake.exists(PLAN, ds) else None
    history = _normalise(sales, source, with_target=True)
    fingerprint = raw_fingerprint(history)
    prev, reason = incremental_base(ds, fingerprint) if incremental else (None, "asked for a full build")
    log.info("features ds=%s: %s history rows over %d days fingerprinted in %.1f s; %s build: %s",
             ds, f"{sum(int(v.split(':')[0]) for v in fingerprint['dates'].values()):,}",
             len(fingerprint["dates"]), time.time() - started, "incremental" if prev else "full", reason)
    if prev is None:
        features = build_features(spark, history, plan, horizon=horizon, source=source)
    else:
        recent = build_features(spark, _recent_history(history, prev), plan, horizon=horizon, source=source)
        new = recent.where(F.col("date") > F.lit(prev).cast("date"))
        kept = lake.read_spark(spark, FEATURES, prev).drop("ds").where(F.col("date") <= F.lit(prev).cast("date"))
        features = kept.unionByName(new.select(*kept.columns))
    manifest = lake.publish(features, FEATURES, ds, gate=gate,
                            extra={"horizon": horizon, "future_covariates": plan is not None,
                                   "build": "incremental" if prev else "full", "build_reason": reason,
                                   "raw_fingerprint": fingerprint})
    log.info("published %s ds=%s (%s build): %d rows in %.1f s", FEATURES, ds, manifest["build"],
             manifest["rows"], time.time() - started)
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
