"""GluonTS forecasters and the MLflow pyfunc wrapper, on a tiny pooled dataset.

Training tests are marked slow and kept to a few batches: they check the contract (shape, timestamps,
finite, non-negative, non-crossing quantiles, save/load, seeding), not accuracy.
"""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from echelon.models.demand.base import QUANTILES, SERIES, qcols
from echelon.models.demand.gluon import (
    GLUON_MODELS,
    DeepARForecaster,
    FeedForwardForecaster,
    TFTForecaster,
    recommended,
    series_grid,
    to_gluon_entries,
    year_ago_row,
    yearly_lag,
)
from echelon.models.demand.pyfunc import log_forecaster, split_history_future

HORIZON = 7
TINY = dict(epochs=1, batches_per_epoch=3, batch_size=16, context_length=14, num_samples=50)


def make_history(days: int = 70, freq: str = "D", seed: int = 0) -> pd.DataFrame:
    """3 items x 2 locations with weekly seasonality, price, promo and a category."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=days, freq=freq)
    frames = []
    for i, item in enumerate(["a", "b", "c"]):
        for location in ["north", "south"]:
            promo = (rng.random(days) < 0.15).astype(int)
            price = np.round(5 + i - promo * 1.0, 2)
            level = 5 + 10 * i + 3 * np.sin(2 * np.pi * np.arange(days) / 7)
            frames.append(pd.DataFrame({
                "item_id": item, "location_id": location, "timestamp": stamps,
                "target": rng.poisson(np.clip(level * (1 + promo), 0.1, None)).astype(float),
                "price": price, "promo": promo, "category": "toys" if item != "c" else "food"}))
    return pd.concat(frames, ignore_index=True)


def assert_valid_forecasts(forecasts: pd.DataFrame, history: pd.DataFrame, freq: str = "D") -> None:
    n_series = history.groupby(SERIES).ngroups
    assert len(forecasts) == n_series * HORIZON
    assert list(forecasts.columns) == SERIES + ["timestamp", "horizon"] + qcols()
    values = forecasts[qcols()].to_numpy()
    assert np.isfinite(values).all()
    assert (values >= 0).all()
    assert (np.diff(values, axis=1) >= 0).all()
    for (item, location), fc in forecasts.groupby(SERIES):
        last = history.loc[(history.item_id == item) & (history.location_id == location), "timestamp"].max()
        expected = pd.date_range(last, periods=HORIZON + 1, freq=freq)[1:]
        assert fc["timestamp"].tolist() == expected.tolist()
        assert fc["horizon"].tolist() == list(range(1, HORIZON + 1))


# ---------------------------------------------------------------------------------------------
# Pure helpers (fast)
# ---------------------------------------------------------------------------------------------

def test_entries_carry_gaps_as_missing_and_extend_covariates_over_the_horizon():
    history = make_history(days=21)
    history = history.drop(history.index[3])      # a missing day inside series (a, north)
    from echelon.models.demand.gluon import _Vocab

    vocab = _Vocab.from_history(history, ["item_id", "category"])
    entries, keys = to_gluon_entries(history, "D", covariates=["price", "promo"], vocab=vocab,
                                     horizon=HORIZON)
    first = entries[0]
    assert keys[0]["item_id"] == "a" and keys[0]["location_id"] == "north"
    assert len(first["target"]) == 21 and np.isnan(first["target"][3])
    assert first["feat_dynamic_real"].shape == (2, 21 + HORIZON)
    # price is relative to the series' median; with no future given the last value carries forward
    assert first["feat_dynamic_real"][0, -1] == first["feat_dynamic_real"][0, 20]
    assert first["feat_static_cat"].tolist() == [1, 2]          # item 'a' -> 1, category 'toys' -> 2
    assert keys[0]["future"][0] == pd.Timestamp("2024-01-22")


def test_future_covariates_override_the_carried_forward_value():
    history = make_history(days=14)
    future = pd.DataFrame({"item_id": "a", "location_id": "north",
                           "timestamp": pd.date_range("2024-01-15", periods=HORIZON), "promo": 1,
                           "price": 2.0})
    entries, _ = to_gluon_entries(history, "D", covariates=["price", "promo"], horizon=HORIZON,
                                  future=future)
    promo = entries[0]["feat_dynamic_real"][1]
    assert (promo[-HORIZON:] == 1).all()
    others = entries[1]["feat_dynamic_real"][1]
    assert (others[-HORIZON:] == others[13]).all()


def test_year_ago_covariate_is_last_years_seasonal_index():
    assert yearly_lag("D") == (364, 3) and yearly_lag("W-MON") == (52, 1) and yearly_lag("h") is None
    days = np.arange(730)
    season = 1 + 0.5 * (days % 364 >= 300)                   # a "holiday season" every year
    target = (10 + days / 36.5) * season                       # ... on a growing trend
    row = year_ago_row(target, 730 + HORIZON, lag=364, half=3)
    assert (row[:364] == 1.0).all()                            # no year before: neutral
    # trend-free: ordinary days 50 days apart get the same index although sales grew meanwhile
    assert target[250] / target[200] > 1.08
    assert row[364 + 250] == pytest.approx(row[364 + 200], rel=0.01)
    assert row[364 + 320] / row[364 + 100] == pytest.approx(1.5, rel=0.02)
    # the horizon (steps 730..736) reads days 366..372 of the history (+-3 days): known in advance
    smoothed = pd.Series(target).rolling(7, center=True).mean()
    yearly = pd.Series(target).rolling(365, center=True, min_periods=182).mean()
    assert row[730:] == pytest.approx((smoothed / yearly).to_numpy()[366:373], rel=1e-5)
    # as the only covariate of a data entry, for training and for prediction
    history = pd.DataFrame({"item_id": "a", "location_id": "all",
                            "timestamp": pd.date_range("2022-01-01", periods=730),
                            "target": target})
    train, _ = to_gluon_entries(history, "D", covariates=["year_ago"])
    infer, _ = to_gluon_entries(history, "D", covariates=["year_ago"], horizon=HORIZON)
    assert train[0]["feat_dynamic_real"].shape == (1, 730)
    assert infer[0]["feat_dynamic_real"].shape == (1, 730 + HORIZON)
    assert infer[0]["feat_dynamic_real"][0] == pytest.approx(row)


def test_off_grid_timestamps_fail_with_a_hint():
    mondays = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-29")
    with pytest.raises(ValueError, match="W-MON"):
        series_grid(*mondays, "W")          # 'W' is anchored on Sundays
    assert len(series_grid(*mondays, "W-MON")) == 5


def test_split_history_future_uses_rows_without_target_as_covariates():
    frame = pd.DataFrame({"item_id": ["a"] * 3, "timestamp": pd.date_range("2024-01-01", periods=3),
                          "target": [1.0, 2.0, np.nan], "promo": [0, 0, 1]})
    history, future = split_history_future(frame)
    assert history["target"].tolist() == [1.0, 2.0]
    assert future.columns.tolist() == ["item_id", "timestamp", "promo"]
    assert future["promo"].tolist() == [1]
    assert split_history_future(frame.iloc[:2])[1] is None


def test_recommended_rejects_unknown_names():
    assert isinstance(recommended("tft", seed=3), TFTForecaster)
    assert recommended("tft", seed=3).params["seed"] == 3
    with pytest.raises(ValueError, match="unknown GluonTS model"):
        recommended("mqcnn")


# ---------------------------------------------------------------------------------------------
# Training (slow, tiny)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def history():
    return make_history()


@pytest.fixture(scope="module", params=sorted(GLUON_MODELS))
def fitted(request, history):
    model = GLUON_MODELS[request.param](seed=7, **TINY)
    return model.fit(history, HORIZON, "D")


@pytest.mark.slow
def test_trained_model_gives_valid_quantiles(fitted, history):
    forecasts = fitted.predict(history)
    assert_valid_forecasts(forecasts, history)
    assert fitted.quantiles == QUANTILES
    # pooled models forecast a bigger item bigger: item c sells ~4x item a
    medians = forecasts.groupby("item_id")["q_0.5"].mean()
    assert medians["c"] > medians["a"]


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_forecasts(fitted, history, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = type(fitted).load(tmp_path / "model")
    assert loaded.params == fitted.params and loaded.covariates == fitted.covariates
    pd.testing.assert_frame_equal(loaded.predict(history), fitted.predict(history))


@pytest.mark.slow
def test_same_seed_same_forecasts(history):
    first = GLUON_MODELS["deepar"](seed=11, **TINY).fit(history, HORIZON, "D").predict(history)
    second = GLUON_MODELS["deepar"](seed=11, **TINY).fit(history, HORIZON, "D").predict(history)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.slow
def test_seed_ensemble_averages_members_and_round_trips(history, tmp_path):
    single = FeedForwardForecaster(seed=5, **TINY).fit(history, HORIZON, "D")
    pair = FeedForwardForecaster(seed=5, ensemble_size=2, **TINY).fit(history, HORIZON, "D")
    assert len(pair.predictors) == 2
    # one epoch-loss curve per member, for MLflow's metric history (logged by the nightly training)
    assert set(pair.learning_curves) == {"train_loss_1", "train_loss_2"}
    assert set(single.learning_curves) == {"train_loss"} and len(single.learning_curves["train_loss"]) == TINY["epochs"]
    assert all(np.isfinite(v) for curve in pair.learning_curves.values() for v in curve)
    forecasts = pair.predict(history)
    assert_valid_forecasts(forecasts, history)
    assert not forecasts[qcols()].equals(single.predict(history)[qcols()])
    pair.save(tmp_path / "pair")
    pd.testing.assert_frame_equal(FeedForwardForecaster.load(tmp_path / "pair").predict(history), forecasts)


@pytest.mark.slow
def test_covariates_and_new_items(history):
    model = TFTForecaster(seed=1, **TINY).fit(history, HORIZON, "D")
    assert model.covariates == ["price", "promo"]
    # A planned promotion changes the forecast of the series it is planned for, and only that one.
    last = history["timestamp"].max()
    future = pd.DataFrame({"item_id": "b", "location_id": "south", "promo": 1, "price": 4.0,
                           "timestamp": pd.date_range(last, periods=HORIZON + 1)[1:]})
    plain, promoted = model.predict(history), model.predict(history, future)
    changed = (plain[qcols()] != promoted[qcols()]).any(axis=1)
    assert set(promoted.loc[changed, "item_id"] + "/" + promoted.loc[changed, "location_id"]) == {"b/south"}
    # An item never seen in training (cold start, short history, no price column) still forecasts.
    newcomer = pd.DataFrame({"item_id": "z", "location_id": "north", "target": [3.0, 4.0, 2.0],
                             "timestamp": pd.date_range(last - pd.Timedelta(days=2), periods=3),
                             "category": "toys"})
    forecasts = model.predict(newcomer)
    assert len(forecasts) == HORIZON and np.isfinite(forecasts[qcols()].to_numpy()).all()


@pytest.mark.slow
@pytest.mark.parametrize("freq, check", [
    ("W-MON", lambda t: (t.dt.dayofweek == 0).all()),      # weeks dated on Mondays stay Mondays
    ("MS", lambda t: (t.dt.day == 1).all()),                # month starts stay month starts
    ("h", lambda t: t.dt.hour.nunique() == HORIZON),
])
def test_other_frequencies_keep_their_anchor(freq, check):
    history = make_history(days=40, freq=freq)
    model = DeepARForecaster(seed=0, **{**TINY, "context_length": 8}).fit(history, HORIZON, freq)
    forecasts = model.predict(history)
    assert_valid_forecasts(forecasts, history, freq=freq)
    assert check(forecasts["timestamp"])


# ---------------------------------------------------------------------------------------------
# MLflow pyfunc
# ---------------------------------------------------------------------------------------------

@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("demand-test", artifact_location=str(tmp_path / "artifacts"))
    yield experiment
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_pyfunc_logs_registers_and_loads_back(tracking, history):
    model = FeedForwardForecaster(seed=2, **TINY).fit(history, HORIZON, "D")
    with mlflow.start_run(experiment_id=tracking):
        info = log_forecaster(model, name="model", registered_model_name="demand_test")
    version = info.registered_model_version
    assert version == 1
    loaded = mlflow.pyfunc.load_model(f"models:/demand_test/{version}")
    # Input as a caller hands it over: history plus planned covariate rows without a target.
    last = history["timestamp"].max()
    planned = history.drop_duplicates(SERIES)[SERIES + ["category"]].assign(
        timestamp=last + pd.Timedelta(days=1), target=np.nan, price=5.0, promo=0)
    served = loaded.predict(pd.concat([history, planned], ignore_index=True))
    direct = model.predict(history)
    pd.testing.assert_frame_equal(served.reset_index(drop=True), direct, check_dtype=False)
