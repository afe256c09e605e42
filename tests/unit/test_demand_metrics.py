"""Forecast metrics against hand-computed values (and GluonTS's own quantile loss)."""
import numpy as np
import pandas as pd
import pytest

from echelon.models.demand import metrics
from echelon.models.demand.base import qcol

Q3 = (0.1, 0.5, 0.9)


def test_pinball_loss_by_hand():
    actual = np.array([10.0, 0.0, 5.0])
    # q = 0.1: errors y - f = -2, 0, 1 -> 0.9 * 2, 0, 0.1 * 1
    np.testing.assert_allclose(metrics.pinball_loss(actual, [12.0, 0.0, 4.0], 0.1), [1.8, 0.0, 0.1])
    # q = 0.5: half the absolute error
    np.testing.assert_allclose(metrics.pinball_loss(actual, [8.0, 1.0, 5.0], 0.5), [1.0, 0.5, 0.0])


def test_weighted_quantile_loss_by_hand_and_matches_gluonts():
    actual = np.array([10.0, 0.0, 5.0])
    forecast = np.array([12.0, 0.0, 4.0])
    # 2 * (1.8 + 0 + 0.1) / 15
    assert metrics.weighted_quantile_loss(actual, forecast, 0.1) == pytest.approx(2 * 1.9 / 15)
    gluonts_metrics = pytest.importorskip("gluonts.evaluation.metrics")
    expected = gluonts_metrics.quantile_loss(actual, forecast, 0.1) / gluonts_metrics.abs_target_sum(actual)
    assert metrics.weighted_quantile_loss(actual, forecast, 0.1) == pytest.approx(expected)


def test_mean_wql_averages_over_quantiles():
    actual = np.array([10.0, 0.0, 5.0])
    forecasts = {0.1: [12.0, 0.0, 4.0], 0.5: [8.0, 1.0, 5.0]}
    expected = (2 * 1.9 / 15 + 2 * 1.5 / 15) / 2
    assert metrics.mean_weighted_quantile_loss(actual, forecasts, (0.1, 0.5)) == pytest.approx(expected)


def test_coverage_and_wape_by_hand():
    actual = [1.0, 2.0, 3.0, 4.0]
    assert metrics.coverage(actual, [0, 2.5, 3, 5], [2, 3, 3, 6]) == pytest.approx(0.5)   # bounds inclusive
    assert metrics.wape([10.0, 10.0], [8.0, 11.0]) == pytest.approx(3 / 20)


def test_season_length_from_frequency():
    assert metrics.season_length("D") == 7
    assert metrics.season_length("W") == 52
    assert metrics.season_length("h") == 24
    assert metrics.season_length("MS") == 12


def _history():
    days = pd.date_range("2023-12-04", periods=42, freq="D")   # six weeks, up to 2024-01-14
    t = np.arange(42)
    a = t % 7 + 1 + t // 7                               # every 7-day difference is 1 -> scale 1
    b = 2 * a                                            # scale 2
    rows = [("a", "x", t, float(v)) for t, v in zip(days, a)] + [("b", "x", t, float(v)) for t, v in zip(days, b)]
    return pd.DataFrame(rows, columns=["item_id", "location_id", "timestamp", "target"])


