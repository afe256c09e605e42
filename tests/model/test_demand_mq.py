"""MQ-CNN and MQ-Transformer: they learn a known pattern, never look ahead, round-trip, run at any frequency."""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from echelon.models.demand.base import QUANTILES, SERIES, qcols
from echelon.models.demand.gluon import _Vocab
from echelon.models.demand.metrics import mean_weighted_quantile_loss
from echelon.models.demand.mq import MQCNNForecaster, MQTransformerForecaster
from echelon.models.demand.mq.data import calendar_features, crop, prepare, seasonal_lag
from echelon.models.demand.mq.forecasters import _Crops
from echelon.models.demand.mq.networks import MQModule
from echelon.models.demand.naive import SeasonalNaiveForecaster
from echelon.models.demand.pyfunc import log_forecaster

MODELS = [MQCNNForecaster, MQTransformerForecaster]
FAST = dict(epochs=12, batches_per_epoch=8, batch_size=16, patience=12, channels=16, hidden=32,
            dilations=(1, 2, 4, 8))
WEEKLY_SHAPE = np.array([1.0, 0.7, 0.8, 1.1, 1.4, 1.9, 0.5])


def seasonal_history(steps: int = 126, freq: str = "D", period: int = 7, series: int = 6,
                     seed: int = 0) -> pd.DataFrame:
    """Series with a known seasonal shape, a promo that doubles demand on random days (known in
    advance), item levels from 20 to 70 and 5% noise: seasonal naive repeats last season's promos."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=steps, freq=freq)
    shape = np.resize(WEEKLY_SHAPE, period) if period != 7 else WEEKLY_SHAPE
    frames = []
    for i in range(series):
        promo = (rng.random(steps) < 0.2).astype(int)
        mean = (20 + 10 * i) * shape[np.arange(steps) % period] * (1 + promo)
        frames.append(pd.DataFrame({
            "item_id": f"item{i}", "location_id": "all", "timestamp": stamps, "promo": promo,
            "price": 4.0 + i, "category": f"cat{i % 2}",
            "target": np.round(mean * (1 + 0.05 * rng.standard_normal(steps)), 1)}))
    return pd.concat(frames, ignore_index=True)


def split(frame: pd.DataFrame, horizon: int):
    cut = np.sort(frame["timestamp"].unique())[-horizon - 1]
    return frame[frame["timestamp"] <= cut], frame[frame["timestamp"] > cut]


def wql(forecasts: pd.DataFrame, actuals: pd.DataFrame) -> float:
    joined = forecasts.merge(actuals, on=SERIES + ["timestamp"])
    assert len(joined) == len(forecasts)
    return mean_weighted_quantile_loss(joined["target"], joined)


def assert_valid(forecasts: pd.DataFrame, history: pd.DataFrame, horizon: int, freq: str) -> None:
    assert list(forecasts.columns) == SERIES + ["timestamp", "horizon"] + qcols()
    values = forecasts[qcols()].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()
    for key, fc in forecasts.groupby(SERIES):
        last = history.set_index(SERIES).loc[key, "timestamp"].max()
        assert fc["timestamp"].tolist() == list(pd.date_range(last, periods=horizon + 1, freq=freq)[1:])
        assert fc["horizon"].tolist() == list(range(1, horizon + 1))


@pytest.fixture(scope="module")
def daily():
    return seasonal_history()


@pytest.fixture(scope="module")
def fitted(daily):
    """Each model fitted once on the daily set with its last week held out."""
    history, _ = split(daily, 7)
    return {klass.name: klass(seed=3, **FAST).fit(history, 7, "D") for klass in MODELS}


@pytest.mark.parametrize("name", ["mqcnn", "mqtransformer"])
def test_learns_the_pattern_and_beats_seasonal_naive(daily, fitted, name):
    history, actuals = split(daily, 7)
    model = fitted[name]
    curves = model.learning_curves
    assert len(curves["train_loss"]) == len(curves["val_loss"]) >= 2
    assert curves["train_loss"][-1] < 0.5 * curves["train_loss"][0]
    assert min(curves["val_loss"]) < curves["val_loss"][0]
    forecasts = model.predict(history, actuals.drop(columns="target"))
    assert_valid(forecasts, history, 7, "D")
    naive = SeasonalNaiveForecaster().fit(history, 7, "D").predict(history)
    assert wql(forecasts, actuals) < 0.8 * wql(naive, actuals)


@pytest.mark.parametrize("klass", MODELS)
@pytest.mark.parametrize("lag,yoy", [(7, False), (10, True)])
def test_a_forecast_never_sees_targets_after_its_creation_time(daily, klass, lag, yoy):
    """Change every target after step t0: the outputs of every FCT <= t0 (both decoder passes of the
    MQ-Transformer) stay the same, those after t0 change. A non-causal convolution, an unmasked
    attention, a scale computed over the whole series or a seasonal lag shorter than the horizon
    would fail this (the lag 7 is the horizon itself, the shortest allowed; with lag 10 the
    year-over-year input smooths last year's values over 7 steps, the newest 3 steps before the FCT
    for the last horizon step: a window one step wider would leak)."""
    torch.manual_seed(0)
    model = klass(seed=0, year_over_year=yoy, **FAST)
    model.horizon, model.freq, model.covariates, model.lag = 7, "D", ["price", "promo"], lag
    model.vocab = _Vocab.from_history(daily, ["item_id", "category"])
    n_known = calendar_features(pd.DatetimeIndex([]), "D").shape[1] + len(model.covariates)
    module = MQModule(model.kind, QUANTILES, **model._network_args(n_known)).eval()
    t0 = 90
    later = daily["timestamp"] > daily["timestamp"].min() + pd.Timedelta(days=t0)
    changed = daily.copy()
    changed.loc[later, "target"] = changed.loc[later, "target"] * 3 + 50

    def outputs(frame):
        panel = prepare(frame, "D", horizon=7, covariates=model.covariates, vocab=model.vocab, span=14,
                        max_history=1000, pad=0, lag=lag)
        length = panel.target.shape[1]
        batch = {k: torch.from_numpy(v) for k, v in crop(panel, np.arange(len(panel.keys)),
                                                           np.zeros(len(panel.keys), dtype=int), length).items()}
        with torch.no_grad():
            return [o * batch["scale"][:, : length - 7, None, None] for o in module.network(batch)]

    for before, after in zip(outputs(daily), outputs(changed)):
        assert torch.allclose(before[:, : t0 + 1], after[:, : t0 + 1], atol=1e-5)
        assert not torch.allclose(before[:, t0 + 1:], after[:, t0 + 1:], atol=1e-3)


def test_the_seasonal_lag_is_the_target_one_season_earlier_through_the_horizon(daily):
    """lagged[t] = target[t - P] over history and horizon, from the whole series even where max_history
    keeps only its end; P = the horizon or more, else no lag at all."""
    vocab = _Vocab.from_history(daily, [])
    full = prepare(daily, "D", horizon=7, covariates=[], vocab=vocab, span=14, max_history=1000, pad=0,
                   future=7, lag=7)
    cut = prepare(daily, "D", horizon=7, covariates=[], vocab=vocab, span=14, max_history=40, pad=3,
                  future=7, lag=7)
    history = full.target[:, :-7]
    np.testing.assert_array_equal(full.lagged[:, 7:], history)
    assert np.isnan(full.lagged[:, :7]).all()
    np.testing.assert_array_equal(cut.lagged[:, 3:], full.lagged[:, -47:])
    # the year-over-year input: last year's value averaged over min(3, lag - horizon) steps either side
    # (here none: lag = horizon), and the causal scale one lag earlier (NaN before the series starts)
    np.testing.assert_allclose(full.lag_smooth, full.lagged)
    np.testing.assert_array_equal(full.lag_scale[:, 7:], full.scale[:, :-7])
    assert np.isnan(full.lag_scale[:, :7]).all()
    wide = prepare(daily, "D", horizon=7, covariates=[], vocab=vocab, span=14, max_history=1000, pad=0,
                   future=7, lag=10)
    y = full.target[:, :-7]
    np.testing.assert_allclose(wide.lag_smooth[:, 20], y[:, 7:14].mean(axis=1), rtol=1e-6)   # steps 7..13
    np.testing.assert_allclose(wide.lag_smooth[:, -1], y[:, -7:].mean(axis=1), rtol=1e-6)   # 3 before the end
    assert seasonal_lag("D", 28) == 364 and seasonal_lag("h", 24) == 168 and seasonal_lag("W-SUN", 13) == 52
    assert seasonal_lag("MS", 18) == 0          # a horizon past the lag: its value is not known yet


def test_training_crops_never_reach_the_validation_window(daily):
    """The last horizon of every series is the validation window: no training crop may contain it."""
    model = MQCNNForecaster(**FAST)
    model.horizon, model.freq = 7, "D"
    panel = model._panel(daily)
    panel.target[:, -7:] = -1.0                     # a marker no real (non-negative) target has
    crops = _Crops(panel, 16 + 7, 7, batch_size=64, batches=50, seed=0)
    drawn = np.concatenate([crops[i]["target"].numpy() for i in range(len(crops))])
    assert drawn.shape == (50 * 64, 23)
    assert not (drawn == -1.0).any()
    assert np.isfinite(drawn).mean() > 0.5          # and they do hold the series' real history


@pytest.mark.parametrize("name", ["mqcnn", "mqtransformer"])
def test_save_load_and_pyfunc_round_trip(daily, fitted, name, tmp_path, monkeypatch):
    history, actuals = split(daily, 7)
    model = fitted[name]
    direct = model.predict(history)
    model.save(tmp_path / "model")
    loaded = type(model).load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.predict(history), direct)
    assert loaded.learning_curves == model.learning_curves

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("mq-test", artifact_location=str(tmp_path / "artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            info = log_forecaster(model, name="model")
        assert any(r.startswith("torch==") for r in
                   (tmp_path / "artifacts").rglob("requirements.txt").__next__().read_text().split())
        served = mlflow.pyfunc.load_model(info.model_uri).predict(history)
    finally:
        mlflow.set_tracking_uri(previous)
    pd.testing.assert_frame_equal(served.reset_index(drop=True), direct, check_dtype=False)


def test_same_seed_same_forecasts(daily):
    history, _ = split(daily, 7)
    small = dict(FAST, epochs=2)
    first = MQTransformerForecaster(seed=5, **small).fit(history, 7, "D").predict(history)
    again = MQTransformerForecaster(seed=5, **small).fit(history, 7, "D").predict(history)
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize("freq,period,horizon", [("h", 24, 24), ("W-MON", 4, 4)])
def test_hourly_and_weekly_run_end_to_end(freq, period, horizon):
    frame = seasonal_history(steps=8 * period + 60, freq=freq, period=period, series=3, seed=1)
    history, actuals = split(frame, horizon)
    for klass in MODELS:
        model = klass(seed=0, **dict(FAST, epochs=3)).fit(history, horizon, freq)
        forecasts = model.predict(history)
        assert_valid(forecasts, history, horizon, freq)


def test_new_item_borrows_from_its_category(daily, fitted):
    """An item unseen at fit time still gets a forecast at its own scale (embedding 0 + its category)."""
    history, _ = split(daily, 7)
    new = history[history["item_id"] == "item5"].assign(item_id="item_new")
    forecasts = fitted["mqcnn"].predict(new)
    assert len(forecasts) == 7 and np.isfinite(forecasts[qcols()].to_numpy()).all()
    level = new["target"].tail(28).mean()
    assert 0.3 * level < forecasts["q_0.5"].mean() < 3 * level


def test_too_short_a_history_is_refused_clearly():
    frame = seasonal_history(steps=10, series=2)
    with pytest.raises(ValueError, match="at least 15"):
        MQCNNForecaster(**FAST).fit(frame, 7, "D")


def test_mq_models_are_nightly_candidates_and_unknown_names_are_refused(monkeypatch):
    from echelon.models.demand.train import candidates

    monkeypatch.setenv("ECHELON_DEMAND_CANDIDATES", "seasonal_naive, mqcnn,mqtransformer")
    assert candidates() == ["seasonal_naive", "mqcnn", "mqtransformer"]
    monkeypatch.setenv("ECHELON_DEMAND_CANDIDATES", "lightgbm,mq-transformer")
    with pytest.raises(ValueError, match="unknown model.*mq-transformer.*mqtransformer"):
        candidates()
