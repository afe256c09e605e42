"""Statistical baselines from statsforecast: naive, seasonal naive, AutoETS, AutoTheta, at any frequency.

Size: four statsforecast models behind one forecaster, plus the split-conformal calibration and the
per-series fallbacks that make them safe on any file.

These are local models (one per series), so `fit` records the settings and checks the history, and
`predict` fits each series of the history it is given and forecasts its next `horizon` steps
(statsforecast's `forecast`, which is fit + predict in one pass). A saved model is its settings.
In a backtest (`backtest_forecasts`) each series is fit once, at the oldest origin, and carried
forward with those parameters, so the windows cost about one fit.

Quantiles start from the models' own prediction intervals (`level=`): quantile q < 0.5 is the lower
bound of the central interval at level 100 * (1 - 2q), q > 0.5 the upper bound at level 100 * (2q - 1),
and 0.5 the point forecast. Those intervals assume the model is right, so ETS and Theta cover too little
(P10-P90 held 61-67% of the outcomes on store-item data) and the naive ones too much. By default
(`intervals="calibrated"`) they are calibrated by split conformal prediction on the model's own
backtest: each series' model is fit once before the last 8-16 horizon-long windows of the history
(CAL_WINDOWS) and carried forward through them (cross_validation, refit=False: about one more fit), and for
each quantile q the deviation of q from the point forecast is scaled by one factor s_q, pooled over
series and horizon steps, chosen so that a fraction q of those windows' outcomes fall below
point + s_q * (model quantile - point), unless the model's quantile already holds about that share
(within CAL_Z standard errors: then its factor stays 1, since on a few series the estimate is mostly
noise). The model's own spread sets each series' and step's scale, so one pooled factor fits series of
any size; statsforecast's ConformalIntervals instead works per series (a handful of residuals per step
on a short series) and refits once per calibration window. Measured on five sets x four models (test windows after the calibration ones) against the
models' own intervals: mean wQL -5.9% (geometric mean of the ratios; 9 better, 8 unchanged, 3 worse),
mean distance of P10-P90 coverage from 80% 18.0 -> 11.6 points. Without the noise gate: -3.9% (and
it switched auto's choice on random walks away from the naive forecast); one factor per central
interval (symmetric, so it cannot shift the interval) instead of per quantile: -1.8%. Neither fixes a
shift the calibration windows did not see: on the store-item daily test (November-December, a yearly
season the weekly-seasonal models do not know) AutoETS covers 65% (model intervals 61%) while its wQL
falls 8%. Series too short for the calibration windows still get the factors learnt on the others;
with no series long enough the model intervals are kept (and logged).

Series the model cannot handle fall back, per series and logged by name: a series shorter than two
seasons is fit without seasonality (the seasonal naive becomes the naive forecast), a series with
fewer than MIN_FIT points or a constant one gets the naive forecast (repeat the last value).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from echelon.models.demand.base import QUANTILES, SERIES, canonical, qcol, qcols, sort_quantiles
from echelon.models.demand.metrics import season_length

log = logging.getLogger(__name__)

MODEL_FILE = "stats_forecaster.json"
STATS_MODELS = ("naive", "seasonal_naive", "autoets", "autotheta")
ETS_MAX_SEASON = 24    # AutoETS above this is fit without seasonality (as R's ets): 52 seasonal states
                       # are over-parameterised and cost ~40x the fit time; AutoTheta keeps long seasons
MIN_FIT = 8            # fewer points than this: too few to fit ETS/Theta, repeat the last value
SHOWN = 10             # series named per fallback log line
INTERVALS = ("calibrated", "model")
CAL_WINDOWS = (8, 16)  # calibration windows (one horizon each, half a horizon apart): at least 8, and up to
                       # 16 so they span a whole season (weekly: a year) where the history allows
CAL_Z = 2.0            # a model quantile within this many standard errors of its level is left alone


def levels_for(quantiles: Sequence[float]) -> list[float]:
    """The central-interval levels (percent) whose bounds are the requested quantiles."""
    levels = {round(100 * abs(2 * q - 1), 6) for q in quantiles if abs(q - 0.5) > 1e-9}
    return sorted(int(v) if float(v).is_integer() else v for v in levels)


def interval_column(alias: str, q: float) -> str:
    """statsforecast's column holding quantile q of model `alias` (the point forecast for 0.5)."""
    if abs(q - 0.5) <= 1e-9:
        return alias
    level = round(100 * abs(2 * q - 1), 6)
    level = int(level) if float(level).is_integer() else level
    return f"{alias}-{'lo' if q < 0.5 else 'hi'}-{level}"


