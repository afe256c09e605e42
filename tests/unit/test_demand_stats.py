"""statsforecast baselines behind the Forecaster protocol: quantile mapping, fallbacks, new items, save/load."""
import json

import numpy as np
import pandas as pd
import pytest

from echelon.models.demand.base import qcols
from echelon.models.demand.stats import StatsForecaster, interval_column, levels_for, scale_spread, spread_factors


def test_quantiles_map_to_central_interval_bounds():
    assert levels_for((0.1, 0.25, 0.5, 0.75, 0.9)) == [50, 80]
    assert interval_column("m", 0.1) == "m-lo-80" and interval_column("m", 0.9) == "m-hi-80"
    assert interval_column("m", 0.25) == "m-lo-50" and interval_column("m", 0.5) == "m"
    assert interval_column("m", 0.05) == "m-lo-90"


@pytest.mark.parametrize("model", ["naive", "seasonal_naive", "autoets", "autotheta"])
def test_every_model_gives_sorted_non_negative_quantiles_that_widen(model, tmp_path):
    rng = np.random.default_rng(2)
    t = np.arange(120)
    history = pd.DataFrame({"item_id": "s", "timestamp": pd.date_range("2024-01-01", periods=120, freq="D"),
                            "target": 30 + 10 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 3, 120)})
    fitted = StatsForecaster(model).fit(history, horizon=14, freq="D")
    forecast = fitted.predict(history)
    values = forecast[qcols()].to_numpy()
    assert len(forecast) == 14 and (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()
    assert (values[:, -1] - values[:, 0] > 0).all()                   # a real interval, not a point
    fitted.save(tmp_path / model)
    pd.testing.assert_frame_equal(StatsForecaster.load(tmp_path / model).predict(history), forecast)


def test_new_series_in_future_get_zero_forecasts():
    history = pd.DataFrame({"item_id": "a", "timestamp": pd.date_range("2024-01-01", periods=30, freq="D"),
                            "target": np.arange(30.0)})
    future = pd.DataFrame({"item_id": ["a", "new"], "timestamp": pd.Timestamp("2024-01-31")})
    forecast = StatsForecaster("autoets").fit(history, horizon=3, freq="D").predict(history, future)
    new = forecast[forecast["item_id"] == "new"]
    assert len(forecast) == 6 and new["horizon"].tolist() == [1, 2, 3]
    assert (new[qcols()].to_numpy() == 0).all()


def test_a_seasonal_naive_saved_by_the_hand_written_model_still_loads(tmp_path):
    from echelon.models.demand.naive import LEGACY_FILE, SeasonalNaiveForecaster

    (tmp_path / LEGACY_FILE).write_text(json.dumps({
        "name": "seasonal_naive", "season": 7, "horizon": 5, "freq": "D", "quantiles": [0.1, 0.5, 0.9],
        "error_quantiles": [[-1.0, 0.0, 1.0]]}))
    history = pd.DataFrame({"item_id": "a", "timestamp": pd.date_range("2024-01-01", periods=28, freq="D"),
                            "target": np.tile(np.arange(7.0), 4)})
    forecast = SeasonalNaiveForecaster.load(tmp_path).predict(history)
    assert len(forecast) == 5 and list(forecast["q_0.5"]) == [0.0, 1.0, 2.0, 3.0, 4.0]


def _three_series(seed=0):
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame({"item_id": item, "timestamp": pd.date_range("2024-01-01", periods=n, freq="D"),
                            "target": 40 + np.cumsum(rng.normal(0, 2, n))})
              for item, n in (("a", 80), ("b", 80), ("early", 70))]
    return pd.concat(frames, ignore_index=True)


def test_backtest_forecasts_match_a_refit_per_origin_for_the_naive_model():
    history = _three_series()
    origins = [pd.Timestamp("2024-03-01") + pd.Timedelta(days=3 * k) for k in range(4)]   # last ends 03-17
    batch = StatsForecaster("naive", intervals="model").backtest_forecasts(history, origins, 7, "D", (0.1, 0.5, 0.9))
    calibrated = StatsForecaster("naive").backtest_forecasts(history, origins, 7, "D", (0.1, 0.5, 0.9))
    for origin in origins:
        cut = history[history["timestamp"] <= origin]
        expected = StatsForecaster("naive", intervals="model").fit(cut, 7, "D", (0.1, 0.5, 0.9)).predict(cut)
        got = batch[batch["origin"] == origin].drop(columns="origin").reset_index(drop=True)
        pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
        # calibration moves the interval, never the point forecast
        np.testing.assert_allclose(calibrated.loc[calibrated["origin"] == origin, "q_0.5"], expected["q_0.5"])


