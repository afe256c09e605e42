"""Forecast accuracy: pinball loss, weighted quantile loss, coverage, MASE, WAPE, overall and by segment.

Definitions (as GluonTS computes them, so numbers compare with published benchmarks):
- pinball(y, f, q)  = max(q (y - f), (q - 1)(y - f))
- wQL[q]            = 2 * sum(pinball) / sum(|y|)            (GluonTS `wQuantileLoss[q]`)
- mean wQL          = mean of wQL[q] over the quantiles        (GluonTS `mean_wQuantileLoss`)
- coverage          = share of actuals inside [q_0.1, q_0.9]   (nominal 80 %)
- MASE              = per series: mean |y - median| / mean |y_t - y_{t-m}| over that series' history
                      (m = the season, 7 for daily data), then averaged over series
- WAPE              = sum |y - median| / sum |y|
- volatility        = per series: mean |P50_t(T) - P50_t'(T)| over target periods T forecast from two
                      consecutive origins t' < t, divided by the series' mean |y|; averaged over series
                      (0 for forecasts that never change; how far a planner's plan is pushed around)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from echelon.models.demand.base import QUANTILES, SERIES, canonical, qcol

MEDIAN = 0.5
LOWER, UPPER = 0.1, 0.9
RECENT_DAYS = 91          # window that classifies fast and slow movers
NEW_ITEM_DAYS = 28        # a series with less history than this at the origin is a new item


def pinball_loss(actual, forecast, q: float) -> np.ndarray:
    """Element-wise pinball (quantile) loss of the q-quantile forecast."""
    diff = np.asarray(actual, dtype=float) - np.asarray(forecast, dtype=float)
    return np.maximum(q * diff, (q - 1.0) * diff)


def weighted_quantile_loss(actual, forecast, q: float) -> float:
    """2 * sum pinball / sum |y| (NaN when the actuals sum to zero)."""
    denom = np.abs(np.asarray(actual, dtype=float)).sum()
    return float(2.0 * pinball_loss(actual, forecast, q).sum() / denom) if denom > 0 else float("nan")


def mean_weighted_quantile_loss(actual, forecasts: dict[float, np.ndarray] | pd.DataFrame,
                                quantiles: Sequence[float] = QUANTILES) -> float:
    """Mean over quantiles of wQL; `forecasts` maps quantile -> values or is a frame with q_ columns."""
    values = [weighted_quantile_loss(actual, _column(forecasts, q), q) for q in quantiles]
    return float(np.mean(values))


def coverage(actual, lower, upper) -> float:
    """Share of actuals within [lower, upper] (inclusive)."""
    actual = np.asarray(actual, dtype=float)
    return float(np.mean((actual >= np.asarray(lower)) & (actual <= np.asarray(upper)))) if len(actual) else float("nan")


def wape(actual, point) -> float:
    actual = np.asarray(actual, dtype=float)
    denom = np.abs(actual).sum()
    return float(np.abs(actual - np.asarray(point, dtype=float)).sum() / denom) if denom > 0 else float("nan")


SEASONS = {"D": 7, "B": 5, "W": 52, "H": 24, "BH": 8, "MIN": 60, "T": 60, "M": 12, "ME": 12, "MS": 12,
           "SM": 24, "SMS": 24, "BM": 12, "BME": 12, "BMS": 12, "Q": 4, "QE": 4, "QS": 4, "BQ": 4,
           "BQE": 4, "BQS": 4, "Y": 1, "A": 1, "YE": 1, "YS": 1, "BY": 1, "BYE": 1, "BYS": 1}


def season_length(freq: str | None) -> int:
    """The (main) seasonal period of a pandas frequency: hourly 24, daily 7, weekly 52, monthly 12,
    quarterly 4; 1 (none) for yearly and anything unknown. The one place that knows it."""
    if not freq:
        return 1
    base = pd.tseries.frequencies.to_offset(freq).name.split("-")[0].upper()
    return SEASONS.get(base, 1)


def mase_scale(history: pd.DataFrame, season: int = 7) -> pd.Series:
    """Per-series mean |y_t - y_{t-season}| over the history (indexed by SERIES); NaN when undefined."""
    hist = _keys(history).sort_values(SERIES + ["timestamp"], kind="stable")
    diffs = hist.groupby(SERIES, sort=False)["target"].diff(season).abs()
    scale = diffs.groupby([hist[c] for c in SERIES], sort=False).mean()
    return scale.where(scale > 0)


def forecast_volatility(forecasts: pd.DataFrame, actuals: pd.DataFrame | None = None) -> float:
    """Mean over series of  mean |P50_t(T) - P50_t'(T)| / mean |y|  (see the module docstring).

    forecasts: SERIES, origin, timestamp, q_0.5 from several forecast origins (a backtest's rows);
    actuals:   SERIES, target for the scale (default: the `target` column of `forecasts`).
    NaN when no target period was forecast from two origins or every series sums to zero.
    """
    frame = _keys(forecasts).sort_values(SERIES + ["timestamp", "origin"], kind="stable")
    moves = frame.groupby(SERIES + ["timestamp"], sort=False)[qcol(MEDIAN)].diff().abs()
    per_series = moves.groupby([frame[c] for c in SERIES]).mean()
    scale_source = _keys(actuals) if actuals is not None else frame
    scale = scale_source["target"].abs().groupby([scale_source[c] for c in SERIES]).mean()
    ratio = (per_series / scale.where(scale > 0).reindex(per_series.index)).dropna()
    return float(ratio.mean()) if len(ratio) else float("nan")


def _column(forecasts, q: float) -> np.ndarray:
    if isinstance(forecasts, pd.DataFrame):
        return forecasts[qcol(q)].to_numpy(dtype=float)
    return np.asarray(forecasts[q], dtype=float)


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    return canonical(frame, required=("item_id", "timestamp"))


def scores(frame: pd.DataFrame, quantiles: Sequence[float] = QUANTILES) -> dict[str, float]:
    """All metrics on a joined frame of actuals (`target`), q_ columns and `mase_scale`."""
    y = frame["target"].to_numpy(dtype=float)
    out: dict[str, float] = {"rows": float(len(frame)), "series": float(frame[SERIES].drop_duplicates().shape[0])}
    wql = {q: weighted_quantile_loss(y, frame[qcol(q)], q) for q in quantiles}
    out["wql"] = float(np.mean(list(wql.values())))
    if LOWER in quantiles and UPPER in quantiles:
        out["coverage_80"] = coverage(y, frame[qcol(LOWER)], frame[qcol(UPPER)])
    if MEDIAN in quantiles:
        median = frame[qcol(MEDIAN)].to_numpy(dtype=float)
        out["wape"] = wape(y, median)
        abs_err = pd.Series(np.abs(y - median), index=frame.index) / frame["mase_scale"]
        per_series = abs_err.groupby([frame[c] for c in SERIES]).mean()
        out["mase"] = float(per_series.mean()) if per_series.notna().any() else float("nan")
    for q in quantiles:
        out[f"wql_{qcol(q)}"] = wql[q]
        out[f"pinball_{qcol(q)}"] = float(pinball_loss(y, frame[qcol(q)], q).mean())
    return out


def series_summary(history: pd.DataFrame, season: int = 7, last=None) -> pd.DataFrame:
    """What scoring needs of the history, per series (index SERIES): `mase_scale` (mase_scale), `observed`
    (rows), `recent_mean` (mean target over the RECENT_DAYS up to `last`, by default the history's last
    timestamp) and `volume` (sum of the target). Series are independent here, so the summaries of disjoint
    groups of series, each given the same `last`, concatenate into the summary of their union: an
    evaluation can read the history bucket by bucket and keep only these rows (models/demand/train.py)."""
    hist = _keys(history)
    last = hist["timestamp"].max() if last is None else pd.Timestamp(last)
    recent = hist[hist["timestamp"] > last - pd.Timedelta(days=RECENT_DAYS)] if len(hist) else hist
    by_series = hist.groupby(SERIES)["target"]
    return pd.DataFrame({"mase_scale": mase_scale(hist, season), "observed": by_series.count(),
                         "recent_mean": recent.groupby(SERIES)["target"].mean(), "volume": by_series.sum()})


def default_segments(actuals: pd.DataFrame, history: pd.DataFrame | None, forecasts: pd.DataFrame | None = None,
                     summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Segment labels per (series, timestamp) row of `actuals`.

    new_item:   the series has fewer than NEW_ITEM_DAYS observed rows in `history` (or none).
    fast_mover / slow_mover: established series above / at-or-below the median mean demand of the
                last RECENT_DAYS of history (a relative split, so both segments exist on any data).
    promo_day:  rows with promo = 1 (taken from actuals, else from the forecasts frame).
    summary:    series_summary of the history, instead of the history itself.
    """
    actuals = _keys(actuals)
    summary = series_summary(history) if summary is None else summary
    keys = actuals[SERIES + ["timestamp"]].copy()
    series = keys[SERIES].drop_duplicates().set_index(SERIES)
    series["observed"] = summary["observed"].reindex(series.index).fillna(0).to_numpy()
    series["recent_mean"] = summary["recent_mean"].reindex(series.index).to_numpy()
    established = series["observed"] >= NEW_ITEM_DAYS
    threshold = series.loc[established, "recent_mean"].median()
    series["segment"] = np.where(~established, "new_item",
                                 np.where(series["recent_mean"] > threshold, "fast_mover", "slow_mover"))
    labelled = [keys.merge(series[["segment"]].reset_index(), on=SERIES, how="inner")]
    promo_source = actuals if "promo" in actuals.columns else (
        _keys(forecasts) if forecasts is not None and "promo" in forecasts.columns else None)
    if promo_source is not None:
        promo = promo_source.loc[promo_source["promo"].fillna(0).astype(float) > 0, SERIES + ["timestamp"]]
        labelled.append(promo.assign(segment="promo_day"))
    return pd.concat(labelled, ignore_index=True)


def evaluate(forecasts: pd.DataFrame, actuals: pd.DataFrame, history: pd.DataFrame | None,
             segments: pd.DataFrame | None = None, quantiles: Sequence[float] = QUANTILES,
             season: int = 7, summary: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Score forecasts against actuals.

    forecasts: item_id, location_id, timestamp, q_ columns (the canonical forecasts frame).
    actuals:   item_id, location_id, timestamp, target (optionally promo).
    history:   what the forecaster saw (MASE scale per series, segment definitions); or None with
               summary: its series_summary (the same scores, without holding the history).
    segments:  optional item_id, location_id, [timestamp,] segment rows; default `default_segments`.
    Returns {"overall": one-row frame, "segments": one row per segment (index `segment`),
             "joined": the row-level frame that was scored}.
    Rows with a forecast but no actual (or the reverse) are left out of the scores.
    """
    missing = [c for c in [qcol(q) for q in quantiles] if c not in forecasts.columns]
    if missing:
        raise ValueError(f"forecasts frame lacks quantile column(s) {missing}; has {list(forecasts.columns)}")
    fc = _keys(forecasts)
    act = _keys(actuals)[SERIES + ["timestamp", "target"]]
    joined = fc.merge(act, on=SERIES + ["timestamp"], how="inner")
    summary = series_summary(history, season) if summary is None else summary
    joined = joined.merge(summary["mase_scale"].rename_axis(SERIES).reset_index(), on=SERIES, how="left")
    overall = pd.DataFrame([scores(joined, quantiles)])

    if segments is None:
        segments = default_segments(actuals, None, forecasts, summary=summary)
    return {"overall": overall, "segments": segment_scores(joined, segments, quantiles), "joined": joined}


def segment_scores(joined: pd.DataFrame, segments: pd.DataFrame, quantiles: Sequence[float] = QUANTILES,
                   extra_keys: Sequence[str] = ()) -> pd.DataFrame:
    """scores() per segment; `segments` labels series (or series x timestamp) rows with a `segment`."""
    segments = canonical(segments, required=("item_id", "segment"))
    on = SERIES + list(extra_keys) + (["timestamp"] if "timestamp" in segments.columns else [])
    rows = []
    for name, labels in segments.groupby("segment", sort=True):
        part = joined.merge(labels[on].drop_duplicates(), on=on, how="inner")
        if len(part):
            rows.append({"segment": name, **scores(part, quantiles)})
    return pd.DataFrame(rows).set_index("segment") if rows else pd.DataFrame()