def _model(name: str, season: int):
    """The statsforecast model for a name at a season (season 1 = non-seasonal)."""
    from statsforecast.models import AutoETS, AutoTheta, Naive, SeasonalNaive

    if name == "naive" or (name == "seasonal_naive" and season <= 1):
        return Naive(alias="model")
    if name == "seasonal_naive":
        return SeasonalNaive(season_length=season, alias="model")
    if name == "autoets":
        return AutoETS(season_length=season, alias="model")
    if name == "autotheta":
        return AutoTheta(season_length=season, alias="model")
    raise ValueError(f"unknown statistical model '{name}'; choose from {', '.join(STATS_MODELS)}")


def _frame(history: pd.DataFrame) -> pd.DataFrame:
    """Canonical history -> statsforecast's long frame (unique_id, ds, y) with the series keys kept."""
    hist = canonical(history)
    hist = hist.sort_values(SERIES + ["timestamp"], kind="stable")
    hist["unique_id"] = hist["item_id"] + "\x1f" + hist["location_id"]
    return hist.rename(columns={"timestamp": "ds", "target": "y"})[["unique_id", *SERIES, "ds", "y"]] \
        .astype({"y": float})


def model_season(name: str, season: int) -> int:
    """The season a model is fit with on series long enough for it."""
    if name == "naive" or (name == "autoets" and season > ETS_MAX_SEASON):
        return 1
    return season


def plan(history: pd.DataFrame, name: str, season: int) -> pd.Series:
    """Per series ('unique_id'): the (model, season) it is fit with, as 'name/season'."""
    stats = history.groupby("unique_id", sort=False)["y"].agg(["size", "min", "max"])
    seasonal = model_season(name, season)
    rows = pd.Series(f"{name}/{seasonal}", index=stats.index)
    # the seasonal naive needs one whole season to repeat, ETS and Theta two to estimate one
    rows[stats["size"] < (1 if name == "seasonal_naive" else 2) * seasonal] = f"{name}/1"
    rows[(stats["size"] < MIN_FIT) | (stats["min"] == stats["max"])] = "naive/1"
    return rows


