"""Pooled LightGBM quantile forecaster and the seasonal naive baseline on small synthetic data."""
import numpy as np
import pandas as pd
import pytest

from echelon.jobs.demand.features import features_pandas
from echelon.models.demand.backtest import backtest
from echelon.models.demand.base import qcols
from echelon.models.demand.lgbm import FeatureTableError, LightGBMForecaster
from echelon.models.demand.metrics import evaluate
from echelon.models.demand.naive import SeasonalNaiveForecaster
from echelon.spark import get_spark

HORIZON = 14
WEEKLY = {"snacks": [0.8, 0.8, 0.9, 1.0, 1.2, 1.6, 0.7], "tools": [1.3, 1.2, 1.1, 1.0, 0.9, 0.5, 1.0]}
CATEGORY_LEVEL = {"snacks": 30.0, "tools": 8.0}


def synthetic_world(days: int = 240, seed: int = 0) -> pd.DataFrame:
    """Two categories x 6 items x 2 stores; demand = level x category weekday shape x slow yearly wave,
    Poisson noise. Item levels scatter around the category level."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2023-01-02", periods=days, freq="D")
    wave = 1 + 0.2 * np.sin(2 * np.pi * np.arange(days) / 365)
    frames = []
    for category, shape in WEEKLY.items():
        weekday = np.array(shape)[stamps.dayofweek]
        for item in range(6):
            for store in ("s1", "s2"):
                level = CATEGORY_LEVEL[category] * rng.uniform(0.6, 1.4)
                frames.append(pd.DataFrame({
                    "item_id": f"{category}-{item}", "location_id": store, "category": category,
                    "timestamp": stamps, "target": rng.poisson(level * weekday * wave).astype(float)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def spark():
    return get_spark("echelon-test-demand-lgbm")


@pytest.fixture(scope="module")
def world():
    return synthetic_world()


@pytest.fixture(scope="module")
def split(world):
    cutoff = world["timestamp"].max() - pd.Timedelta(days=HORIZON)
    return world[world["timestamp"] <= cutoff], world[world["timestamp"] > cutoff]


def small_lgbm(spark=None, **overrides):
    settings = dict(num_boost_round=80, max_origins_per_series=60, seed=7, spark=spark,
                    params={"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 50})
    settings.update(overrides)
    return LightGBMForecaster(**settings)


@pytest.fixture(scope="module")
def fitted(spark, split):
    history, _ = split
    return small_lgbm(spark).fit(history, horizon=HORIZON, freq="D")


@pytest.fixture(scope="module")
def new_item_forecast(spark, split, fitted):
    """Forecast every series plus a new snacks item at s1 that has no history at all."""
    history, actual = split
    future = actual.drop(columns="target")
    launch = future[(future["item_id"] == "snacks-0") & (future["location_id"] == "s1")].assign(item_id="snacks-new")
    return fitted.predict(history, pd.concat([future, launch], ignore_index=True))


def test_seasonal_naive_is_exact_on_a_perfectly_weekly_series():
    stamps = pd.date_range("2024-01-01", periods=8 * 7, freq="D")
    pattern = np.array([3.0, 5, 8, 13, 21, 34, 55])
    history = pd.DataFrame({"item_id": "p", "location_id": "x", "timestamp": stamps,
                            "target": pattern[np.arange(len(stamps)) % 7]})
    model = SeasonalNaiveForecaster().fit(history, horizon=10, freq="D")
    forecast = model.predict(history)
    expected = pattern[(np.arange(len(stamps), len(stamps) + 10)) % 7]
    for col in qcols():
        np.testing.assert_allclose(forecast[col].to_numpy(), expected)
    assert forecast["horizon"].tolist() == list(range(1, 11))
    assert forecast["timestamp"].iloc[0] == stamps[-1] + pd.Timedelta(days=1)


@pytest.mark.parametrize("freq, season", [("h", 24), ("W-MON", 52)])
def test_seasonal_naive_infers_the_season_from_the_frequency(freq, season):
    stamps = pd.date_range("2021-01-04", periods=3 * season, freq=freq)
    pattern = np.arange(season, dtype=float) ** 1.5
    history = pd.DataFrame({"item_id": "p", "timestamp": stamps, "target": pattern[np.arange(len(stamps)) % season]})
    forecast = SeasonalNaiveForecaster().fit(history, horizon=season + 2, freq=freq).predict(history)
    np.testing.assert_allclose(forecast["q_0.9"], pattern[np.arange(season + 2) % season])
    assert forecast["timestamp"].iloc[0] == stamps[-1] + pd.tseries.frequencies.to_offset(freq)


def test_seasonal_naive_save_load_roundtrip(tmp_path, split):
    history, _ = split
    model = SeasonalNaiveForecaster().fit(history, horizon=HORIZON, freq="D")
    model.save(tmp_path / "naive")
    again = SeasonalNaiveForecaster.load(tmp_path / "naive")
    pd.testing.assert_frame_equal(model.predict(history), again.predict(history))


def test_lightgbm_beats_seasonal_naive_with_non_crossing_quantiles(split, fitted, new_item_forecast):
    history, actual = split
    naive = SeasonalNaiveForecaster().fit(history, horizon=HORIZON, freq="D").predict(history)
    lgbm_score = evaluate(new_item_forecast, actual, history)["overall"].iloc[0]
    naive_score = evaluate(naive, actual, history)["overall"].iloc[0]
    assert lgbm_score["wql"] < 0.9 * naive_score["wql"]
    values = new_item_forecast[qcols()].to_numpy()
    assert (np.diff(values, axis=1) >= 0).all() and (values >= 0).all()
    assert 0.6 <= lgbm_score["coverage_80"] <= 0.97
    assert len(new_item_forecast) == (history[["item_id", "location_id"]].drop_duplicates().shape[0] + 1) * HORIZON


def test_new_item_gets_its_category_level(split, new_item_forecast):
    history, _ = split
    new = new_item_forecast[new_item_forecast["item_id"] == "snacks-new"]
    assert len(new) == HORIZON and new["horizon"].tolist() == list(range(1, HORIZON + 1))
    recent = history[(history["timestamp"] > history["timestamp"].max() - pd.Timedelta(days=28))
                     & (history["category"] == "snacks") & (history["location_id"] == "s1")]
    category_level = recent["target"].mean()
    assert new["q_0.5"].mean() == pytest.approx(category_level, rel=0.3)
    # and it follows the category's weekly shape: its Saturday median above its Sunday median
    by_day = new.assign(dow=new["timestamp"].dt.dayofweek).groupby("dow")["q_0.5"].mean()
    assert by_day[5] > by_day[6]


@pytest.fixture(scope="module")
def world_features(spark, world):
    return features_pandas(world, spark=spark)


def test_fit_equals_fit_features_with_cutoff_and_is_deterministic(split, fitted, world_features, tmp_path):
    """fit(history) == fit_features(table of the whole world, cutoff): every feature is known at its
    date, so one table serves every backtest origin; and the same seed gives the same model."""
    history, _ = split
    cutoff = history["timestamp"].max()
    expected = fitted.predict_features(world_features, origin=cutoff)
    again = small_lgbm().fit_features(world_features, HORIZON, cutoff=cutoff)
    pd.testing.assert_frame_equal(expected, again.predict_features(world_features, origin=cutoff))
    fitted.save(tmp_path / "lgbm")
    loaded = LightGBMForecaster.load(tmp_path / "lgbm")
    pd.testing.assert_frame_equal(expected, loaded.predict_features(world_features, origin=cutoff))
    # labels after the cutoff are never read: blanking them changes nothing
    blanked = world_features.copy()
    blanked.loc[blanked["date"] > cutoff, "target"] = 0.0
    third = small_lgbm().fit_features(blanked, HORIZON, cutoff=cutoff)
    pd.testing.assert_frame_equal(expected, third.predict_features(world_features, origin=cutoff))
    with pytest.raises(FeatureTableError, match="target-date rows"):
        loaded.predict_features(world_features)   # the table has no future rows past its last date


def test_backtest_scores_every_window(split):
    history, _ = split
    result = backtest(SeasonalNaiveForecaster(), history, horizon=7, n_windows=2, freq="D")
    assert list(result.windows["window"]) == [0, 1]
    assert result.forecasts.groupby("window").size().tolist() == [24 * 7] * 2
    assert {"fast_mover", "slow_mover"} <= set(result.segments.index)
    assert result.overall.iloc[0]["rows"] == 2 * 24 * 7
    assert 0 < result.summary()["wql"] < 1


def test_lightgbm_rejects_non_daily_frequency():
    with pytest.raises(ValueError, match="daily"):
        LightGBMForecaster().fit(pd.DataFrame({"item_id": ["a"], "timestamp": ["2024-01-01"], "target": [1.0]}),
                                 horizon=4, freq="W")
