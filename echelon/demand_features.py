"""The demand feature table's definition: canonical history -> one feature row per series x date (Spark SQL).

Shared by the nightly feature job (jobs/demand/features.py: reads the lake, builds incrementally, publishes)
and LightGBM (models/demand/lgbm.py), which builds the same rows from a history when it trains, backtests
and scores (its MLflow pyfunc too), so it sits in echelon/, which both layers may import. Pure: frames in,
a lazy frame out, no lake. The SQL lives in sql/demand/, one file per transform:
    future_dates  (only without a plan)   spine -> calendar -> series_stats, category_stats -> assemble

Every feature of a row is known at the END of its date: lags, rolling statistics and category
aggregates use window frames that end at the current row, so changing a later target never changes
an earlier row. Future dates (the forecast horizon) get rows too, carrying calendar features, known
covariates (price, promo) and year-ago values; their history statistics are NULL.
"""
from __future__ import annotations

from echelon.spark import get_spark, load_sql

KEYS = ["item_id", "location_id", "date"]
REQUIRED = ("item_id", "timestamp", "target")

# Feature groups, for models that pick their inputs by name.
CALENDAR_FEATURES = ["day_of_week", "day_of_month", "month", "week_of_year", "day_of_year",
                     "is_holiday", "is_black_friday", "is_cyber_monday", "is_prime_day",
                     "days_to_christmas", "days_to_black_friday", "days_to_prime_day"]
LAGS = [0, 1, 2, 3, 4, 5, 6, 13, 20, 27]
LAG_FEATURES = [f"lag_{k}" for k in LAGS]
ROLLING_FEATURES = ["roll_mean_7", "roll_std_7", "roll_mean_28", "roll_std_28", "roll_mean_91",
                    "roll_std_91", "roll_mean_364"]
DOW_MEAN_FEATURES = [f"dow_mean_{d}" for d in range(7)]
YEAR_AGO_FEATURES = ["year_ago_lag_364", "year_ago_mean_7", "year_ago_mean_28"]
CATEGORY_FEATURES = ["cat_items", "cat_mean_7", "cat_mean_28", "cat_mean_91"] + \
    [f"cat_dow_mean_{d}" for d in range(7)]


class FeatureInputError(ValueError):
    """The history (or plan) handed to the feature job is not the canonical frame."""


def _timestamp_column(sdf) -> str:
    if "timestamp" in sdf.columns:
        return "timestamp"
    if "date" in sdf.columns:
        return "date"
    raise FeatureInputError("no `timestamp` (or `date`) column")


def _normalise(sdf, source: str, *, with_target: bool):
    """Select the canonical columns with fixed types; absent optional columns become NULL."""
    from pyspark.sql import functions as F

    needed = [c for c in REQUIRED if with_target or c != "target"]
    missing = [c for c in needed if c not in sdf.columns and not (c == "timestamp" and "date" in sdf.columns)]
    if missing:
        raise FeatureInputError(
            f"{source}: missing column(s) {missing}; has {sdf.columns}. Expected the canonical long "
            f"frame of models/demand/base.py (item_id, location_id, timestamp, target, ...)")
    ts = _timestamp_column(sdf)

    def optional(name, dtype, default=None):
        if name in sdf.columns:
            return F.col(name).cast(dtype).alias(name)
        return F.lit(default).cast(dtype).alias(name)

    columns = [
        F.col("item_id").cast("string").alias("item_id"),
        (F.col("location_id").cast("string") if "location_id" in sdf.columns else F.lit("all")).alias("location_id"),
        F.to_date(F.col(ts)).alias("date"),
    ]
    if with_target:
        columns += [F.col("target").cast("double").alias("target"), optional("in_stock", "int")]
    columns += [optional("price", "double"), optional("promo", "int"), optional("category", "string")]
    return sdf.select(*columns)


def _check_keys(sdf, source: str) -> None:
    """Null keys and duplicate series x date rows would silently corrupt every window: refuse them."""
    from pyspark.sql import functions as F

    nulls = sdf.where(F.col("item_id").isNull() | F.col("date").isNull()).limit(5).collect()
    if nulls:
        raise FeatureInputError(f"{source}: null item_id or timestamp, e.g. {[r.asDict() for r in nulls]}")
    dups = sdf.groupBy(*KEYS).count().where("count > 1").limit(5).collect()
    if dups:
        raise FeatureInputError(
            f"{source}: duplicate (item_id, location_id, timestamp) rows, e.g. {[r.asDict() for r in dups]}")


