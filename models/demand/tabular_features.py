"""LightGBM's features at any pandas frequency, in pandas/numpy (no Spark): the `echelon forecast` path.

build_table sorts the canonical history once (series contiguous, on the frequency's regular grid, as
forecast.check_history guarantees) and keeps per-row cumulative sums; design() then reads, for any
(origin row, horizon h), only values at or before the origin row, divided by the series' level there:
- recent values: lags 0..min(p1, 24)-1 (p1 = the frequency's main season, metrics.season_length);
- rolling means over windows derived from the seasons (p1/4, p1, 4*p1 for short seasons, and the
  second season: hourly 168, daily 365) and the standard deviation over p1;
- the target's seasonal phase for every season s: the last value h steps ahead modulo s
  (y[o + h - s*ceil(h/s)]) and the mean of up to four cycles at that phase (one window for a season
  too long to repeat, e.g. the year-ago week of daily data);
- the target timestamp's calendar (hour, weekday, day of month, week of year, month, quarter: the
  components finer than a year and coarser than the step), the horizon, the level and the series' age.
Because no feature reads past its origin, one table serves every backtest window and the final fit
(tests/model/test_demand_tabular.py changes the future and checks the design does not move).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from echelon.models.demand.base import SERIES, canonical
from echelon.models.demand.metrics import season_length

NAME = "tabular"                       # how a saved model records this feature builder
SECOND_SEASON = {"H": 168, "D": 365, "MIN": 1440, "T": 1440, "BH": 40, "B": 260}
MAX_LAGS = 24
CYCLES = 4                             # cycles averaged at the target's phase when they fit in MAX_CYCLE_SPAN
MAX_CYCLE_SPAN = 1_000
LEVEL_FLOOR_SHARE = 0.25               # level >= this share of the series' mean |y| so far (keeps labels finite)


def seasonal_periods(freq: str) -> tuple[int, ...]:
    """The frequency's seasons, main first: hourly (24, 168), daily (7, 365), weekly (52,), monthly
    (12,), quarterly (4,); () for yearly and unknown frequencies."""
    main = season_length(freq)
    base = to_offset(freq).name.split("-")[0].upper()
    periods = [main] if main > 1 else []
    if base in SECOND_SEASON:
        periods.append(SECOND_SEASON[base])
    return tuple(periods)


@dataclass(frozen=True)
class Spec:
    """What the design derives from the seasons (recorded in a saved model's feature names)."""
    periods: tuple[int, ...]
    lags: tuple[int, ...]
    windows: tuple[int, ...]
    level_window: int

    @classmethod
    def for_freq(cls, freq: str) -> "Spec":
        periods = seasonal_periods(freq)
        p1 = periods[0] if periods else 4
        windows = {max(2, p1 // 4), p1, *periods[1:]}
        if p1 <= 24:
            windows.add(4 * p1)
        short = [w for w in windows if w not in periods[1:]]
        return cls(periods, tuple(range(min(p1, MAX_LAGS))), tuple(sorted(windows)), max(short))


@dataclass
class SeriesArrays:
    """The sorted history as arrays: one row per observation, series contiguous."""
    keys: pd.DataFrame           # SERIES per row
    y: np.ndarray
    step: np.ndarray             # index on the frequency's grid from the first timestamp
    start: np.ndarray            # row index of the series' first row, per row
    end: np.ndarray              # row index of the series' last row, per row
    first: pd.Timestamp
    freq: str
    spec: Spec

    @cached_property
    def _sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        pad = lambda a: np.concatenate([[0.0], np.cumsum(a)])
        y = self.y
        return pad(y), pad(y * y), pad(np.abs(y)), pad((y != 0).astype(float))

    def window_mean(self, rows: np.ndarray, width: int, which: int = 0) -> np.ndarray:
        """Mean of the `width` values ending at each row (fewer at the series' start; NaN for rows < 0)."""
        sums = self._sums[which]
        valid = rows >= 0
        r = np.where(valid, rows, 0)
        lo = np.maximum(r - width + 1, self.start[r])
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (sums[r + 1] - sums[lo]) / (r + 1 - lo)
        return np.where(valid, out, np.nan)

    @cached_property
    def level(self) -> np.ndarray:
        """Per row: mean |y| over spec.level_window, at least LEVEL_FLOOR_SHARE of the series' mean |y|
        up to the row, and a global floor, so scaled values of a quiet stretch stay finite."""
        rows = np.arange(len(self.y))
        recent = self.window_mean(rows, self.spec.level_window, which=2)
        sums = self._sums[2]
        so_far = (sums[rows + 1] - sums[self.start]) / (rows + 1 - self.start)
        floor = max(1e-6, 1e-3 * float(np.mean(np.abs(self.y)))) if len(self.y) else 1e-6
        return np.maximum(np.maximum(recent, LEVEL_FLOOR_SHARE * so_far), floor)

    def stamps(self, steps: np.ndarray) -> pd.DatetimeIndex:
        grid = pd.date_range(self.first, periods=int(steps.max()) + 1, freq=self.freq)
        return grid[steps]

    def rows_at(self, step: int) -> np.ndarray:
        """The rows dated at a grid step (one per series that has it)."""
        return np.flatnonzero(self.step == step)

    def last_rows(self) -> np.ndarray:
        return np.unique(self.end)

    def step_of(self, stamp) -> int:
        """The grid step of a timestamp (on the grid by check_history)."""
        grid = pd.date_range(self.first, pd.Timestamp(stamp), freq=self.freq)
        return len(grid) - 1 if len(grid) and grid[-1] == pd.Timestamp(stamp) else -1


def build_table(history: pd.DataFrame, freq: str) -> SeriesArrays:
    """The canonical history (regular timestamps per series) as SeriesArrays (one array per column, series stacked)."""
    h = canonical(history).sort_values(SERIES + ["timestamp"], kind="stable").reset_index(drop=True)
    stamps = pd.DatetimeIndex(h["timestamp"])
    first = stamps.min()
    grid = pd.date_range(first, stamps.max(), freq=freq)
    step = grid.searchsorted(stamps).astype(np.int64)
    codes = h.groupby(SERIES, sort=False).ngroup().to_numpy()
    bounds = np.flatnonzero(np.diff(codes, prepend=-1))        # first row of each series
    sizes = np.diff(np.append(bounds, len(h)))
    start = np.repeat(bounds, sizes)
    return SeriesArrays(keys=h[SERIES], y=h["target"].to_numpy(dtype=float), step=step, start=start,
                 end=start + np.repeat(sizes, sizes) - 1, first=first, freq=freq, spec=Spec.for_freq(freq))


def _calendar(stamps: pd.DatetimeIndex, freq: str) -> dict[str, np.ndarray]:
    """Calendar components finer than a year and coarser than the step."""
    days = (pd.Timestamp("2000-01-01") + to_offset(freq) - pd.Timestamp("2000-01-01")) / pd.Timedelta(days=1)
    out = {}
    if days < 1:
        out["hour"] = stamps.hour
    if days < 7:
        out["day_of_week"] = stamps.dayofweek
    if days <= 1:
        out["day_of_month"] = stamps.day
    if 1 <= days <= 7:
        out["week_of_year"] = stamps.isocalendar().week.to_numpy()
    if 1 <= days <= 31:
        out["month"] = stamps.month
    if days >= 28:
        out["quarter"] = stamps.quarter
    return {f"t_{k}": np.asarray(v, dtype=float) for k, v in out.items()}


def design(table: SeriesArrays, origins: np.ndarray, horizon: int, *, last_step: int | None = None) -> pd.DataFrame:
    """One row per (origin row, h = 1..horizon): features, `level`, `__label` (the target / level; NaN
    past the series' end or past `last_step`), and `__origin`, `__step` (the target's grid step)."""
    spec = table.spec
    o = np.repeat(np.asarray(origins, dtype=np.int64), horizon)
    h = np.tile(np.arange(1, horizon + 1), len(origins))
    start, level, y = table.start[o], table.level[o], table.y
    cols: dict[str, np.ndarray] = {"horizon": h.astype(float)}

    def at(rows):   # y at rows (NaN before the series' start)
        ok = rows >= start
        return np.where(ok, y[np.where(ok, rows, 0)], np.nan)

    for lag in spec.lags:
        cols[f"lag_{lag}"] = at(o - lag) / level
    for w in spec.windows:
        cols[f"mean_{w}"] = table.window_mean(o, w) / level
    p1 = spec.periods[0] if spec.periods else spec.level_window
    with np.errstate(invalid="ignore"):
        var = table.window_mean(o, p1, which=1) - table.window_mean(o, p1) ** 2
    cols[f"std_{p1}"] = np.sqrt(np.maximum(var, 0)) / level
    cols[f"nonzero_{p1}"] = table.window_mean(o, p1, which=3)
    for s in spec.periods:
        phase = o + h - s * -(-h // s)                  # <= o: the target's phase in the last full cycle
        cols[f"t_season_{s}"] = at(phase) / level
        if CYCLES * s <= MAX_CYCLE_SPAN:
            stack = np.stack([at(phase - k * s) for k in range(CYCLES)])
            seen = np.isfinite(stack).sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols[f"t_season_mean_{s}"] = np.nansum(stack, axis=0) / seen / level
        else:   # too long to repeat: the mean of p1 values ending at the phase (e.g. the year-ago week)
            window = table.window_mean(np.where(phase >= start, phase, -1), p1)
            cols[f"t_season_mean_{s}"] = window / level
    target_step = table.step[o] + h
    cols.update(_calendar(table.stamps(target_step), table.freq))
    cols["age"] = (o - start + 1).astype(float)
    cols["level"] = level
    cols["log_level"] = np.log(level)
    target = o + h
    inside = target <= table.end[o]
    label = np.where(inside, y[np.where(inside, target, 0)], np.nan) / level
    if last_step is not None:
        label = np.where(target_step <= last_step, label, np.nan)
    frame = pd.DataFrame(cols)
    frame["__label"] = label
    frame["__origin"] = o
    frame["__step"] = target_step
    return frame


def origin_budget(n_series: int, horizon: int, max_training_rows: int, max_origins_per_series: int,
                  min_origins_per_series: int) -> tuple[int, int, int]:
    """The row budget as (series, origin) pairs, origins per series within [min, max], and how many series
    train: every series while the minimum fits, a sample past that. Shared by both feature builders' splits."""
    pairs = max(1, max_training_rows // horizon)
    per_series = int(min(max_origins_per_series, max(min_origins_per_series, pairs // max(n_series, 1))))
    return pairs, per_series, min(n_series, max(1, pairs // per_series))


def split_origins(table: SeriesArrays, cutoff_step: int, horizon: int, *, max_training_rows: int,
                  max_origins_per_series: int, min_origins_per_series: int, valid_share: float,
                  validation: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(training origin rows, validation origin rows, train_end step), as lgbm.training_split does for
    the Spark table: with `validation` and two horizons of history before it, the last `horizon` steps
    before the cutoff are held out (validation origins at train_end, training targets up to it); each
    series gets budget / (series x horizon) origins within [min, max]; series are sampled past that."""
    train_end = cutoff_step - horizon
    if not validation or train_end < 2 * horizon:
        train_end = cutoff_step
    series = np.unique(table.start)
    pairs, per_series, n_train = origin_budget(len(series), horizon, max_training_rows,
                                               max_origins_per_series, min_origins_per_series)
    candidates = np.flatnonzero(table.step < train_end)
    if n_train < len(series):
        chosen = np.sort(rng.choice(series, size=n_train, replace=False))
        candidates = candidates[np.isin(table.start[candidates], chosen)]
    draw = rng.random(len(candidates))
    order = np.lexsort((draw, table.start[candidates]))          # by series, then at random
    ranked = candidates[order]
    first = np.flatnonzero(np.diff(table.start[ranked], prepend=-1))
    rank = np.arange(len(ranked)) - np.repeat(first, np.diff(np.append(first, len(ranked))))
    train = np.sort(ranked[rank < per_series])
    valid = np.empty(0, dtype=np.int64)
    if train_end < cutoff_step:
        at_end = table.rows_at(train_end)
        n_valid = max(1, int(valid_share * pairs))
        valid = at_end if n_valid >= len(at_end) else np.sort(rng.choice(at_end, size=n_valid, replace=False))
    return train, valid, train_end
