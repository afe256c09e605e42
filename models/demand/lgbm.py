"""Pooled LightGBM quantile forecaster: one model per quantile across all series, direct multi-horizon.

Size: one forecaster class over two feature builders (the nightly Spark table and the any-frequency
pandas table) sharing the row budget, early stopping, threads and save/load; reading the Spark table's
rows in bounded memory is its own module (lgbm_rows.py).

Training rows are (series, origin, h) for h = 1..H: the features known at the end of the origin date
(the feature job's row for that date), the known covariates of the target date (calendar, promo,
price, year-ago demand), and h itself; the label is the demand on origin + h. Every demand-valued
input and the label are divided by a per-series level, so series of very different sizes pool into one
model.

Fast by design (issue 15; measurements in benchmarks/results/demand_lgbm_speed.md):
- Training rows are sampled to a fixed budget (`max_training_rows`): origins per series, and series
  too when there are very many, drawn by seed. The cost of a fit does not grow with the history or,
  past the budget, with the number of series.
- The last `horizon` days before the cutoff are a validation window (one origin per series, every
  horizon); no training row's target date falls inside it. Each quantile's booster stops early on it
  and its per-iteration validation pinball loss is kept in `learning_curves`.
- Memory is bounded by the budget, not the table (lgbm_rows.py): the table (a pandas frame, or the
  published partition as a pyarrow dataset with the night's item sample) is scanned batch by batch for
  int32 series/day keys, then only the sampled origin and target rows are read, only the columns the
  design uses, as float32; the design joins on integer keys; cold starts are blanked on the design rows;
  the binned lgb.Datasets are built once (free_raw_data) and shared by the nine boosters.
- LightGBM uses every core (`num_threads`, default Settings.threads).
- `level_weight=False` by default: the level as a sample weight makes the quantile objective take the
  weighted-percentile path (a sort of each leaf's residuals per iteration); the validation metric is
  still level-weighted (pinball in units, what wQL measures).

The level is the series' mean over the last 364 days shrunk towards its category x location mean
(weight LEVEL_PRIOR_DAYS observed days), so a new item's level is its category's. A share of the
training rows is also copied as "cold starts" (own history blanked, category level), so the model
learns how a new item's demand relates to the category features instead of reading missing values as
zero. Crossed quantiles are sorted afterwards (base.sort_quantiles).

Two feature builders (`features`, recorded in a saved model): "spark" (the default; the nightly
job's daily feature table above, with categories, prices and cold starts) and "tabular"
(models/demand/tabular_features.py: pandas/numpy features derived from any frequency's seasons, no
Spark; what `echelon forecast` uses). Both share the sampling budget, validation window, early stopping
and boosters; the tabular table is built once per history and reused by every backtest window and fit.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from echelon.demand_features import (CALENDAR_FEATURES, DOW_MEAN_FEATURES, LAG_FEATURES, LAGS, ROLLING_FEATURES,
                                     features_pandas)
from echelon.models.demand import lgbm_rows as rows_io
from echelon.models.demand import tabular_features as tabular
from echelon.models.demand.base import QUANTILES, SERIES, canonical, qcol, sort_quantiles
from echelon.settings import get_settings

log = logging.getLogger(__name__)

META_FILE = "lightgbm_forecaster.json"
LEVEL_PRIOR_DAYS = 7.0       # weight of the category mean in a series' level, in observed days
MIN_LEVEL = 0.1              # units/day: keeps scaled values finite for near-zero series

CATEGORY_MEANS = ["cat_mean_7", "cat_mean_28", "cat_mean_91"]
CATEGORY_DOW = [f"cat_dow_mean_{d}" for d in range(7)]
CATEGORY_COLUMNS = ["cat_items"] + CATEGORY_MEANS + CATEGORY_DOW
# demand-valued origin features, divided by the level
SCALED_ORIGIN = LAG_FEATURES + ROLLING_FEATURES + DOW_MEAN_FEATURES + ["year_ago_mean_28"] + CATEGORY_MEANS + CATEGORY_DOW
RAW_ORIGIN = ["observed_days_364", "nonzero_share_91", "stockout_days_28", "item_age_days", "price_ratio_28",
              "promo", "day_of_week", "cat_items"]
# what a series with no row at the origin (a new item) lacks; cold-start copies blank exactly these
OWN_HISTORY = LAG_FEATURES + ROLLING_FEATURES + DOW_MEAN_FEATURES + [
    "year_ago_mean_28", "observed_days_364", "nonzero_share_91", "stockout_days_28", "item_age_days",
    "price", "price_ratio_28", "promo"]
TARGET_RAW = CALENDAR_FEATURES + ["promo"]
TARGET_SCALED = ["year_ago_lag_364", "year_ago_mean_7"]

# Chosen on the store-item benchmark's two earlier windows (benchmarks/demand_accuracy.py --tune).
DEFAULT_PARAMS = {
    "learning_rate": 0.08,
    "num_leaves": 15,
    "min_data_in_leaf": 800,
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
}


# The tabular path (`echelon forecast`) fits once per backtest window plus once at the end, interactively:
# 100k rows, a faster learning rate and 63 bins. Measured on 400 daily series (benchmarks/results/
# demand_auto_speed.md): the backtest 2.6x faster than with the nightly settings at the same wQL (0.3095 vs 0.3092).
TABULAR_PARAMS = {"learning_rate": 0.12, "max_bin": 63}
TABULAR_MAX_TRAINING_ROWS = 100_000
MIN_LEAF_SHARE = 0.01        # tabular path: min_data_in_leaf at most this share of the training rows (800 from 80k)


class FeatureTableError(ValueError):
    """The feature table lacks rows or columns the model needs."""


# the Spark table's columns a fit or forecast reads: origin rows, target-date rows, category aggregates
ORIGIN_COLUMNS = sorted(set(SCALED_ORIGIN + RAW_ORIGIN + ["roll_mean_364", "price"]) - set(CATEGORY_COLUMNS))
TARGET_COLUMNS = TARGET_RAW + TARGET_SCALED + ["price", "target", "in_stock"]
REQUIRED_COLUMNS = ["item_id", "location_id", "date", "is_future", "target"] + SCALED_ORIGIN + RAW_ORIGIN + \
    TARGET_RAW + TARGET_SCALED


def feature_source(features, items: list[str] | None = None) -> rows_io.FeatureSource:
    """A feature table (pandas frame, or a pyarrow dataset of the published partition with an item
    sample) as LightGBM reads it: checked for the columns it needs, read in bounded memory."""
    source = features if isinstance(features, rows_io.FeatureSource) else \
        rows_io.FeatureSource(features, items, category_columns=CATEGORY_COLUMNS)
    missing = sorted(set(REQUIRED_COLUMNS) - set(source.columns))
    if missing:
        raise FeatureTableError(f"feature table lacks column(s) {missing}: build it with "
                                f"echelon.demand_features.build_features")
    return source


def _levels(own_mean: np.ndarray, observed: np.ndarray, category_mean: np.ndarray, fallback: float) -> np.ndarray:
    """Own 364-day mean shrunk towards the category mean by LEVEL_PRIOR_DAYS pseudo-observations."""
    n = np.nan_to_num(np.asarray(observed, dtype=float))
    own = np.asarray(own_mean, dtype=float)
    cat = np.asarray(category_mean, dtype=float)
    with np.errstate(invalid="ignore"):
        blended = (n * np.nan_to_num(own) + LEVEL_PRIOR_DAYS * cat) / (n + LEVEL_PRIOR_DAYS)
    level = np.where(np.isfinite(cat), blended, own)
    level = np.where(np.isfinite(level), level, fallback)
    return np.maximum(level, MIN_LEVEL)


MIN_ORIGINS_PER_SERIES = 8   # fewer origins than this per series and the budget samples series instead
VALID_SHARE = 0.25           # the validation rows' share of the row budget, at most


@dataclass
class TrainingSplit:
    """The rows a fit trains and validates on, in series codes and days (lgbm_rows): *_origins: sid +
    origin (one row per series x origin); *_targets: sid + origin + horizon + date + o (the row of its
    origin in *_origins), one row per training example."""
    train_origins: pd.DataFrame
    train_targets: pd.DataFrame
    valid_origins: pd.DataFrame      # empty when there is no validation window
    valid_targets: pd.DataFrame
    train_end: int                   # last target day of a training row; validation is (train_end, cutoff]

    def wanted(self) -> np.ndarray:
        """The (series, day) keys of every origin and target row."""
        return np.concatenate([rows_io.key(o["sid"], o["origin"]) for o in (self.train_origins, self.valid_origins)]
                              + [rows_io.key(t["sid"], t["date"]) for t in (self.train_targets, self.valid_targets)])


def training_split(history: pd.DataFrame, cutoff: int, horizon: int, *, max_training_rows: int,
                   max_origins_per_series: int, validation: bool, rng: np.random.Generator) -> TrainingSplit:
    """Sample training rows within a budget and hold out the validation window.

    history: the observed rows (sid, day) up to the `cutoff` day, sorted by sid and day. With
    `validation` (and at least 2 x horizon days of history before it), the last `horizon` days
    (train_end, cutoff] are held out: validation rows forecast them from the origin train_end, every
    horizon, for a sample of series; training origins lie before train_end and their target dates go up
    to train_end only. Each trained series gets budget / (series x horizon) origins, within
    [MIN_ORIGINS_PER_SERIES, max_origins_per_series]; when even that minimum overflows the budget, a
    random subset of the series trains. The budget (max_training_rows, 250,000 on the nightly path) is
    what bounds a fit's rows, time and memory: not the history's length nor the number of series."""
    cutoff = int(cutoff)
    sid, day = history["sid"].to_numpy(), history["day"].to_numpy()
    first = int(day.min())
    train_end = cutoff - horizon
    if not validation or train_end - first < 2 * horizon:
        train_end = cutoff
    series = np.unique(sid)
    pairs, per_series, n_train = tabular.origin_budget(len(series), horizon, max_training_rows,
                                                       max_origins_per_series, MIN_ORIGINS_PER_SERIES)
    train_series = _sample(series, n_train, rng)

    candidates = day < train_end
    if n_train < len(series):
        candidates &= np.isin(sid, train_series)
    c_sid, c_day = sid[candidates], day[candidates]
    rank = pd.Series(rng.random(len(c_sid))).groupby(c_sid).rank(method="first").to_numpy()
    keep = rank <= per_series
    train_origins = pd.DataFrame({"sid": c_sid[keep], "origin": c_day[keep]})
    train_targets = _expand(train_origins, horizon)
    train_targets = train_targets[train_targets["date"] <= train_end].reset_index(drop=True)

    if train_end < cutoff:
        at_end = np.unique(sid[day == train_end])
        chosen = _sample(at_end, max(1, int(VALID_SHARE * pairs)), rng)
        valid_origins = pd.DataFrame({"sid": chosen, "origin": np.full(len(chosen), train_end, dtype=np.int64)})
    else:
        valid_origins = pd.DataFrame({"sid": np.zeros(0, np.int64), "origin": np.zeros(0, np.int64)})
    return TrainingSplit(train_origins, train_targets, valid_origins, _expand(valid_origins, horizon), train_end)


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n of `values` drawn without replacement, in their original order (all when n >= len)."""
    if n >= len(values):
        return values
    return values[np.sort(rng.choice(len(values), size=n, replace=False))]


