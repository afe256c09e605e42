"""statsforecast baselines behind the Forecaster protocol: quantile mapping, fallbacks, new items, save/load."""
import json

import numpy as np
import pandas as pd
import pytest

from echelon.models.demand.base import qcols
from echelon.models.demand.stats import StatsForecaster, interval_column, levels_for


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
    batch = StatsForecaster("naive").backtest_forecasts(history, origins, 7, "D", (0.1, 0.5, 0.9))
    for origin in origins:
        cut = history[history["timestamp"] <= origin]
        expected = StatsForecaster("naive").fit(cut, 7, "D", (0.1, 0.5, 0.9)).predict(cut)
        got = batch[batch["origin"] == origin].drop(columns="origin").reset_index(drop=True)
        pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)


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
