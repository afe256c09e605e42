"""Canonical long frame -> the dense arrays the MQ networks read, and the crops they train on.

Every series becomes one row of a (series, time) panel, right-aligned on its own last timestamp and
padded on the left (target NaN, covariates 0) so that all rows have the same length. Per step:

- target y (NaN where missing or padded) and a causal scale s_t: an exponentially weighted mean of |y|
  up to and including t (never after t), so "y / s" and "forecast * s_t" leak nothing from after the
  forecast creation time t;
- known covariates: calendar features of the step's timestamp (which ones depends on the frequency,
  see `calendar_features`), price relative to the series' median price, promo (0/1) when the frame has
  them. After the history they run `horizon` steps on, from the caller's `future` frame or carried
  forward (price) / zero (promo);
- static indices: item, location and category (0 = a value not seen at fit time);
- the target one seasonal lag earlier (`seasonal_lag`: a year ago on the same weekday for daily data),
  NaN where unknown: for a step after the FCT t it is a past value as long as the horizon is at most the
  lag, so the decoder may read it. It carries what smooth calendar harmonics cannot: last year's peaks,
  holiday bumps and drops, the way LightGBM's year-ago lags do.
- for the year-over-year input (networks.py, `year_over_year`): the target one seasonal lag earlier
  smoothed over 2k+1 steps centred on it (`lag_smooth`, k = min(3, lag - horizon), so its newest value
  is still at most t for every step t+h the decoder reads it at) and the causal scale one lag earlier
  (`lag_scale`). Their ratio smooth[t+h-P] / s[t-P] is last year's path from the FCT's level to the
  target step, in the units the network forecasts in (y / s_t): LightGBM's `t_year_over_year`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from echelon.models.demand.base import SERIES
from echelon.models.demand.gluon import _Vocab, future_grid, series_grid

KNOWN_COLUMNS = ("price", "promo")
STATIC_COLUMNS = ("item_id", "location_id", "category")
SMOOTH_HALF_WIDTH = 3     # year-over-year input: last year's value averaged over 7 steps (a week of days)


def _harmonics(position: np.ndarray, period: float, count: int) -> list[np.ndarray]:
    """sin/cos pairs of a cyclic position; `count` harmonics represent any shape up to that order."""
    angle = 2 * np.pi * np.asarray(position, dtype=float) / period
    out = []
    for k in range(1, count + 1):
        out += [np.sin(k * angle), np.cos(k * angle)]
    return out


def calendar_features(stamps: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """(len(stamps), n) calendar features for a pandas frequency: the cycles finer than a year that the
    frequency can show (hour of day, day of week, day of month) and the position in the year."""
    base = to_offset(freq).name.split("-")[0].upper()
    cols: list[np.ndarray] = []
    if base in ("H", "MIN", "T", "S"):
        minutes = stamps.hour * 60 + stamps.minute
        cols += _harmonics(minutes, 24 * 60, 3)
        cols += _harmonics(stamps.dayofweek, 7, 3)
        cols += _harmonics(stamps.dayofyear, 365.25, 2)
    elif base in ("D", "B", "C"):
        cols += _harmonics(stamps.dayofweek, 7, 3)
        cols += _harmonics(stamps.day - 1, stamps.days_in_month, 1)
        cols += _harmonics(stamps.dayofyear - 1, 365.25, 3)
    elif base == "W":
        cols += _harmonics(stamps.dayofyear - 1, 365.25, 4)
    elif base in ("M", "ME", "MS", "SM", "SMS", "BM", "BME", "BMS"):
        cols += _harmonics(stamps.month - 1, 12, 3)
    elif base in ("Q", "QE", "QS", "BQ", "BQE", "BQS"):
        cols += _harmonics(stamps.quarter - 1, 4, 1)
    if not cols:   # yearly or exotic frequencies: no calendar cycle to learn
        return np.zeros((len(stamps), 0), dtype=np.float32)
    return np.stack(cols, axis=1).astype(np.float32)


def seasonal_lag(freq: str, horizon: int) -> int:
    """Steps back to the same point of the longest cycle the data shows (daily: 364 = 52 weeks, so the
    same weekday a year ago; hourly: a week; weekly 52; monthly 12; quarterly 4); 0 = none, also when
    the horizon reaches past it (the lagged value of a forecast step would not be known yet)."""
    base = to_offset(freq).name.split("-")[0].upper()
    lag = {"H": 168, "D": 364, "B": 260, "W": 52, "M": 12, "ME": 12, "MS": 12, "Q": 4, "QE": 4, "QS": 4}.get(base, 0)
    return lag if lag >= horizon else 0


def causal_scale(target: np.ndarray, span: int) -> np.ndarray:
    """EWMA of |y| over the steps up to each t (NaNs skipped, carried forward); 1 where nothing is known
    yet or the level is zero, so dividing by it is always safe."""
    scale = pd.Series(np.abs(target)).ewm(span=span, ignore_na=True).mean().ffill().to_numpy()
    return np.where(np.isfinite(scale) & (scale > 1e-6), scale, 1.0).astype(np.float32)


@dataclass
class Panel:
    """Right-aligned (series, time) arrays; the last `future` steps are the horizon (target NaN)."""
    keys: list[tuple[str, str]]        # (item_id, location_id) per row
    target: np.ndarray                 # (S, T) float32, NaN = unknown
    scale: np.ndarray                  # (S, T) float32, causal
    known: np.ndarray                  # (S, T, F) float32
    static: np.ndarray                 # (S, n_static) int64
    lagged: np.ndarray                 # (S, T) float32: target `lag` steps earlier, NaN = unknown
    lag_smooth: np.ndarray             # (S, T) float32: centred mean of the target around `lag` steps earlier
    lag_scale: np.ndarray              # (S, T) float32: causal scale `lag` steps earlier, NaN = unknown
    stamps: list[pd.DatetimeIndex]     # per row: the timestamps of its last `future` steps
    future: int                        # steps after each series' last observation


def prepare(history: pd.DataFrame, freq: str, *, horizon: int, covariates: Sequence[str],
            vocab: _Vocab, span: int, max_history: int, pad: int, future: int = 0,
            future_frame: pd.DataFrame | None = None, lag: int = 0) -> Panel:
    """Build the panel from a canonical, sorted history (see module docstring).

    Each series keeps at most its last `max_history` steps, then `pad` padded steps in front (so the
    oldest step can still be the last of a full encoder window) and `future` steps after it."""
    groups = list(history.groupby(SERIES, sort=True))
    fut_groups = dict(tuple(future_frame.groupby(SERIES, sort=False))) if future_frame is not None else {}
    lengths = [min(len(series_grid(h["timestamp"].iloc[0], h["timestamp"].iloc[-1], freq)), max_history)
               for _, h in groups]
    total = max(lengths) + pad + future
    n_cal = calendar_features(pd.DatetimeIndex([]), freq).shape[1]
    S, F = len(groups), n_cal + len(covariates)
    target = np.full((S, total), np.nan, dtype=np.float32)
    scale = np.ones((S, total), dtype=np.float32)
    known = np.zeros((S, total, F), dtype=np.float32)
    static = np.zeros((S, len(vocab.values)), dtype=np.int64)
    lagged = np.full((S, total), np.nan, dtype=np.float32)
    lag_smooth = np.full((S, total), np.nan, dtype=np.float32)
    lag_scale = np.full((S, total), np.nan, dtype=np.float32)
    half = max(min(SMOOTH_HALF_WIDTH, lag - horizon), 0)
    keys, stamps = [], []
    for row, ((item, loc), hist) in enumerate(groups):
        grid = series_grid(hist["timestamp"].iloc[0], hist["timestamp"].iloc[-1], freq)
        y = hist.set_index("timestamp")["target"].astype(float).reindex(grid).to_numpy()
        s = causal_scale(y, span)
        if lag:      # from the whole grid (before max_history cuts it), through the `future` steps
            def back(values: np.ndarray) -> np.ndarray:
                return np.concatenate([np.full(lag, np.nan), values])[: len(y) + future][-lengths[row] - future:]
            smooth = pd.Series(y).rolling(2 * half + 1, center=True, min_periods=1).mean().to_numpy()
            known_y = pd.Series(np.isfinite(y)).cumsum().to_numpy() > 0
            lagged[row, total - lengths[row] - future:] = back(y)
            lag_smooth[row, total - lengths[row] - future:] = back(smooth)
            lag_scale[row, total - lengths[row] - future:] = back(np.where(known_y, s, np.nan))
        grid, y, s, n = grid[-lengths[row]:], y[-lengths[row]:], s[-lengths[row]:], lengths[row]
        ahead = future_grid(grid[-1], future, freq) if future else grid[:0]
        full = grid.append(ahead)
        start = total - len(full)        # right-aligned
        target[row, start:start + n] = y
        scale[row, start:start + n] = s
        scale[row, start + n:] = s[-1]
        scale[row, :start] = s[0]
        cols = [calendar_features(full, freq)] if n_cal else []
        for col in covariates:
            cols.append(_covariate(hist, grid, fut_groups.get((item, loc)), ahead, col)[:, None])
        if cols:
            known[row, start:] = np.concatenate(cols, axis=1)
        static[row] = vocab.encode(hist.iloc[-1].to_dict())
        keys.append((item, loc))
        stamps.append(ahead)
    return Panel(keys, target, scale, known, static, lagged, lag_smooth, lag_scale, stamps, future)


def _covariate(hist: pd.DataFrame, grid: pd.DatetimeIndex, fut: pd.DataFrame | None,
               ahead: pd.DatetimeIndex, col: str) -> np.ndarray:
    """One known covariate over history + horizon: holes filled forwards then backwards, the horizon from
    the caller's future rows or carried forward; price relative to the series' median price."""
    past = pd.Series(hist[col].astype(float).to_numpy(), index=hist["timestamp"]).reindex(grid).ffill().bfill()
    values = past.to_numpy()
    if len(ahead):
        given = pd.Series(np.nan, index=ahead)
        if fut is not None and col in fut.columns and len(fut):
            given = fut.set_index("timestamp")[col].astype(float).reindex(ahead)
        last = values[-1] if len(values) else np.nan
        given = given.ffill().fillna(last if col == "price" else 0.0)
        values = np.concatenate([values, given.to_numpy()])
    if col == "price":
        ref = np.nanmedian(past.to_numpy()) if np.isfinite(past.to_numpy()).any() else np.nan
        values = values / ref if np.isfinite(ref) and ref > 0 else np.ones_like(values)
        return np.nan_to_num(np.log(np.clip(values, 1e-3, None)), nan=0.0).astype(np.float32)
    return np.nan_to_num(values, nan=0.0).astype(np.float32)


def crop(panel: Panel, rows: np.ndarray, starts: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Windows [start, start + length) of the given rows, as a batch of arrays."""
    idx = starts[:, None] + np.arange(length)[None, :]
    r = rows[:, None]
    return {"target": panel.target[r, idx], "scale": panel.scale[r, idx],
            "known": panel.known[r, idx], "static": panel.static[rows], "lagged": panel.lagged[r, idx],
            "lag_smooth": panel.lag_smooth[r, idx], "lag_scale": panel.lag_scale[r, idx]}