def test_backtest_forecasts_never_see_data_after_their_origin():
    history = _three_series(seed=1)
    origins = [pd.Timestamp("2024-03-01") + pd.Timedelta(days=3 * k) for k in range(4)]
    before = StatsForecaster("autoets").backtest_forecasts(history, origins, 7, "D")
    changed = history.copy()
    changed.loc[changed["timestamp"] > origins[1], "target"] *= 3      # the future of windows 0 and 1
    after = StatsForecaster("autoets").backtest_forecasts(changed, origins, 7, "D")
    early = before["origin"] <= origins[1]
    pd.testing.assert_frame_equal(before[early], after[early])
    assert not np.allclose(before.loc[~early, qcols()], after.loc[~early, qcols()])


def test_spread_factors_widen_intervals_that_are_too_narrow_and_narrow_wide_ones():
    rng = np.random.default_rng(3)
    point = rng.uniform(10, 100, 20_000)
    sigma = point / 10                                  # every row its own scale: the factors still pool
    cv = pd.DataFrame({"_point": point, "target": point + rng.normal(0, 1, point.size) * sigma,
                       "q_0.1": point - 0.5 * 1.2816 * sigma, "q_0.5": point,     # half the true spread
                       "q_0.9": point + 3 * 1.2816 * sigma})                     # three times the true spread
    factors = spread_factors(cv, (0.1, 0.5, 0.9))
    assert set(factors) == {0.1, 0.9}
    assert factors[0.1] == pytest.approx(2.0, rel=0.05) and factors[0.9] == pytest.approx(1 / 3, rel=0.05)
    scaled = scale_spread(cv, factors)
    assert (cv["target"] < scaled["q_0.1"]).mean() == pytest.approx(0.1, abs=0.01)
    assert (cv["target"] > scaled["q_0.9"]).mean() == pytest.approx(0.1, abs=0.01)


def test_spread_factors_leave_intervals_that_already_hold_their_share_alone():
    rng = np.random.default_rng(6)
    point = np.full(400, 50.0)                           # 40 series x 10 windows, say: 400 observations
    cv = pd.DataFrame({"_point": point, "target": point + rng.normal(0, 1, point.size),
                       "q_0.1": point - 1.2816, "q_0.5": point, "q_0.9": point + 1.2816})
    assert spread_factors(cv, (0.1, 0.5, 0.9), windows=40) == {0.1: 1.0, 0.9: 1.0}
    cv["q_0.9"] = point + 0.3                            # holds ~62%, not 90%: far outside the noise
    assert spread_factors(cv, (0.1, 0.5, 0.9), windows=40)[0.9] > 3


def test_calibrated_intervals_cover_about_80_percent_where_the_model_intervals_do_not():
    # white noise around a level: the naive model's random-walk intervals are far too wide for it
    rng = np.random.default_rng(4)
    n, origins = 150, [pd.Timestamp("2024-01-01") + pd.Timedelta(days=k) for k in (120, 127, 134, 141)]
    history = pd.concat([pd.DataFrame({"item_id": f"s{i}", "timestamp": pd.date_range("2024-01-01", periods=n),
                                       "target": 50 + rng.normal(0, 5, n)}) for i in range(30)], ignore_index=True)

    def coverage(intervals):
        out = StatsForecaster("naive", intervals=intervals).backtest_forecasts(history, origins[:-1], 7, "D")
        joined = out.merge(history, on=["item_id", "timestamp"])
        return ((joined["target"] >= joined["q_0.1"]) & (joined["target"] <= joined["q_0.9"])).mean()

    assert coverage("model") > 0.95
    assert 0.65 <= coverage("calibrated") <= 0.92


def test_unknown_interval_kind_is_refused_and_the_kind_survives_save_load(tmp_path):
    with pytest.raises(ValueError, match="unknown intervals 'conformal'"):
        StatsForecaster("naive", intervals="conformal")
    StatsForecaster("autotheta", intervals="model").fit(_three_series(), 3, "D").save(tmp_path)
    assert StatsForecaster.load(tmp_path).intervals == "model"