def _log_fallbacks(plans: pd.Series, name: str, season: int, keys: pd.DataFrame) -> None:
    wanted = f"{name}/{model_season(name, season)}"
    for fallback, ids in plans[plans != wanted].groupby(plans[plans != wanted]).groups.items():
        labels = keys.loc[list(ids)]
        names = [f"{i}@{loc}" if loc != "all" else i for i, loc in labels.itertuples(index=False)]
        why = ("too short or constant: repeating the last value" if fallback == "naive/1"
               else f"shorter than the seasons of {season} it needs: fit without seasonality")
        log.info("%s: %d series %s (%s%s)", name, len(names), why, ", ".join(names[:SHOWN]),
                 f", ... {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def spread_factors(cv: pd.DataFrame, quantiles: Sequence[float], windows: int | None = None) -> dict[float, float]:
    """Split conformal calibration, quantile by quantile: the factor s_q >= 0 such that a fraction q of
    the outcomes `target` fall below `_point` + s_q * (q's model value - `_point`), pooled over every row
    (the model's own deviation from its point forecast sets the scale, so series of any size pool).
    One factor per quantile rather than per interval, so the tails may differ (demand errors are
    skewed; the models' intervals are symmetric). A quantile whose model value already holds about a
    fraction q (within CAL_Z standard errors, counting each of the `windows` (series, window) pairs, by
    default every row, as one observation: a window's steps move together) keeps its factor 1: on little
    data the estimate is mostly noise. Rows where the model gives no spread (a constant series) carry no
    information and are left out."""
    point, y = cv["_point"].to_numpy(float), cv["target"].to_numpy(float)
    factors = {}
    for q in quantiles:
        if abs(q - 0.5) <= 1e-9:
            continue
        spread = cv[qcol(q)].to_numpy(float) - point
        ok = np.isfinite(spread) & np.isfinite(y) & (np.abs(spread) > 1e-9 * (1 + np.abs(point)))
        if not ok.any():
            continue
        ratio = (y[ok] - point[ok]) / spread[ok]
        below = float(np.mean(y[ok] <= point[ok] + spread[ok]))           # what the model's q holds
        if abs(below - q) <= CAL_Z * np.sqrt(q * (1 - q) / (windows or ok.sum())):
            factors[q] = 1.0
            continue
        # below the point (spread < 0): y <= point + s*spread  <=>  ratio >= s, so s is ratio's (1-q)-quantile
        factors[q] = max(float(np.quantile(ratio, q if q > 0.5 else 1 - q)), 0.0)
    return factors


def scale_spread(out: pd.DataFrame, factors: dict[float, float]) -> pd.DataFrame:
    """Each quantile column moved to `_point` + factor * (its deviation from `_point`)."""
    if not factors:
        return out
    out = out.copy()
    for q, factor in factors.items():
        out[qcol(q)] = out["_point"] + factor * (out[qcol(q)] - out["_point"])
    return out


class StatsForecaster:
    """A statsforecast model behind the project's Forecaster protocol (models/demand/base.py)."""

    def __init__(self, model: str = "autoets", season: int | None = None, n_jobs: int = 1, seed: int = 0,
                 intervals: str = "calibrated"):
        if model not in STATS_MODELS:
            raise ValueError(f"unknown statistical model '{model}'; choose from {', '.join(STATS_MODELS)}")
        if intervals not in INTERVALS:
            raise ValueError(f"unknown intervals '{intervals}'; choose from {', '.join(INTERVALS)}")
        self.name = model
        self.intervals = intervals
        self.factors: dict[float, float] = {}     # the last calibration's spread factors (for reports)
        self.season = season
        self.n_jobs = n_jobs
        self.seed = seed          # the models are deterministic; kept for the common constructor
        self.horizon: int | None = None
        self.freq: str | None = None
        self.quantiles: tuple[float, ...] = QUANTILES

    def __repr__(self) -> str:
        return f"StatsForecaster(model={self.name!r}, season={self.season or 'from freq'}, intervals={self.intervals!r})"

    def fit(self, history: pd.DataFrame, horizon: int, freq: str,
            quantiles: Sequence[float] = QUANTILES) -> "StatsForecaster":
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 (got {horizon})")
        if canonical(history).empty:
            raise ValueError("the history is empty: nothing to fit")
        self.horizon, self.freq, self.quantiles = int(horizon), freq, tuple(quantiles)
        self.season = self.season or season_length(freq)
        return self

    def predict(self, history: pd.DataFrame, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """The next `horizon` steps of every series in `history` (known covariates are not used)."""
        if self.horizon is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        frame = _frame(history)
        out = pd.concat([self._forecast(frame, self._calibrate(frame)), self._unseen(frame, future)],
                        ignore_index=True)
        return sort_quantiles(out, self.quantiles).drop(columns="_point") \
            .sort_values(SERIES + ["timestamp"], kind="stable").reset_index(drop=True)

    def backtest_forecasts(self, history: pd.DataFrame, origins: Sequence, horizon: int, freq: str = "D",
                           quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Every backtest window's forecasts (with an `origin` column) at about the cost of one fit: each
        series' model is fit on the data up to the oldest origin and carried forward with those
        parameters to the later origins (statsforecast's cross_validation with refit=False), so no
        window sees data after its origin. Series that start after the oldest origin or end before the
        newest window does, and unevenly spaced origins, are refit per origin instead. The intervals are
        calibrated once, on the data before the oldest origin. Same signature as LightGBM's."""
        from pandas.tseries.frequencies import to_offset

        self.fit(history, horizon, freq, quantiles)
        offset, origins = to_offset(freq), sorted(pd.Timestamp(o) for o in origins)
        end = origins[-1] + offset * horizon
        frame = _frame(history)
        frame = frame[frame["ds"] <= end]
        factors = self._calibrate(frame[frame["ds"] <= origins[0]])     # one calibration, as one fit
        steps = {len(pd.date_range(a, b, freq=offset)) - 1 for a, b in zip(origins, origins[1:])}
        span = frame.groupby("unique_id")["ds"].agg(["min", "max"])
        together = (span["max"] == end) & (span["min"] <= origins[0]) & (len(steps) <= 1)
        inside = frame["unique_id"].isin(span.index[together])
        parts = []
        if inside.any():
            step = steps.pop() if steps else horizon
            first = frame[inside & (frame["ds"] <= origins[0])]
            cv = self._run(frame[inside], lambda sf, part: sf.cross_validation(
                df=part, h=horizon, step_size=step, n_windows=len(origins), level=self._levels(), refit=False)
                .rename(columns={"cutoff": "origin"}), planned_on=first)
            parts.append(scale_spread(cv, factors))
        rest = frame[~inside]
        for origin in origins:
            cut = rest[rest["ds"] <= origin]
            if len(cut):
                parts.append(self._forecast(cut, factors).assign(origin=origin))
        out = pd.concat(parts, ignore_index=True)
        return sort_quantiles(out, self.quantiles).drop(columns="_point").sort_values(SERIES + ["origin", "timestamp"], kind="stable") \
            .reset_index(drop=True)

    def _levels(self) -> list | None:
        return levels_for(self.quantiles) or None

    def _forecast(self, frame: pd.DataFrame, factors: dict[float, float]) -> pd.DataFrame:
        """The next `horizon` steps of every series in `frame`, intervals scaled by `factors`."""
        out = self._run(frame, lambda sf, part: sf.forecast(df=part, h=self.horizon, level=self._levels()))
        return scale_spread(out, factors)

    def _calibrate(self, frame: pd.DataFrame) -> dict[float, float]:
        """The spread factors (spread_factors) from the model's backtest over the last CAL_WINDOWS windows
        of `frame`, on the series long enough to fit the intended model before them; {} (the model's
        own intervals) with intervals="model" or when no series is long enough."""
        self.factors = {}
        if self.intervals == "model" or self._levels() is None:
            return {}
        step = max(1, self.horizon // 2)
        windows = int(np.clip(-(-self.season // step) + 1, *CAL_WINDOWS))
        position = frame.groupby("unique_id", sort=False).cumcount(ascending=False)
        while windows >= 2:        # fewer windows where no series is long enough for them
            span = self.horizon + (windows - 1) * step
            before = frame[position >= span]                 # each series without its calibration windows
            plans = plan(before, self.name, self.season) if len(before) else pd.Series(dtype=str)
            fit = plans.index[plans == f"{self.name}/{model_season(self.name, self.season)}"]
            if len(fit):
                break
            windows //= 2
        else:
            log.info("%s: no series is long enough to fit before %d calibration periods: keeping the model's "
                     "own intervals", self.name, self.horizon + step)
            return {}
        cv = self._run(frame[frame["unique_id"].isin(fit)], lambda sf, part: sf.cross_validation(
            df=part, h=self.horizon, step_size=step, n_windows=windows, level=self._levels(), refit=False),
            planned_on=before[before["unique_id"].isin(fit)], calibrating=True)
        self.factors = spread_factors(cv, self.quantiles, windows=len(fit) * windows)
        log.info("%s: interval spread factors from %d series x %d windows: %s", self.name, len(fit), windows,
                 ", ".join(f"q{q:g} x{f:.2f}" for q, f in self.factors.items()))
        return self.factors

    def _run(self, frame: pd.DataFrame, call, planned_on: pd.DataFrame | None = None,
             calibrating: bool = False) -> pd.DataFrame:
        """`call(StatsForecast, part)` once per (model, season) of the per-series plan (made on
        `planned_on`, default `frame`), its output turned into the forecasts layout, plus the point
        forecast `_point` (and the outcome `target` where the call gives one: cross-validation)."""
        from statsforecast import StatsForecast

        keys = frame.drop_duplicates("unique_id").set_index("unique_id")[SERIES]
        plans = plan(frame if planned_on is None else planned_on, self.name, self.season)
        if not calibrating:
            _log_fallbacks(plans, self.name, self.season, keys)
        parts = []
        for choice, ids in plans.groupby(plans).groups.items():
            name, season = choice.split("/")
            part = frame[frame["unique_id"].isin(ids)][["unique_id", "ds", "y"]]
            sf = StatsForecast(models=[_model(name, int(season))], freq=self.freq, n_jobs=self.n_jobs)
            parts.append(call(sf, part))
        raw = pd.concat(parts, ignore_index=True)
        out = keys.reindex(raw["unique_id"]).reset_index(drop=True)
        by = SERIES
        if "origin" in raw.columns:
            out["origin"] = pd.to_datetime(raw["origin"].to_numpy())
            by = SERIES + ["origin"]
        out["timestamp"] = pd.to_datetime(raw["ds"].to_numpy())
        out["horizon"] = out.groupby(by, sort=False).cumcount() + 1
        point = raw["model"].to_numpy(dtype=float)
        for q in self.quantiles:
            # an interval a model cannot give (one observation, zero variance) collapses to the point
            values = raw[interval_column("model", q)].to_numpy(dtype=float)
            out[qcol(q)] = np.where(np.isfinite(values), values, point)
        out[qcols(self.quantiles)] = np.nan_to_num(out[qcols(self.quantiles)].to_numpy(), nan=0.0)
        out["_point"] = np.nan_to_num(point, nan=0.0)
        if calibrating:
            out["target"] = raw["y"].to_numpy(dtype=float)
        return out

    def _unseen(self, frame: pd.DataFrame, future: pd.DataFrame | None) -> pd.DataFrame:
        """Series only in `future` (new items): a local model has no history to go on, so zeros."""
        if future is None or future.empty:
            return pd.DataFrame()
        new = canonical(future, required=("item_id",))[SERIES].drop_duplicates()
        new = new.merge(frame[SERIES].drop_duplicates(), on=SERIES, how="left", indicator=True)
        new = new[new["_merge"] == "left_only"][SERIES]
        if new.empty:
            return pd.DataFrame()
        stamps = pd.date_range(frame["ds"].max(), periods=self.horizon + 1, freq=self.freq)[1:]
        steps = pd.DataFrame({"timestamp": stamps, "horizon": np.arange(1, self.horizon + 1)})
        return new.merge(steps, how="cross").assign(**{c: 0.0 for c in qcols(self.quantiles)})

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"model": self.name, "season": self.season, "horizon": self.horizon, "freq": self.freq,
                 "quantiles": list(self.quantiles), "intervals": self.intervals}
        (path / MODEL_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, path: Path) -> "StatsForecaster":
        state = json.loads(cls._state_file(Path(path)).read_text())
        model = cls._from_state(state)
        model.horizon, model.freq = state["horizon"], state["freq"]
        model.season, model.quantiles = state["season"], tuple(state["quantiles"])
        return model

    @classmethod
    def _state_file(cls, path: Path) -> Path:
        return path / MODEL_FILE

    @classmethod
    def _from_state(cls, state: dict) -> "StatsForecaster":
        return cls(model=state["model"], intervals=state.get("intervals", "model"))
