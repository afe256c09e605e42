"""Rolling-origin backtest of any Forecaster.

Window w of n (w = 0 oldest) has origin  T - (n - w) * step - (horizon - step)  where T is the last
timestamp of the data, so with step = horizon the windows tile the last n * horizon periods and the
newest one ends at T. For each window the forecaster (a fresh deep copy, so no state leaks between
windows) is fit on the history up to the origin, predicts the next `horizon` periods with the known
covariates of those dates (price, promo: never the target), and is scored there. A forecaster with
`backtest_forecasts(history, origins, horizon, freq, quantiles)` makes every window's forecasts in one
call instead (each window still fit only on data up to its origin), e.g. to build its features once.

With step < horizon consecutive windows forecast the same target periods from different origins, and
the result carries the forecast volatility (metrics.forecast_volatility): how much the P50 of a target
moves from one origin to the next.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from echelon.models.demand.base import QUANTILES, SERIES, canonical
from echelon.models.demand.metrics import (default_segments, evaluate, forecast_volatility, scores, season_length,
                                           segment_scores)

log = logging.getLogger(__name__)

KNOWN_COVARIATES = ("price", "promo", "category")


@dataclass
class BacktestResult:
    model: str
    windows: pd.DataFrame                  # one row per window: origin, fit/predict seconds, metrics
    overall: pd.DataFrame                  # one row: metrics over every window's rows pooled
    segments: pd.DataFrame                 # metrics per segment (rows pooled over windows)
    forecasts: pd.DataFrame                # every forecast with `window`, `origin` and the actual `target`
    params: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Headline numbers: pooled metrics plus the mean of the per-window wQL."""
        out = {k: float(v) for k, v in self.overall.iloc[0].items()}
        out["mean_window_wql"] = float(self.windows["wql"].mean())
        return out


def window_origins(timestamps: pd.Series, horizon: int, n_windows: int, freq: str,
                   step: int | None = None) -> list[pd.Timestamp]:
    """Forecast origins, oldest first (see the module docstring)."""
    step = step or horizon
    offset = pd.tseries.frequencies.to_offset(freq)
    last = pd.Timestamp(pd.to_datetime(timestamps).max())
    return [last - offset * ((n_windows - w) * step + (horizon - step)) for w in range(n_windows)]


def backtest(forecaster, data: pd.DataFrame, horizon: int, n_windows: int = 3, freq: str = "D",
             step: int | None = None, quantiles: Sequence[float] = QUANTILES,
             segments: pd.DataFrame | None = None) -> BacktestResult:
    """Fit/predict/score `forecaster` over `n_windows` rolling origins of the canonical frame `data`."""
    data = canonical(data)
    offset = pd.tseries.frequencies.to_offset(freq)
    season = season_length(freq)
    name = getattr(forecaster, "name", type(forecaster).__name__)
    covariates = [c for c in data.columns if c in KNOWN_COVARIATES]

    origins = window_origins(data["timestamp"], horizon, n_windows, freq, step)
    batch = _batch_forecasts(forecaster, data, origins, horizon, freq, quantiles)
    window_rows, all_forecasts, all_segments = [], [], []
    for w, origin in enumerate(origins):
        end = origin + offset * horizon
        history = data[data["timestamp"] <= origin]
        actual = data[(data["timestamp"] > origin) & (data["timestamp"] <= end)]
        if batch is not None:
            forecasts, fit_seconds, predict_seconds = batch[0].get(origin), batch[1], 0.0
            if forecasts is None:
                raise ValueError(f"{name}.backtest_forecasts returned no forecasts for origin {origin}")
        else:
            future = actual[SERIES + ["timestamp"] + covariates] if covariates else None
            model = copy.deepcopy(forecaster)
            started = time.time()
            model.fit(history, horizon=horizon, freq=freq, quantiles=quantiles)
            fitted = time.time()
            forecasts = model.predict(history, future)
            fit_seconds, predict_seconds = fitted - started, time.time() - fitted
        result = evaluate(forecasts, actual, history, segments=segments, quantiles=quantiles, season=season)
        metrics = result["overall"].iloc[0].to_dict()
        window_rows.append({"window": w, "origin": _stamp(origin),
                            "fit_seconds": fit_seconds, "predict_seconds": predict_seconds, **metrics})
        log.info("%s window %d/%d (origin %s): wQL %.4f coverage %.3f MASE %.3f, fit %.1f s",
                 name, w + 1, n_windows, origin, metrics["wql"], metrics.get("coverage_80", float("nan")),
                 metrics.get("mase", float("nan")), fit_seconds)
        joined = result["joined"].assign(window=w, origin=origin)
        all_forecasts.append(joined)
        seg = segments if segments is not None else default_segments(actual, history, forecasts)
        all_segments.append(seg.assign(window=w))

    joined = pd.concat(all_forecasts, ignore_index=True)
    overall = pd.DataFrame([{**scores(joined, quantiles), "volatility": forecast_volatility(joined)}])
    by_segment = segment_scores(joined, pd.concat(all_segments, ignore_index=True), quantiles, extra_keys=["window"])
    return BacktestResult(model=name, windows=pd.DataFrame(window_rows), overall=overall,
                          segments=by_segment, forecasts=joined,
                          params={"horizon": horizon, "n_windows": n_windows, "freq": freq, "step": step or horizon,
                                  "model": repr(forecaster)})


def _stamp(origin: pd.Timestamp) -> str:
    """A date for daily and coarser origins (as before), the full timestamp for intraday ones."""
    return origin.date().isoformat() if origin == origin.normalize() else origin.isoformat()


def _batch_forecasts(forecaster, data: pd.DataFrame, origins: list[pd.Timestamp], horizon: int, freq: str,
                     quantiles: Sequence[float]) -> tuple[dict, float] | None:
    """{origin: forecasts} from the forecaster's own `backtest_forecasts`, and the seconds per window;
    None when it has none (the caller refits per window)."""
    method = getattr(forecaster, "backtest_forecasts", None)
    if method is None:
        return None
    started = time.time()
    frame = method(data, origins, horizon, freq, quantiles)
    seconds = (time.time() - started) / max(len(origins), 1)
    frame = frame.assign(origin=pd.to_datetime(frame["origin"]))
    return {pd.Timestamp(o): part.drop(columns="origin") for o, part in frame.groupby("origin")}, seconds
