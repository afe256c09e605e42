"""Nightly scoring: the registered @champion forecasts every series, in parallel through Spark.

Each Spark task takes a bucket of series (their feature rows: history up to ds and the planned covariates
after it), loads the champion through MLflow's pyfunc interface once per Python worker, and returns the
quantile forecasts. The same code runs on local[*] and on a cluster (executors load the model from the
tracking server's artifact store).

Only what a forecast needs leaves Spark: the future rows and each series' last `history_days` observed
days, a property of the champion recorded as a tag of its version when it was trained (`history_days`)."""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging

import pandas as pd

from echelon import lake, tracking
from echelon.catalog.demand import FEATURES, FORECASTS
from echelon.models.demand.base import QUANTILES, qcols

log = logging.getLogger(__name__)
MODEL_NAME = "demand_forecaster"
HORIZON = 28
# Feature rows per scoring bucket at most: one bucket is one pandas frame in one Python worker (~0.7 GB at
# a million rows), so the number of buckets grows with the partition instead of each bucket's size.
BUCKET_ROWS = 1_000_000


def forecast_schema(quantiles=QUANTILES) -> str:
    quantile_fields = ", ".join(f"`{c}` double" for c in qcols(quantiles))
    return f"item_id string, location_id string, timestamp date, horizon int, {quantile_fields}"


@functools.lru_cache(maxsize=4)
def _load(model_uri: str):
    import mlflow

    tracking.configure()
    return mlflow.pyfunc.load_model(model_uri)


def champion():
    """The model version behind @champion, resolved once on the driver so that every executor scores
    with the same version even if the alias moves meanwhile."""
    version = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if version is None:
        raise LookupError(f"registered model {MODEL_NAME!r} has no @{tracking.CHAMPION}: run the train and "
                          f"evaluate_and_promote steps first")
    return version



# Observed days (ending at a series' last observed day) a model reads to forecast, for models that do not
# say it themselves (a `history_days` attribute). LightGBM reads the published feature rows, which already
# carry every lag and rolling statistic it uses: the origin row is enough. The rest read the whole history
# (seasonal naive scales its errors by the series' mean seasonal difference over all of it; the GluonTS
# models normalise price by its median over the history and may look a year back), so they get it all.
HISTORY_DAYS = {"lightgbm": 1}


def history_days(forecaster) -> int | None:
    """Days of observed history per series the forecaster needs at prediction time; None: all."""
    days = getattr(forecaster, "history_days", None)
    if days is None:
        days = HISTORY_DAYS.get(getattr(forecaster, "name", None))
    return None if days is None else int(days)


def champion_history_days(version) -> int | None:
    """The `history_days` tag of a model version; None (all history) for versions trained before it."""
    tag = version.tags.get("history_days", "all")
    return None if tag == "all" else int(tag)


def recent_rows(features, days: int | None):
    """Spark: the feature rows a forecast from each series' last observed day reads -- its last `days`
    observed days and everything after them (the planned future rows). days=None: every row."""
    if days is None:
        return features
    from pyspark.sql import functions as F

    # one small row per series, joined back (broadcast when it fits): the wide feature rows are not
    # shuffled, as a window over each series would do
    last = (features.where(F.col("is_future") == 0).groupBy("item_id", "location_id")
            .agg(F.max("date").alias("_last")))
    return (features.join(last, ["item_id", "location_id"], "left")
            .where(F.col("_last").isNull() | (F.col("date") > F.date_sub(F.col("_last"), days)))
            .drop("_last"))


def forecast_with_spark(features, model_uri: str, buckets: int = 8):
    """features: Spark DataFrame of feature rows (history and future) -> Spark DataFrame of forecasts."""
    from pyspark.sql import functions as F

    def predict_bucket(rows: pd.DataFrame) -> pd.DataFrame:
        forecasts = _load(model_uri).predict(rows.drop(columns=["_bucket"]))
        forecasts["timestamp"] = pd.to_datetime(forecasts["timestamp"]).dt.date
        return forecasts[["item_id", "location_id", "timestamp", "horizon", *qcols()]]

    bucketed = features.withColumn("_bucket", F.pmod(F.xxhash64("item_id", "location_id"), F.lit(buckets)))
    return bucketed.groupBy("_bucket").applyInPandas(predict_bucket, schema=forecast_schema())


def to_contract(forecasts, ds: str, model_version: str):
    """Rename to the published `forecasts` contract of DESIGN.md."""
    from pyspark.sql import functions as F

    return (forecasts.withColumnRenamed("timestamp", "target_date")
            .withColumn("model_version", F.lit(model_version))
            .select("item_id", "location_id", "target_date", "horizon", *[F.col(f"`{c}`") for c in qcols()],
                    "model_version"))


def run(ds: str, horizon: int = HORIZON) -> dict:
    from echelon.spark import get_spark

    ds = lake.parse_ds(ds)
    spark = get_spark("demand-score")
    chosen = champion()
    uri, version = f"models:/{MODEL_NAME}/{chosen.version}", str(chosen.version)
    days = champion_history_days(chosen)
    features = recent_rows(lake.read_spark(spark, FEATURES, ds).drop("ds"), days)
    log.info("scoring with %s from %s of history per series", uri, "all" if days is None else f"{days} day(s)")
    # the published row count bounds the rows scored (all of them for whole-history models): no Spark pass
    buckets = max(8, -(-lake.read_manifest(FEATURES, ds)["rows"] // BUCKET_ROWS))
    forecasts = to_contract(forecast_with_spark(features, uri, buckets), ds, f"{MODEL_NAME}/{version}")
    day_after = (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()
    manifest = lake.publish(forecasts, FORECASTS, ds,
                            gate=True, params={"horizon": horizon, "day_after_ds": day_after},
                            extra={"model_version": f"{MODEL_NAME}/{version}"})
    log.info("published %s ds=%s: %d rows from %s", FORECASTS, ds, manifest["rows"], uri)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds", required=True)


def main(args: argparse.Namespace) -> int:
    print(run(args.ds))
    return 0
