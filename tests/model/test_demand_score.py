"""Nightly scoring reads only the rows a forecast needs: trimmed in Spark to each series' recent window,
the champion's forecasts through the pyfunc are the same as from the whole feature table."""
import numpy as np
import pandas as pd
import pytest

from echelon import tracking
from echelon.demand_features import features_pandas
from echelon.models.demand.base import qcols
from echelon.models.demand.lgbm import LightGBMForecaster
from echelon.models.demand.naive import SeasonalNaiveForecaster
from echelon.models.demand.pyfunc import log_forecaster
from echelon.models.demand.score import forecast_with_spark, history_days, recent_rows

HORIZON = 7
KEYS = ["item_id", "location_id", "timestamp"]


def small_world(days: int = 150, seed: int = 3) -> pd.DataFrame:
    """Six weekly-seasonal Poisson series; one of them stops selling 10 days before the end, so its
    window ends earlier than the others'."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=days, freq="D")
    frames = []
    for item in range(3):
        for store in ("s1", "s2"):
            rate = (5 + 3 * item) * np.array([0.8, 0.9, 1.0, 1.0, 1.2, 1.5, 0.6])[stamps.dayofweek]
            frames.append(pd.DataFrame({"item_id": f"i{item}", "location_id": store, "category": "c",
                                        "timestamp": stamps, "target": rng.poisson(rate).astype(float)}))
    world = pd.concat(frames, ignore_index=True)
    gone = (world["item_id"] == "i0") & (world["location_id"] == "s2") & (world["timestamp"] > stamps[-10])
    return world[~gone].reset_index(drop=True)


@pytest.fixture(scope="module")
def feature_table(spark):
    world = small_world()
    last = world["timestamp"].max()
    future = pd.DataFrame([(i, s, "c", last + pd.Timedelta(days=d)) for i, s in
                           world[["item_id", "location_id"]].drop_duplicates().itertuples(index=False)
                           for d in range(1, HORIZON + 1)], columns=["item_id", "location_id", "category", "timestamp"])
    # the series that stopped selling has future rows from its own last day on, as in the lake
    stopped = world[(world["item_id"] == "i0") & (world["location_id"] == "s2")]["timestamp"].max()
    gap = pd.DataFrame({"item_id": "i0", "location_id": "s2", "category": "c",
                        "timestamp": pd.date_range(stopped + pd.Timedelta(days=1), last)})
    features = features_pandas(world, future=pd.concat([gap, future], ignore_index=True), horizon=HORIZON,
                               spark=spark)
    features["date"] = features["date"].dt.date    # as the lake stores it
    return world, features


def score(spark, features: pd.DataFrame, uri: str, days) -> tuple[pd.DataFrame, int]:
    frame = recent_rows(spark.createDataFrame(features), days)
    out = forecast_with_spark(frame, uri, buckets=2).toPandas()
    return out.sort_values(KEYS).reset_index(drop=True), frame.count()


@pytest.mark.parametrize("name", ["seasonal_naive", "lightgbm"])
def test_trimmed_scoring_equals_full_scoring(spark, feature_table, name):
    import mlflow

    world, features = feature_table
    if name == "lightgbm":
        table = features.assign(date=pd.to_datetime(features["date"]))
        model = LightGBMForecaster(num_boost_round=20, max_origins_per_series=30, seed=1, spark=spark,
                                   params={"num_leaves": 7, "min_data_in_leaf": 20}).fit_features(table, HORIZON)
    else:
        model = SeasonalNaiveForecaster().fit(world, HORIZON, "D")
    tracking.configure()
    with mlflow.start_run():
        uri = log_forecaster(model, name="model").model_uri
    days = history_days(model)
    full, full_rows = score(spark, features, uri, None)
    trimmed, trimmed_rows = score(spark, features, uri, days)
    pd.testing.assert_frame_equal(trimmed, full)
    assert len(full) == 6 * HORIZON and full[qcols()].notna().all().all()
    if name == "lightgbm":
        # the origin row of each series and the rows after it: a small part of the table
        assert days == 1 and trimmed_rows < full_rows / 10
    else:   # its error scale spans the whole history: nothing is trimmed
        assert days is None and trimmed_rows == full_rows


def test_recent_rows_keeps_each_series_window_from_its_own_last_day(spark, feature_table):
    _, features = feature_table
    kept = recent_rows(spark.createDataFrame(features), 3).toPandas()
    observed = kept[kept["is_future"] == 0]
    per_series = observed.groupby(["item_id", "location_id"])["date"].agg(["min", "max", "count"])
    assert (per_series["count"] == 3).all()
    assert per_series.loc[("i0", "s2"), "max"] < per_series.loc[("i1", "s1"), "max"]
    assert len(kept[kept["is_future"] == 1]) == len(features[features["is_future"] == 1])
