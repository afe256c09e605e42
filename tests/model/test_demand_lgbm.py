"""Pooled LightGBM quantile forecaster and the seasonal naive baseline on small synthetic data."""
import numpy as np
import pandas as pd
import pytest

from echelon.demand_features import features_pandas
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


def test_a_series_launched_after_the_origin_is_left_out_not_fatal(split, fitted, world_features):
    """A backtest origin before an item's first day: that series is not forecast from it, and every
    other series still is (it used to fail the whole training night with FeatureTableError)."""
    history, _ = split
    cutoff = history["timestamp"].max()
    late = (world_features["item_id"] == "tools-3") & (world_features["location_id"] == "s2")
    launched_later = world_features[~late | (world_features["date"] > cutoff + pd.Timedelta(days=3))]
    forecast = fitted.predict_features(launched_later, origin=cutoff)
    keys = set(map(tuple, forecast[["item_id", "location_id"]].drop_duplicates().to_numpy()))
    assert ("tools-3", "s2") not in keys and len(keys) == 23
    assert len(forecast) == 23 * HORIZON


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


# ---------------------------------------------------------------- fast by design (issue 15)
def test_training_split_holds_out_the_validation_window(world_features):
    """No training row's target date lies in the validation window (cutoff - horizon, cutoff], and
    validation rows forecast exactly that window from its start."""
    cutoff = pd.Timestamp(world_features["date"].max()) - pd.Timedelta(days=HORIZON)
    model = small_lgbm()
    model.horizon = HORIZON
    split = model.split(world_features, cutoff=cutoff)
    window_start = cutoff - pd.Timedelta(days=HORIZON)
    assert split.train_end == window_start
    assert split.train_targets["date"].max() <= window_start
    assert (split.train_origins["origin"] < window_start).all()
    assert split.valid_targets["date"].min() == window_start + pd.Timedelta(days=1)
    assert split.valid_targets["date"].max() == cutoff
    assert (split.valid_origins["origin"] == window_start).all() and len(split.valid_origins) == 24
    # without validation, training targets run up to the cutoff
    model.validation = False
    assert model.split(world_features, cutoff=cutoff).train_targets["date"].max() == cutoff


def test_row_budget_bounds_the_training_rows_and_samples_series_when_many(world_features):
    model = small_lgbm(max_training_rows=24 * 10 * HORIZON)
    model.horizon = HORIZON
    split = model.split(world_features)
    assert split.train_origins.groupby(["item_id", "location_id"]).size().max() == 10
    assert len(split.train_targets) <= 24 * 10 * HORIZON
    # a budget too small for the minimum origins per series trains on a sample of the series
    model.max_training_rows = 6 * 8 * HORIZON
    split = model.split(world_features)
    assert len(split.train_origins[["item_id", "location_id"]].drop_duplicates()) == 6
    assert split.train_origins.groupby(["item_id", "location_id"]).size().eq(8).all()


def test_sampled_training_is_deterministic_by_seed(world_features):
    cutoff = pd.Timestamp(world_features["date"].max()) - pd.Timedelta(days=HORIZON)
    settings = dict(max_training_rows=24 * 20 * HORIZON, num_boost_round=30, early_stopping_rounds=5)
    splits = []
    for seed in (7, 7, 8):
        model = small_lgbm(seed=seed, **settings)
        model.horizon = HORIZON
        splits.append(model.split(world_features, cutoff=cutoff).train_origins)
    pd.testing.assert_frame_equal(splits[0], splits[1])
    assert not splits[0].equals(splits[2])
    first, again = (small_lgbm(**settings).fit_features(world_features, HORIZON, cutoff=cutoff) for _ in range(2))
    pd.testing.assert_frame_equal(first.predict_features(world_features, origin=cutoff),
                                  again.predict_features(world_features, origin=cutoff))
    other = small_lgbm(seed=8, **settings).fit_features(world_features, HORIZON, cutoff=cutoff)
    assert not np.allclose(first.predict_features(world_features, origin=cutoff)["q_0.5"],
                           other.predict_features(world_features, origin=cutoff)["q_0.5"])