def _forecast_frame(rows):
    frame = pd.DataFrame(rows, columns=["item_id", "location_id", "timestamp", "q_0.1", "q_0.5", "q_0.9"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def test_evaluate_overall_by_hand():
    history = _history()
    actuals = pd.DataFrame({"item_id": ["a", "a", "b", "b"], "location_id": "x",
                            "timestamp": pd.to_datetime(["2024-01-15", "2024-01-16"] * 2),
                            "target": [10.0, 10.0, 20.0, 20.0], "promo": [0, 1, 0, 0]})
    forecasts = _forecast_frame([
        ("a", "x", "2024-01-15", 7.0, 8.0, 12.0),
        ("a", "x", "2024-01-16", 9.0, 11.0, 13.0),
        ("b", "x", "2024-01-15", 18.0, 22.0, 23.0),
        ("b", "x", "2024-01-16", 21.0, 22.0, 25.0),
    ])
    result = metrics.evaluate(forecasts, actuals, history, quantiles=Q3)
    overall = result["overall"].iloc[0]
    y = actuals["target"].to_numpy()
    expected_wql = np.mean([2 * metrics.pinball_loss(y, forecasts[qcol(q)], q).sum() / y.sum() for q in Q3])
    assert overall["wql"] == pytest.approx(expected_wql)
    # inside [q0.1, q0.9]: 10 in [7,12] yes, 10 in [9,13] yes, 20 in [18,23] yes, 20 in [21,25] no
    assert overall["coverage_80"] == pytest.approx(0.75)
    # series a: |10-8|, |10-11| -> 1.5 / scale 1; series b: 2, 2 -> 2 / scale 2 = 1; mean 1.25
    assert overall["mase"] == pytest.approx(1.25)
    assert overall["wape"] == pytest.approx((2 + 1 + 2 + 2) / 60)

    segments = result["segments"]
    # a's recent mean is below b's: a is the slow mover, b the fast one; one promo row (a, day 2)
    assert set(segments.index) == {"fast_mover", "slow_mover", "promo_day"}
    assert segments.loc["promo_day", "rows"] == 1
    assert segments.loc["promo_day", "wape"] == pytest.approx(1 / 10)
    assert segments.loc["fast_mover", "mase"] == pytest.approx(1.0)
    assert segments.loc["slow_mover", "mase"] == pytest.approx(1.5)


def test_new_item_segment_and_custom_segments():
    history = _history()
    actuals = pd.DataFrame({"item_id": ["a", "new"], "location_id": "x",
                            "timestamp": pd.to_datetime(["2024-01-15"] * 2), "target": [10.0, 4.0]})
    forecasts = _forecast_frame([("a", "x", "2024-01-15", 9, 10, 11), ("new", "x", "2024-01-15", 1, 2, 3)])
    result = metrics.evaluate(forecasts, actuals, history, quantiles=Q3)
    assert result["segments"].loc["new_item", "wape"] == pytest.approx(2 / 4)
    # no history: MASE is undefined for the new item, so the overall MASE is the other series'
    assert result["overall"].iloc[0]["mase"] == pytest.approx(0.0)

    custom = pd.DataFrame({"item_id": ["a"], "location_id": ["x"], "segment": ["mine"]})
    result = metrics.evaluate(forecasts, actuals, history, segments=custom, quantiles=Q3)
    assert list(result["segments"].index) == ["mine"]


def test_evaluate_rejects_missing_quantile_columns():
    forecasts = _forecast_frame([("a", "x", "2024-01-15", 1, 2, 3)]).drop(columns="q_0.9")
    with pytest.raises(ValueError, match="q_0.9"):
        metrics.evaluate(forecasts, _history(), _history(), quantiles=Q3)


def test_season_length_knows_every_common_frequency():
    for freq, season in [("h", 24), ("D", 7), ("B", 5), ("W-MON", 52), ("ME", 12), ("MS", 12),
                         ("QS", 4), ("QE-DEC", 4), ("YS", 1), ("min", 60)]:
        assert metrics.season_length(freq) == season, freq


def test_volatility_by_hand():
    # series a: target Jan-03 forecast 10 from origin Jan-01 and 13 from Jan-02 (moves 3), Jan-04: 12 then 12
    frame = pd.DataFrame({
        "item_id": "a", "origin": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02"]),
        "timestamp": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-03", "2024-01-04"]),
        qcol(0.5): [9.0, 10.0, 13.0, 12.0], "target": [10.0, 10.0, 10.0, 10.0]})
    # one overlapping target moved by 3: mean move 3, scale mean |y| = 10
    assert metrics.forecast_volatility(frame) == pytest.approx(0.3)


def test_backtest_volatility_is_zero_for_a_frozen_model_and_positive_for_naive():
    from echelon.models.demand.backtest import backtest
    from echelon.models.demand.stats import StatsForecaster

    class Frozen:
        """Forecasts 5 for every future period whatever the origin: its plan never moves."""
        name = "frozen"

        def fit(self, history, horizon, freq, quantiles):
            self.horizon, self.freq, self.quantiles = horizon, freq, quantiles
            return self

        def predict(self, history, future=None):
            last = history.groupby("item_id")["timestamp"].max()
            rows = [{"item_id": i, "location_id": "all", "timestamp": t + pd.Timedelta(days=h),
                     "horizon": h, **{qcol(q): 5.0 for q in self.quantiles}}
                    for i, t in last.items() for h in range(1, self.horizon + 1)]
            return pd.DataFrame(rows)

    rng = np.random.default_rng(3)
    history = pd.DataFrame({"item_id": "w", "timestamp": pd.date_range("2024-01-01", periods=60, freq="D"),
                            "target": 50 + np.cumsum(rng.normal(0, 2, 60))})
    frozen = backtest(Frozen(), history, horizon=5, n_windows=4, freq="D", step=1)
    moving = backtest(StatsForecaster("naive"), history, horizon=5, n_windows=4, freq="D", step=1)
    assert frozen.summary()["volatility"] == 0.0
    assert moving.summary()["volatility"] > 0.0


def test_backtest_uses_backtest_forecasts_when_the_forecaster_has_it():
    from echelon.models.demand.backtest import backtest
    from echelon.models.demand.stats import StatsForecaster

    class Batch:
        """Never refit by the backtest: makes every window's forecasts in one call (naive inside)."""
        name = "batch"
        calls = 0

        def fit(self, *args, **kwargs):
            raise AssertionError("backtest refit a forecaster that has backtest_forecasts")

        def backtest_forecasts(self, history, origins, horizon, freq, quantiles):
            Batch.calls += 1
            parts = []
            for origin in origins:
                cut = history[history["timestamp"] <= origin]
                model = StatsForecaster("naive").fit(cut, horizon, freq, quantiles)
                parts.append(model.predict(cut).assign(origin=origin))
            return pd.concat(parts, ignore_index=True)

    rng = np.random.default_rng(4)
    history = pd.DataFrame({"item_id": np.repeat(["a", "b"], 50),
                            "timestamp": np.tile(pd.date_range("2024-01-01", periods=50, freq="D"), 2),
                            "target": rng.poisson(20, 100).astype(float)})
    batch = backtest(Batch(), history, horizon=6, n_windows=3, freq="D", step=2)
    loop = backtest(StatsForecaster("naive"), history, horizon=6, n_windows=3, freq="D", step=2)
    assert Batch.calls == 1
    assert batch.summary()["wql"] == pytest.approx(loop.summary()["wql"])
    assert batch.summary()["volatility"] == pytest.approx(loop.summary()["volatility"])
    assert list(batch.windows["origin"]) == list(loop.windows["origin"])


def test_evaluation_from_bucket_summaries_equals_the_whole_history():
    """An evaluation that reads the history bucket by bucket keeps only series_summary rows: given the
    whole history's last date, the pooled summaries score exactly as the whole history does."""
    rng = np.random.default_rng(3)
    days = pd.date_range("2025-01-01", periods=200, freq="D")
    frames = [pd.DataFrame({"item_id": f"I{k}", "location_id": loc, "timestamp": days[start:],
                            "target": rng.poisson(1 + k, len(days) - start).astype(float),
                            "promo": rng.integers(0, 2, len(days) - start)})
              for k, (loc, start) in enumerate([("L1", 0), ("L2", 0), ("L1", 30), ("L1", 185), ("L2", 10), ("L2", 0)])]
    frames[-1] = frames[-1][frames[-1]["timestamp"] <= days[150]]      # a series that stops early
    data = pd.concat(frames, ignore_index=True)
    origin = days[-15]
    history, actuals = data[data["timestamp"] <= origin], data[data["timestamp"] > origin]
    forecasts = actuals[["item_id", "location_id", "timestamp"]].copy()
    for q in metrics.QUANTILES:
        forecasts[qcol(q)] = (1 + q) * (1 + actuals["target"].to_numpy() * 0.7)
    whole = metrics.evaluate(forecasts, actuals, history)
    last = history["timestamp"].max()
    buckets = [["I0", "I1"], ["I2", "I3"], ["I4", "I5"]]
    summary = pd.concat([metrics.series_summary(history[history["item_id"].isin(b)], last=last) for b in buckets])
    pooled = metrics.evaluate(forecasts, actuals, None, summary=summary)
    pd.testing.assert_frame_equal(pooled["overall"], whole["overall"])
    pd.testing.assert_frame_equal(pooled["segments"], whole["segments"])
    assert {"new_item", "fast_mover", "slow_mover", "promo_day"} <= set(whole["segments"].index)
    # a bucket's own last date would misclassify: the summary must be given the whole history's
    assert not metrics.series_summary(history[history["item_id"] == "I5"])["recent_mean"].equals(
        summary.loc[[("I5", "L2")], "recent_mean"])