def _expand(origins: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """One row per origin x horizon 1..H with its target day and `o`, the row of its origin."""
    steps = np.arange(1, horizon + 1)
    o = np.repeat(np.arange(len(origins)), horizon)
    out = pd.DataFrame({"sid": origins["sid"].to_numpy()[o], "origin": origins["origin"].to_numpy()[o],
                        "horizon": np.tile(steps, len(origins))})
    out["date"] = out["origin"] + out["horizon"]
    out["o"] = o
    return out


class LightGBMForecaster:
    name = "lightgbm"

    def __init__(self, params: dict | None = None, num_boost_round: int = 1000,
                 max_origins_per_series: int = 100, max_training_rows: int | None = None,
                 cold_start_share: float = 0.05, validation: bool = True, early_stopping_rounds: int = 30,
                 refit: bool = False, level_weight: bool = False, parallel_quantiles: int | None = None,
                 seed: int = 42, num_threads: int | None = None, spark=None, features: str = "spark"):
        """num_boost_round caps the rounds (early stopping on the validation window usually ends
        sooner); num_threads=None uses Settings.threads; parallel_quantiles boosters train at once
        (Python threads; LightGBM releases the GIL), sharing the threads; None: one booster per thread,
        each single-threaded, which keeps OpenMP's spinning barriers out of a busy machine (measured:
        2 OpenMP threads under load ran 3-9x slower than one); refit retrains each quantile on all rows (validation window included)
        for its best iteration count instead of keeping the early-stopped booster; features: "spark" (daily)
        or "tabular" (any frequency, see the module docstring)."""
        if features not in ("spark", tabular.NAME):
            raise ValueError(f"features must be 'spark' or '{tabular.NAME}' (got {features!r})")
        self.features = features
        self._table_cache: tuple | None = None
        quick = features == tabular.NAME
        self.params = {**DEFAULT_PARAMS, **(TABULAR_PARAMS if quick else {}), **(params or {})}
        self.num_boost_round = num_boost_round
        self.max_origins_per_series = max_origins_per_series
        self.max_training_rows = max_training_rows or (TABULAR_MAX_TRAINING_ROWS if quick else 250_000)
        self.cold_start_share = cold_start_share
        self.validation = validation
        self.early_stopping_rounds = early_stopping_rounds
        self.refit = refit
        self.level_weight = level_weight
        self.parallel_quantiles = parallel_quantiles
        self.seed = seed
        self.num_threads = num_threads
        self.spark = spark
        self.horizon: int | None = None
        self.freq = "D"
        self.quantiles: tuple[float, ...] = QUANTILES
        self.boosters: dict[float, object] = {}
        self.best_iterations: dict[float, int] = {}
        self.learning_curves: dict[str, list[float]] = {}
        self.feature_names: list[str] = []
        self.fallback_level = 1.0
        self.training_rows = 0

    def __deepcopy__(self, memo):
        # a Spark session cannot be copied (backtests deep-copy the forecaster); share it instead
        clone = type(self).__new__(type(self))
        for key, value in self.__dict__.items():
            # the tabular table is read-only and large: windows share it too
            clone.__dict__[key] = value if key in ("spark", "_table_cache") else copy.deepcopy(value, memo)
        return clone

    def _threads(self) -> int:
        return max(1, int(self.num_threads or get_settings().threads))

    # ------------------------------------------------------------------ design matrix
    def _design(self, rows: pd.DataFrame, keys: rows_io.Keys, origins: pd.DataFrame, targets: pd.DataFrame,
                cold: bool = False) -> pd.DataFrame:
        """One row per (series, origin, horizon): scaled origin features + target-date covariates.

        rows: the source's rows at the origins' and targets' keys (FeatureSource.rows); origins: sid +
        origin (one row per series x origin); targets: sid + origin + horizon + date + o (its origin's
        row). cold: as if the item had just launched (own history at the origin and the target's
        year-ago values blank, level from the category). Returns the design frame with `level` and the
        label `__label` (NaN when the target date has no observed demand)."""
        sid, origin = origins["sid"].to_numpy(), origins["origin"].to_numpy()
        pos = rows.index.get_indexer(rows_io.key(sid, origin))
        o = {c: rows_io.take(rows[c].to_numpy(), pos) for c in ORIGIN_COLUMNS}
        if cold:
            for c in OWN_HISTORY:
                if c in o:
                    o[c][:] = np.nan
        o["day_of_week"] = (origin.astype(np.int64) + 3) % 7            # 1970-01-01 was a Thursday; known without a row
        o.update(keys.category_at(sid, origin, CATEGORY_COLUMNS, CATEGORY_MEANS[1]))
        o["level"] = _levels(o["roll_mean_364"], o["observed_days_364"], o["cat_mean_28"], self.fallback_level)

        at = targets["o"].to_numpy()
        d = pd.DataFrame({c: values[at] for c, values in o.items()})
        d["horizon"] = targets["horizon"].to_numpy()
        pos = rows.index.get_indexer(rows_io.key(targets["sid"], targets["date"]))
        for c in TARGET_COLUMNS:
            d[f"t_{c}"] = rows_io.take(rows[c].to_numpy(), pos)
        if cold:
            for c in TARGET_SCALED:
                d[f"t_{c}"] = np.nan
        return self._finish(d)

    def _finish(self, d: pd.DataFrame) -> pd.DataFrame:
        level = d["level"].to_numpy()
        X = pd.DataFrame(index=d.index)
        X["horizon"] = d["horizon"].to_numpy(dtype=float)
        for c in SCALED_ORIGIN:
            X[c] = d[c].to_numpy(dtype=float) / level
        for c in RAW_ORIGIN:
            X[c] = d[c].to_numpy(dtype=float)
        for c in TARGET_RAW:
            X[f"t_{c}"] = d[f"t_{c}"].to_numpy(dtype=float)
        for c in TARGET_SCALED:
            X[f"t_{c}"] = d[f"t_{c}"].to_numpy(dtype=float) / level
        with np.errstate(divide="ignore", invalid="ignore"):
            X["t_price_change"] = d["t_price"].to_numpy(dtype=float) / d["price"].to_numpy(dtype=float)
            # the target weekday's recent mean, own and category's, and its last observed value
            t_dow = d["t_day_of_week"].fillna(0).astype(int).to_numpy()
            rows = np.arange(len(d))
            X["t_dow_mean"] = d[DOW_MEAN_FEATURES].to_numpy(dtype=float)[rows, t_dow] / level
            X["t_cat_dow_mean"] = d[CATEGORY_DOW].to_numpy(dtype=float)[rows, t_dow] / level
            lag_index = {k: i for i, k in enumerate(LAGS)}
            back = (7 - d["horizon"].to_numpy(dtype=int) % 7) % 7
            X["t_last_same_weekday"] = d[LAG_FEATURES].to_numpy(dtype=float)[rows, [lag_index[b] for b in back]] / level
            # last year's change from the origin's four weeks to the target week, applied to this year
            growth = d["roll_mean_28"].to_numpy(dtype=float) / d["year_ago_mean_28"].to_numpy(dtype=float)
            X["growth_28"] = np.where(np.isfinite(growth), growth, np.nan)
            projection = d["roll_mean_28"].to_numpy(dtype=float) * d["t_year_ago_mean_7"].to_numpy(dtype=float) \
                / d["year_ago_mean_28"].to_numpy(dtype=float) / level
            X["t_year_over_year"] = np.where(np.isfinite(projection), projection, np.nan)
        X["level"] = level
        X["log_level"] = np.log(level)
        X.replace([np.inf, -np.inf], np.nan, inplace=True)
        X["__label"] = d["t_target"].where(d["t_in_stock"].fillna(1) > 0).to_numpy(dtype=float) / level
        return X

    # ------------------------------------------------------------------ training
    def fit(self, history: pd.DataFrame, horizon: int, freq: str = "D",
            quantiles: Sequence[float] = QUANTILES) -> "LightGBMForecaster":
        """Build features from a canonical history (with local Spark, or the tabular builder), then fit."""
        if self.features == tabular.NAME:
            self.horizon, self.freq, self.quantiles = int(horizon), freq, tuple(quantiles)
            table = self._table(history, freq)
            return self._fit_table(table, int(table.step.max()))
        self._check_freq(freq)
        started = time.time()
        features = features_pandas(canonical(history), spark=self.spark)
        log.info("lightgbm: built %d feature rows in %.1f s", len(features), time.time() - started)
        return self.fit_features(features, horizon, freq, quantiles)

    def fit_features(self, features, horizon: int, freq: str = "D", quantiles: Sequence[float] = QUANTILES,
                     cutoff=None, items: list[str] | None = None) -> "LightGBMForecaster":
        """Train on a feature table (the published sales_features or build_features output: a pandas
        frame, or the partition as a pyarrow dataset, then only `items`' rows), using only labels dated
        on or before `cutoff` (default: the last observed date). The table is read in bounded memory
        (lgbm_rows): only the sampled rows' columns are ever held."""
        self._check_freq(freq)
        self.horizon, self.freq, self.quantiles = int(horizon), freq, tuple(quantiles)
        return self._fit_source(feature_source(features, items), cutoff)

    def split(self, features, cutoff=None) -> TrainingSplit:
        """The training and validation rows fit_features(features, cutoff=cutoff) uses (set horizon
        first), with the series' item_id, location_id and category and dates as Timestamps."""
        keys = feature_source(features).keys()
        split = self._split(keys, self._cutoff_day(keys, cutoff), np.random.default_rng(self.seed))

        def named(frame: pd.DataFrame, origins: bool) -> pd.DataFrame:
            series = keys.series.iloc[frame["sid"].to_numpy()].reset_index(drop=True)
            out = series if origins else series[SERIES]
            out = out.assign(origin=rows_io.stamps(frame["origin"].to_numpy()))
            if not origins:
                out = out.assign(horizon=frame["horizon"].to_numpy(), date=rows_io.stamps(frame["date"].to_numpy()))
            return out

        return TrainingSplit(named(split.train_origins, True), named(split.train_targets, False),
                             named(split.valid_origins, True), named(split.valid_targets, False),
                             pd.Timestamp(rows_io.stamps(np.array([split.train_end]))[0]))

    @staticmethod
    def _cutoff_day(keys: rows_io.Keys, cutoff) -> int:
        if cutoff is not None:
            return int(rows_io.days([pd.Timestamp(cutoff)])[0])
        if not keys.observed.any():
            raise FeatureTableError("no training rows: the feature table has no observed row")
        return int(keys.day[keys.observed].max())

    def _split(self, keys: rows_io.Keys, cutoff: int, rng, validation: bool | None = None) -> TrainingSplit:
        seen = keys.observed & (keys.day <= cutoff)
        hist = pd.DataFrame({"sid": keys.sid[seen], "day": keys.day[seen]}).sort_values(["sid", "day"], kind="stable")
        if hist.empty:
            raise FeatureTableError("no training rows: the feature table has no observed row before the cutoff")
        return training_split(hist, cutoff, self.horizon, max_training_rows=self.max_training_rows,
                              max_origins_per_series=self.max_origins_per_series,
                              validation=self.validation if validation is None else validation, rng=rng)

    def _fit_source(self, source: rows_io.FeatureSource, cutoff=None) -> "LightGBMForecaster":
        started = time.time()
        keys = source.keys()
        cutoff = self._cutoff_day(keys, cutoff)
        seen = keys.observed & (keys.day <= cutoff)
        levels = keys.roll[seen]
        levels = levels[np.isfinite(levels)]
        self.fallback_level = float(max(np.median(levels), MIN_LEVEL)) if len(levels) else 1.0
        rng = np.random.default_rng(self.seed)
        split = self._split(keys, cutoff, rng)
        rows = source.rows(split.wanted(), ORIGIN_COLUMNS + TARGET_COLUMNS)
        rows = rows[(rows.index.to_numpy() & 0xFFFFFFFF) - (1 << 31) <= cutoff]    # no label after the cutoff
        train = self._training_rows(rows, keys, split, rng)
        valid = self._design(rows, keys, split.valid_origins, split.valid_targets)
        valid = valid[np.isfinite(valid["__label"])]
        del rows
        self.feature_names = [c for c in train.columns if c != "__label"]
        self.training_rows = len(train)
        log.info("lightgbm: %d training rows (%d origins of %d series, horizon %d, targets up to %s), %d validation "
                 "rows (to %s), %d features, built in %.1f s", len(train), len(split.train_origins), len(keys.series),
                 self.horizon, rows_io.stamps(np.array([split.train_end]))[0].astype("datetime64[D]"), len(valid),
                 rows_io.stamps(np.array([cutoff]))[0].astype("datetime64[D]"), len(self.feature_names),
                 time.time() - started)
        full = None
        if self.refit and len(valid):
            # all rows: a fresh sample with no window held out, trained for each quantile's best count
            again = self._split(keys, cutoff, np.random.default_rng(self.seed), False)
            full = self._training_rows(source.rows(again.wanted(), ORIGIN_COLUMNS + TARGET_COLUMNS), keys, again,
                                       np.random.default_rng(self.seed))
        self._train(train, valid if len(valid) else None, full)
        return self

    def _training_rows(self, rows: pd.DataFrame, keys: rows_io.Keys, split: TrainingSplit, rng) -> pd.DataFrame:
        design = self._design(rows, keys, split.train_origins, split.train_targets)
        if self.cold_start_share > 0 and len(design):
            # copies of a random share of the rows as if the item had just launched: own history blank,
            # level from the category; teaches the pooled model the new-item case
            pick = rng.random(len(design)) < self.cold_start_share
            if pick.any():
                cold = self._design(rows, keys, split.train_origins, split.train_targets[pick], cold=True)
                design = pd.concat([design, cold], ignore_index=True)
        design = design[np.isfinite(design["__label"])]
        if design.empty:
            raise FeatureTableError("no training rows: the feature table has no observed demand after an origin")
        return design.reset_index(drop=True)

    def _train(self, train: pd.DataFrame, valid: pd.DataFrame | None, full: pd.DataFrame | None,
               overrides: dict | None = None) -> None:
        """One booster per quantile, early-stopped on `valid` when given (then retrained on `full` for
        its best iteration count when given); `parallel_quantiles` at a time sharing the threads;
        `overrides` change self.params for this fit only. The binned datasets are built once and shared
        by every quantile (the float matrices are freed once binned)."""
        import lightgbm as lgb

        threads = self._threads()
        workers = max(1, min(self.parallel_quantiles or threads, len(self.quantiles), threads))
        # the datasets are binned with the boosters' own settings (min_data_in_leaf pre-filters features)
        base = {**self.params, **(overrides or {}), "seed": self.seed, "deterministic": True, "force_row_wise": True,
                "verbose": -1}
        dataset_params = {**base, "num_threads": threads}

        def dataset(frame, reference=None, weighted=self.level_weight):
            X = frame[self.feature_names].to_numpy(dtype=np.float32)
            level = frame["level"].to_numpy()
            built = lgb.Dataset(X, label=frame["__label"].to_numpy(), weight=level if weighted else None,
                                feature_name=self.feature_names, reference=reference, params=dataset_params,
                                free_raw_data=True)
            return built.construct()

        train_set = dataset(train)
        # the validation loss is level-weighted whatever the training weights: pinball in units, as wQL
        valid_set = dataset(valid, reference=train_set, weighted=True) if valid is not None else None
        full_set = dataset(full) if full is not None else None
        del train, valid, full

        def one(q: float):
            started = time.time()
            params = {**base, "objective": "quantile", "alpha": q, "metric": "quantile",
                      "num_threads": max(1, threads // workers)}
            curves, callbacks, valid_sets = {}, [], []
            if valid_set is not None:
                valid_sets = [valid_set]
                callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False), lgb.record_evaluation(curves)]
            booster = lgb.train(params, train_set, num_boost_round=self.num_boost_round, valid_sets=valid_sets,
                                valid_names=["valid"] if valid_sets else None, callbacks=callbacks)
            best = booster.best_iteration or booster.current_iteration()
            if full_set is not None:
                booster = lgb.train(params, full_set, num_boost_round=best)
            elif valid_set is not None:
                booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))  # drop the rounds past the best
            log.info("lightgbm: quantile %g: %d rounds (best %d) in %.1f s", q,
                     len(curves.get("valid", {}).get("quantile", [])) or best, best, time.time() - started)
            return q, booster, best, curves.get("valid", {}).get("quantile", [])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, self.quantiles))
        self.boosters = {q: booster for q, booster, _, _ in results}
        self.best_iterations = {q: best for q, _, best, _ in results}
        self.learning_curves = {f"valid_pinball_q{q:g}": [float(v) for v in curve] for q, _, _, curve in results if curve}

    # ------------------------------------------------------------------ prediction
    def predict(self, history: pd.DataFrame, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast `horizon` days after each series' last date; series only in `future` (new items)
        are forecast from the last date of the whole history using their category."""
        self._check_fitted()
        if self.features == tabular.NAME:
            table = self._table(history, self.freq)
            return self._predict_table(table, table.last_rows())
        hist = canonical(history)
        plan = _future_grid(hist, future, self.horizon)
        features = features_pandas(hist, future=plan, spark=self.spark)
        return self.predict_features(features)

    def predict_features(self, features, origin=None, items: list[str] | None = None) -> pd.DataFrame:
        """Forecast from a feature table (a pandas frame, or a pyarrow dataset restricted to `items`).
        origin=None: from each series' last observed date (series with no observed row start at the
        table's last observed date), reading the target dates' covariates from the table's future rows.
        origin=<date>: every series from that date (for backtests on one full table; the labels after
        it are never read)."""
        self._check_fitted()
        return self._predict_source(feature_source(features, items), origin)

    def _predict_source(self, source: rows_io.FeatureSource, origin=None, series: np.ndarray | None = None) -> pd.DataFrame:
        """series: a mask over the source's series codes, the series to forecast (default all)."""
        keys = source.keys()
        n = len(keys.series)
        wanted = np.ones(n, dtype=bool) if series is None else series.copy()
        if origin is not None:
            # a series that launches after the origin has nothing to forecast from there (a backtest's
            # origin before an item's first day): it is left out rather than failing every other series
            day = int(rows_io.days([pd.Timestamp(origin)])[0])
            launched = keys.first_day() <= day
            if not launched[wanted].all():
                log.info("%d series start after the origin %s: not forecast from it",
                         int((~launched & wanted).sum()), pd.Timestamp(origin).date())
            sid = np.flatnonzero(wanted & launched)
            origins = pd.DataFrame({"sid": sid, "origin": np.full(len(sid), day, dtype=np.int64)})
            unseen = np.zeros(len(sid), dtype=bool)
        else:
            last = keys.last_observed()
            sid = np.flatnonzero(wanted)
            unseen = last[sid] == np.iinfo(np.int32).min
            if keys.observed.any():
                last = np.where(last == np.iinfo(np.int32).min, keys.day[keys.observed].max(), last)
            origins = pd.DataFrame({"sid": sid, "origin": last[sid].astype(np.int64)})
        targets = _expand(origins, self.horizon)
        present = np.isin(rows_io.key(targets["sid"], targets["date"]), keys.all_keys())
        # an item launching inside the horizon (no observed row) is forecast from its first planned date on
        keep = present | ~unseen[targets["o"].to_numpy()]
        targets, present = targets[keep].reset_index(drop=True), present[keep]
        if not present.all():
            absent = targets[~present].head()
            names = keys.series.iloc[absent["sid"].to_numpy()][SERIES].reset_index(drop=True).assign(
                origin=rows_io.stamps(absent["origin"].to_numpy()), date=rows_io.stamps(absent["date"].to_numpy()))
            raise FeatureTableError(
                f"feature table lacks {int((~present).sum())} target-date rows (series x date) needed to forecast "
                f"{self.horizon} days ahead, e.g.\n{names.to_string()}\n"
                f"build it with a future frame or horizon >= {self.horizon}")
        rows = source.rows(np.concatenate([rows_io.key(origins["sid"], origins["origin"]),
                                           rows_io.key(targets["sid"], targets["date"])]), ORIGIN_COLUMNS + TARGET_COLUMNS)
        design = self._design(rows, keys, origins, targets)
        del rows
        X = design[self.feature_names].to_numpy(dtype=np.float32)
        level = design["level"].to_numpy()
        out = keys.series.iloc[targets["sid"].to_numpy()][SERIES].reset_index(drop=True)
        out["timestamp"] = rows_io.stamps(targets["date"].to_numpy())
        out["horizon"] = targets["horizon"].to_numpy(dtype=np.int64)
        for q in self.quantiles:
            out[qcol(q)] = self.boosters[q].predict(X, num_threads=self._threads()) * level
        return sort_quantiles(out, self.quantiles)

    def backtest_forecasts(self, history: pd.DataFrame, origins: Sequence, horizon: int, freq: str = "D",
                           quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """The forecasts of every backtest window, concatenated with an `origin` column: the features
        are built once for the whole history, and each window fits on the labels up to its origin and
        forecasts the `horizon` days after it from that one table (every feature of a date is known at
        that date, so this equals fit + predict on the history cut at each origin). Series with a
        target date missing from the history in a window (they end inside it) are left out of it."""
        if self.features == tabular.NAME:
            return self._backtest_table(history, origins, horizon, freq, quantiles)
        self._check_freq(freq)
        started = time.time()
        source = feature_source(features_pandas(canonical(history), spark=self.spark))
        keys = source.keys()
        log.info("lightgbm backtest: built %d feature rows once in %.1f s", len(keys.sid), time.time() - started)
        out = []
        for origin in origins:
            origin = pd.Timestamp(origin)
            window = copy.deepcopy(self)          # each window starts unfitted, as a fresh forecaster would
            window.horizon, window.freq, window.quantiles = int(horizon), freq, tuple(quantiles)
            window._fit_source(source, cutoff=origin)
            day = int(rows_io.days([origin])[0])
            inside = (keys.day > day) & (keys.day <= day + horizon)
            complete = np.bincount(keys.sid[inside], minlength=len(keys.series)) == horizon
            out.append(window._predict_source(source, origin, series=complete).assign(origin=origin))
        return pd.concat(out, ignore_index=True)

    # ------------------------------------------------------------------ tabular features (any frequency)
    def _table(self, history: pd.DataFrame, freq: str) -> tabular.SeriesArrays:
        """The tabular feature table of `history`, built once per history (backtest and final fit share it)."""
        stamps = pd.to_datetime(history["timestamp"])
        key = (freq, len(history), stamps.min(), stamps.max(), float(pd.to_numeric(history["target"]).sum()))
        if self._table_cache is None or self._table_cache[0] != key:
            started = time.time()
            self._table_cache = (key, tabular.build_table(history, freq))
            log.info("lightgbm: tabular features of %d rows (freq %s, seasons %s) in %.1f s", len(history), freq,
                     self._table_cache[1].spec.periods, time.time() - started)
        return self._table_cache[1]

    def _fit_table(self, table: tabular.SeriesArrays, cutoff_step: int) -> "LightGBMForecaster":
        """Train on the table's labels up to grid step `cutoff_step` (as _fit_prepared on the Spark table)."""
        started = time.time()

        def rows(validation: bool):
            rng = np.random.default_rng(self.seed)
            train_o, valid_o, train_end = tabular.split_origins(
                table, cutoff_step, self.horizon, max_training_rows=self.max_training_rows,
                max_origins_per_series=self.max_origins_per_series, min_origins_per_series=MIN_ORIGINS_PER_SERIES,
                valid_share=VALID_SHARE, validation=validation, rng=rng)
            train = tabular.design(table, train_o, self.horizon, last_step=train_end)
            valid = tabular.design(table, valid_o, self.horizon, last_step=cutoff_step)
            return train[np.isfinite(train["__label"])], valid[np.isfinite(valid["__label"])]

        train, valid = rows(self.validation)
        if train.empty:
            raise FeatureTableError("no training rows: the history has no observation after an origin")
        self.feature_names = [c for c in train.columns if not c.startswith("__")]
        self.training_rows = len(train)
        log.info("lightgbm: %d training rows, %d validation rows, %d tabular features, built in %.1f s",
                 len(train), len(valid), len(self.feature_names), time.time() - started)
        full = rows(False)[0] if self.refit and len(valid) else None
        # a small file (a few series, a few hundred rows) would get no split at all from a leaf size made
        # for 100k rows: min_data_in_leaf at most MIN_LEAF_SHARE of the training rows
        leaf = min(int(self.params.get("min_data_in_leaf", 20)), max(20, int(MIN_LEAF_SHARE * len(train))))
        self._train(train, valid if len(valid) else None, full, {"min_data_in_leaf": leaf})
        return self

    def _predict_table(self, table: tabular.SeriesArrays, origins) -> pd.DataFrame:
        design = tabular.design(table, origins, self.horizon)
        X = design[self.feature_names].to_numpy(dtype=np.float32)
        out = table.keys.iloc[design["__origin"].to_numpy()].reset_index(drop=True)
        out["timestamp"] = table.stamps(design["__step"].to_numpy())
        out["horizon"] = design["horizon"].to_numpy(dtype=int)
        for q in self.quantiles:
            out[qcol(q)] = self.boosters[q].predict(X, num_threads=self._threads()) * design["level"].to_numpy()
        return sort_quantiles(out, self.quantiles)

    def _backtest_table(self, history, origins, horizon, freq, quantiles) -> pd.DataFrame:
        """backtest_forecasts on one tabular table: every window fits on the labels up to its origin and
        forecasts from the rows at it (series without `horizon` observations after it are left out)."""
        table = self._table(history, freq)
        out = []
        for origin in origins:
            step = table.step_of(origin)
            window = copy.deepcopy(self)
            window.horizon, window.freq, window.quantiles = int(horizon), freq, tuple(quantiles)
            window._fit_table(table, step)
            rows = table.rows_at(step)
            rows = rows[table.end[rows] - rows >= horizon]
            out.append(window._predict_table(table, rows).assign(origin=pd.Timestamp(origin)))
        return pd.concat(out, ignore_index=True)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {}
        for q, booster in self.boosters.items():
            files[str(q)] = f"quantile_{q:g}.txt"
            booster.save_model(str(path / files[str(q)]))
        meta = {"name": self.name, "params": self.params, **self._settings(),
                "horizon": self.horizon, "freq": self.freq, "quantiles": list(self.quantiles),
                "feature_names": self.feature_names, "fallback_level": self.fallback_level,
                "training_rows": self.training_rows, "best_iterations": {str(q): n for q, n in self.best_iterations.items()},
                "model_files": files}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: Path) -> "LightGBMForecaster":
        import lightgbm as lgb

        path = Path(path)
        meta = json.loads((path / META_FILE).read_text())
        # models saved before a setting existed get its constructor default
        settings = inspect.signature(cls).parameters
        model = cls(params=meta["params"], **{k: v for k, v in meta.items() if k in settings and k != "params"})
        model.horizon, model.freq = meta["horizon"], meta["freq"]
        model.quantiles = tuple(meta["quantiles"])
        model.feature_names = meta["feature_names"]
        model.fallback_level = meta["fallback_level"]
        model.training_rows = meta["training_rows"]
        model.best_iterations = {float(q): n for q, n in meta.get("best_iterations", {}).items()}
        model.boosters = {float(q): lgb.Booster(model_file=str(path / name)) for q, name in meta["model_files"].items()}
        return model

    # ------------------------------------------------------------------ helpers
    def _settings(self) -> dict:
        """The constructor arguments (but params and spark), as saved and shown."""
        return {k: getattr(self, k) for k in ("num_boost_round", "max_origins_per_series", "max_training_rows",
                                              "cold_start_share", "validation", "early_stopping_rounds", "refit",
                                              "level_weight", "parallel_quantiles", "seed", "num_threads",
                                              "features")}

    def _check_fitted(self) -> None:
        if not self.boosters:
            raise RuntimeError("LightGBMForecaster is not fitted: call fit or fit_features first")

    @staticmethod
    def _check_freq(freq: str) -> None:
        if pd.tseries.frequencies.to_offset(freq) != pd.tseries.frequencies.to_offset("D"):
            raise ValueError(f"LightGBMForecaster works on daily data (its features are daily calendar, "
                             f"lags and windows); got freq={freq!r}. Use seasonal_naive or a GluonTS model.")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"LightGBMForecaster({settings}, params={self.params})"


def _future_grid(hist: pd.DataFrame, future: pd.DataFrame | None, horizon: int) -> pd.DataFrame:
    """The horizon dates after each series' last date (new series in `future`: after the history's
    last date), with the known covariates `future` gives for them (price carried forward otherwise)."""
    last = hist.groupby(SERIES)["timestamp"].max()
    keys = last.reset_index().rename(columns={"timestamp": "origin"})
    if "category" in hist.columns:
        keys = keys.merge(hist.groupby(SERIES)["category"].last().reset_index(), on=SERIES, how="left")
    if future is not None and len(future):
        fut = canonical(future.assign(target=np.nan) if "target" not in future.columns else future)
        new = fut[SERIES + (["category"] if "category" in fut.columns else [])].drop_duplicates(SERIES)
        new = new.merge(keys[SERIES], on=SERIES, how="left", indicator=True)
        new = new[new["_merge"] == "left_only"].drop(columns="_merge").assign(origin=hist["timestamp"].max())
        keys = pd.concat([keys, new], ignore_index=True)
    grid = keys.loc[keys.index.repeat(horizon)].reset_index(drop=True)
    grid["timestamp"] = grid["origin"] + pd.to_timedelta(np.tile(np.arange(1, horizon + 1), len(keys)), unit="D")
    grid = grid.drop(columns="origin")
    if future is not None and len(future):
        covariates = [c for c in ("price", "promo") if c in fut.columns]
        if covariates:
            grid = grid.merge(fut[SERIES + ["timestamp"] + covariates], on=SERIES + ["timestamp"], how="left")
        if "category" in fut.columns and "category" in grid.columns:
            cat = fut.groupby(SERIES)["category"].first().rename("_cat").reset_index()
            grid = grid.merge(cat, on=SERIES, how="left")
            grid["category"] = grid["category"].fillna(grid["_cat"])
            grid = grid.drop(columns="_cat")
        elif "category" in fut.columns:
            grid = grid.merge(fut.groupby(SERIES)["category"].first().reset_index(), on=SERIES, how="left")
    return grid
