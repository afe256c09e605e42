"""Nightly scoring: the registered @champion forecasts every series, in parallel through Spark.

Each Spark task takes a bucket of series (their feature rows: history up to ds and the planned covariates
after it), loads the champion through MLflow's pyfunc interface once per Python worker, and returns the
quantile forecasts. The same code runs on local[*] and on a cluster (executors load the model from the
tracking server's artifact store)."""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging

import pandas as pd

from echelon import lake, tracking
from echelon.models.demand.base import QUANTILES, qcols

log = logging.getLogger(__name__)
MODEL_NAME = "demand_forecaster"
FEATURES = lake.Table("features", "demand", "sales_features")
FORECASTS = lake.Table("published", "demand", "forecasts")
HORIZON = 28


def forecast_schema(quantiles=QUANTILES) -> str:
    quantile_fields = ", ".join(f"`{c}` double" for c in qcols(quantiles))
    return f"item_id string, location_id string, timestamp date, horizon int, {quantile_fields}"


@functools.lru_cache(maxsize=4)
def _load(model_uri: str):
    import mlflow

    tracking.configure()
    return mlflow.pyfunc.load_model(model_uri)


def champion_uri() -> tuple[str, str]:
    """The concrete models:/name/version behind @champion, resolved once on the driver so that every
    executor scores with the same version even if the alias moves meanwhile."""
    version = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if version is None:
        raise LookupError(f"registered model {MODEL_NAME!r} has no @{tracking.CHAMPION}: run the train and "
                          f"evaluate_and_promote steps first")
    return f"models:/{MODEL_NAME}/{version.version}", str(version.version)


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
    from echelon.expectations.gate import gate
    from echelon.spark import get_spark

    ds = lake.parse_ds(ds)
    spark = get_spark("demand-score")
    uri, version = champion_uri()
    features = lake.read_spark(spark, FEATURES, ds).drop("ds")
    forecasts = to_contract(forecast_with_spark(features, uri), ds, f"{MODEL_NAME}/{version}")
    day_after = (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()
    manifest = lake.publish(forecasts, FORECASTS, ds,
                            gate=gate("demand_forecasts", FORECASTS, ds,
                                      {"horizon": horizon, "day_after_ds": day_after}),
                            extra={"model_version": f"{MODEL_NAME}/{version}"})
    log.info("published %s ds=%s: %d rows from %s", FORECASTS, ds, manifest["rows"], uri)
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds", required=True)


def main(args: argparse.Namespace) -> int:
    print(run(args.ds))
    return 0