def test_early_stopping_stops_and_records_learning_curves(world_features):
    """A high learning rate overfits the Poisson noise within a few rounds: the validation loss turns
    up and training stops long before the cap; the curves are kept per quantile."""
    model = small_lgbm(num_boost_round=400, early_stopping_rounds=10,
                       params={"learning_rate": 0.5, "num_leaves": 31, "min_data_in_leaf": 5})
    model.fit_features(world_features, HORIZON, quantiles=(0.1, 0.5, 0.9))
    assert set(model.learning_curves) == {"valid_pinball_q0.1", "valid_pinball_q0.5", "valid_pinball_q0.9"}
    for q in (0.1, 0.5, 0.9):
        curve = model.learning_curves[f"valid_pinball_q{q:g}"]
        best = model.best_iterations[q]
        assert best < 400 and len(curve) == best + 10
        assert min(curve) == pytest.approx(curve[best - 1])
        assert model.boosters[q].current_iteration() == best


def test_validation_window_labels_never_train_the_model(world_features):
    """Plant a huge spike in every label of the validation window: the trees must be exactly those
    trained on the clean table (the window only decides where to stop; a leak would change them)."""
    cutoff = pd.Timestamp(world_features["date"].max()) - pd.Timedelta(days=HORIZON)
    window = (world_features["date"] > cutoff - pd.Timedelta(days=HORIZON)) & (world_features["date"] <= cutoff)
    spiked = world_features.copy()
    spiked.loc[window, "target"] = spiked.loc[window, "target"] * 50 + 1000
    settings = dict(num_boost_round=25, early_stopping_rounds=25)
    clean = small_lgbm(**settings).fit_features(world_features, HORIZON, quantiles=(0.5,), cutoff=cutoff)
    dirty = small_lgbm(**settings).fit_features(spiked, HORIZON, quantiles=(0.5,), cutoff=cutoff)
    rounds = min(clean.best_iterations[0.5], dirty.best_iterations[0.5])
    assert clean.boosters[0.5].model_to_string(num_iteration=rounds) == \
        dirty.boosters[0.5].model_to_string(num_iteration=rounds)
    # the validation loss did see the spike
    assert dirty.learning_curves["valid_pinball_q0.5"][0] > 10 * clean.learning_curves["valid_pinball_q0.5"][0]


def assert_windows_equal_separate_fits(model, history: pd.DataFrame, step: pd.Timedelta, horizon: int, freq: str):
    """model.backtest_forecasts at two origins `horizon` steps apart equals a fresh copy's fit + predict
    on the history cut at each origin (given the actual window's covariates)."""
    import copy

    last = history["timestamp"].max()
    origins = [last - 2 * horizon * step, last - horizon * step]
    together = model.backtest_forecasts(history, origins, horizon=horizon, freq=freq, quantiles=(0.1, 0.5, 0.9))
    assert sorted(together["origin"].unique()) == origins
    for origin in origins:
        seen = history[history["timestamp"] <= origin]
        actual = history[(history["timestamp"] > origin) & (history["timestamp"] <= origin + horizon * step)]
        alone = copy.deepcopy(model).fit(seen, horizon=horizon, freq=freq, quantiles=(0.1, 0.5, 0.9))
        expected = alone.predict(seen, actual.drop(columns="target")).reset_index(drop=True)
        got = together[together["origin"] == origin].drop(columns="origin").reset_index(drop=True)
        assert len(got) == 24 * horizon and (got["timestamp"] > origin).all()
        pd.testing.assert_frame_equal(got, expected, rtol=1e-6)


def test_backtest_forecasts_equal_fitting_each_window_separately(spark, split):
    """Features built once for the whole history, each window cut from them, give the forecasts that a
    fresh fit + predict on the history up to each origin gives."""
    history, _ = split
    model = small_lgbm(spark, num_boost_round=20, max_training_rows=24 * 20 * 7)
    assert_windows_equal_separate_fits(model, history, pd.Timedelta(days=1), 7, "D")