RAW_COLUMNS = ["item_id", "location_id", "date", "target", "in_stock", "price", "promo", "category"]


def raw_fingerprint(history) -> dict:
    """Per date of a normalised history (_normalise): "rows:sum of row hashes" (exact, order-free), and the
    count of null categories. Equal fingerprints for a date: the same rows that day (up to a 64-bit hash
    clash). Computed by the ingest when it publishes a raw partition (kept in its manifest), so the nightly
    feature job compares histories without reading them."""
    from pyspark.sql import functions as F

    row_hash = F.xxhash64(*[F.col(c) for c in RAW_COLUMNS]).cast("decimal(38,0)")
    rows = (history.groupBy("date")
            .agg(F.count(F.lit(1)).alias("n"), F.sum(row_hash).alias("h"),
                 F.sum(F.col("category").isNull().cast("long")).alias("null_categories"))
            .collect())
    return {"dates": {r["date"].isoformat(): f"{r['n']}:{r['h']}" for r in rows},
            "null_categories": int(sum(r["null_categories"] for r in rows))}


def build_features(spark, history_sdf, future_sdf=None, items_sdf=None, horizon: int = 0,
                   validate: bool = True, source: str = "history"):
    """Pure transform: canonical history (Spark DataFrame) -> feature rows (Spark DataFrame, lazy).

    future_sdf: known covariates for future dates (item_id, location_id, timestamp, price, promo).
    items_sdf:  item_id -> category, used when the history has no category.
    horizon:    without future_sdf, add this many future dates after the last history date for every
                series (price carried forward, no promo), so the table covers the forecast horizon.
    """
    history = _normalise(history_sdf, source, with_target=True)
    if validate:
        _check_keys(history, source)
    if future_sdf is not None:
        future = _normalise(future_sdf, f"{source} (future covariates)", with_target=False)
    else:
        future = history.select("item_id", "location_id", "date", "price", "promo", "category").limit(0)
    if items_sdf is not None and "category" in items_sdf.columns:
        items = items_sdf.selectExpr("CAST(item_id AS STRING) AS item_id", "CAST(category AS STRING) AS category")
    else:
        items = spark.createDataFrame([], "item_id string, category string")

    history.createOrReplaceTempView("demand_history")
    items.createOrReplaceTempView("demand_items")
    if future_sdf is None and horizon > 0:
        future = spark.sql(load_sql("demand/future_dates", horizon=int(horizon)))
    future.createOrReplaceTempView("demand_future")

    # spark.sql analyses each query at once, so later replacements of these views do not affect it
    spine = spark.sql(load_sql("demand/spine"))
    spine.createOrReplaceTempView("demand_spine")
    spine.select("date").distinct().createOrReplaceTempView("demand_dates")
    spark.sql(load_sql("demand/calendar")).createOrReplaceTempView("demand_calendar")
    spark.sql(load_sql("demand/series_stats")).createOrReplaceTempView("demand_series_stats")
    spark.sql(load_sql("demand/category_stats")).createOrReplaceTempView("demand_category_stats")
    return spark.sql(load_sql("demand/assemble"))


def features_pandas(history, future=None, items=None, horizon: int = 0, spark=None):
    """Convenience for models: pandas canonical frames in, pandas feature frame out (local Spark)."""
    import pandas as pd

    spark = spark or get_spark("echelon-demand-features")

    def to_spark(frame):
        if frame is None:
            return None
        frame = frame.copy()
        for col in ("item_id", "location_id", "category"):
            if col in frame.columns:
                # missing stays missing (astype(str) would turn it into the category "nan")
                frame[col] = frame[col].map(lambda v: None if pd.isna(v) else str(v))
        if "timestamp" in frame.columns:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.date
        return spark.createDataFrame(frame)

    result = build_features(spark, to_spark(history), to_spark(future), to_spark(items), horizon=horizon)
    pdf = result.toPandas()
    pdf["date"] = pd.to_datetime(pdf["date"])
    return pdf.sort_values(KEYS, kind="stable").reset_index(drop=True)