# ---------------------------------------------------------------- tabular features: any frequency (issue 16)
def weekly_world() -> pd.DataFrame:
    daily = synthetic_world(days=7 * 40, seed=3)
    daily["timestamp"] = daily["timestamp"].dt.to_period("W-SUN").dt.end_time.dt.normalize()
    return daily.groupby(["item_id", "location_id", "timestamp"], as_index=False)["target"].sum()


def test_tabular_backtest_forecasts_equal_fitting_each_window_separately():
    """One tabular table for every window gives the forecasts of a fresh fit on the history cut at each
    origin (weekly data: the Spark features would refuse it)."""
    model = LightGBMForecaster(features="tabular", num_boost_round=30, seed=3,
                               params={"min_data_in_leaf": 20, "num_leaves": 7})
    assert_windows_equal_separate_fits(model, weekly_world(), pd.Timedelta(weeks=1), 4, "W-SUN")


def test_tabular_model_records_its_feature_builder_and_round_trips(tmp_path):
    history = weekly_world()
    model = LightGBMForecaster(features="tabular", num_boost_round=30, seed=3,
                               params={"min_data_in_leaf": 20}).fit(history, horizon=3, freq="W-SUN")
    model.save(tmp_path / "m")
    loaded = LightGBMForecaster.load(tmp_path / "m")
    assert loaded.features == "tabular" and model.features == "tabular"
    pd.testing.assert_frame_equal(loaded.predict(history), model.predict(history))
    # the nightly job's default stays the Spark feature table (and a model saved before this option too)
    assert LightGBMForecaster().features == "spark"
    with pytest.raises(ValueError, match="features"):
        LightGBMForecaster(features="pandas")


# ---------------------------------------------------------------- bounded memory (issue 15)
def test_fit_from_a_parquet_dataset_equals_fit_from_the_frame(world_features, tmp_path):
    """The training night reads the published partition as a pyarrow dataset, batch by batch, only the
    sampled rows' columns (lgbm_rows): the model and its forecasts equal those fit on the same rows as
    one pandas frame, for a sample of items as for all, whatever the batch size and file order."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from echelon.models.demand.lgbm_rows import FeatureSource, key

    cutoff = pd.Timestamp(world_features["date"].max()) - pd.Timedelta(days=HORIZON)
    table = pa.Table.from_pandas(world_features.assign(date=world_features["date"].dt.date), preserve_index=False)
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))   # rows in no particular order
    for part in range(3):
        pq.write_table(shuffled.slice(part * 2000, 2000 if part < 2 else None), tmp_path / f"part-{part}.parquet")
    dataset = pads.dataset(str(tmp_path), format="parquet")
    items = ["snacks-1", "tools-2", "tools-4"]
    settings = dict(num_boost_round=30, early_stopping_rounds=5)
    for chosen in (items, None):
        frame = world_features if chosen is None else world_features[world_features["item_id"].isin(chosen)]
        expected = small_lgbm(**settings).fit_features(frame.reset_index(drop=True), HORIZON, cutoff=cutoff)
        source = FeatureSource(dataset, chosen, batch_rows=700)
        got = small_lgbm(**settings).fit_features(dataset, HORIZON, cutoff=cutoff, items=chosen)
        assert got.training_rows == expected.training_rows and got.best_iterations == expected.best_iterations
        forecast = got.predict_features(dataset, origin=cutoff, items=chosen)
        pd.testing.assert_frame_equal(forecast, expected.predict_features(frame, origin=cutoff))
        pd.testing.assert_frame_equal(forecast, got.predict_features(world_features, origin=cutoff, items=chosen))
        assert forecast[["item_id", "location_id"]].drop_duplicates().shape[0] == (6 if chosen else 24)
        # the keys scan holds 4 narrow columns a row; the row pass only the wanted keys
        keys = source.keys()
        assert len(keys.sid) == len(frame) and keys.series["item_id"].is_monotonic_increasing
        wanted = key(np.unique(keys.sid)[:2], [keys.day.max()] * 2)
        assert len(source.rows(wanted, ["lag_0", "price"])) == 2
