"""Seasonal naive baseline: repeat the last season, with quantiles from its own in-sample errors.

For horizon step j the point forecast is the value one season back from the target (k = ceil(j /
season) seasons back from it, i.e. always inside the last observed season). Its uncertainty is the
empirical distribution of the same k-season-back errors over the whole history, pooled across series
after dividing each series' errors by its scale (mean absolute one-season difference, the MASE scale),
so big and small series share one error shape and each gets it at its own size.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from echelon.models.demand.base import QUANTILES, SERIES, canonical, qcol, qcols, sort_quantiles
from echelon.models.demand.metrics import season_length

MODEL_FILE = "seasonal_naive.json"


def _prepare(history: pd.DataFrame) -> pd.DataFrame:
    hist = canonical(history)
    hist["target"] = hist["target"].astype(float)
    return hist.sort_values(SERIES + ["timestamp"], kind="stable")[SERIES + ["timestamp", "target"]]


def _shifted(hist: pd.DataFrame, steps: int, offset) -> pd.Series:
    """The target `steps` periods before each row's timestamp (by timestamp, so gaps give NaN)."""
    back = hist[SERIES + ["timestamp", "target"]].copy()
    back["timestamp"] = _shift(back["timestamp"], offset, np.full(len(back), steps))
    merged = hist[SERIES + ["timestamp"]].merge(back, on=SERIES + ["timestamp"], how="left")
    return pd.Series(merged["target"].to_numpy(), index=hist.index)


def _shift(stamps: pd.Series, offset, periods) -> pd.Series:
    """Each timestamp moved by its own number of periods (vectorised for fixed-length frequencies)."""
    periods = np.asarray(periods, dtype=np.int64)
    if isinstance(offset, pd.offsets.Tick):
        return stamps + pd.to_timedelta(periods * offset.nanos, unit="ns")
    return pd.Series([t + offset * int(p) for t, p in zip(stamps, periods)], index=stamps.index)


def _scales(hist: pd.DataFrame, season: int, offset) -> pd.Series:
    """Mean |y_t - y_{t-season}| per series; falls back to mean |y|, then 1 (never zero)."""
    diff = (hist["target"] - _shifted(hist, season, offset)).abs()
    keys = [hist[c] for c in SERIES]
    scale = diff.groupby(keys).mean()
    level = hist["target"].abs().groupby(keys).mean()
    scale = scale.where(scale > 0, level.reindex(scale.index))
    return scale.where(scale > 0, 1.0).fillna(1.0)


class SeasonalNaiveForecaster:
    name = "seasonal_naive"

    def __init__(self, season: int | None = None):
        self.season = season
        self.horizon: int | None = None
        self.freq: str | None = None
        self.quantiles: tuple[float, ...] = QUANTILES
        # error_quantiles[k-1][i]: quantile i of the scaled k-seasons-back errors
        self.error_quantiles: list[list[float]] = []

    def __repr__(self) -> str:
        return f"SeasonalNaiveForecaster(season={self.season or 'from freq'})"

    def fit(self, history: pd.DataFrame, horizon: int, freq: str,
            quantiles: Sequence[float] = QUANTILES) -> "SeasonalNaiveForecaster":
        hist = _prepare(history)
        self.horizon, self.freq, self.quantiles = int(horizon), freq, tuple(quantiles)
        self.season = self.season or season_length(freq)
        offset = pd.tseries.frequencies.to_offset(freq)
        scale = _scales(hist, self.season, offset)
        row_scale = hist[SERIES].merge(scale.rename("scale").reset_index(), on=SERIES, how="left")["scale"].to_numpy()
        self.error_quantiles = []
        for k in range(1, math.ceil(self.horizon / self.season) + 1):
            errors = (hist["target"].to_numpy() - _shifted(hist, k * self.season, offset).to_numpy()) / row_scale
            errors = errors[np.isfinite(errors)]
            if len(errors) == 0:
                # a history shorter than k seasons: widen the previous band, else no spread at all
                prev = self.error_quantiles[-1] if self.error_quantiles else [0.0] * len(self.quantiles)
                self.error_quantiles.append([v * math.sqrt(k / max(k - 1, 1)) for v in prev])
            else:
                self.error_quantiles.append([float(v) for v in np.quantile(errors, self.quantiles)])
        return self

    def predict(self, history: pd.DataFrame, future: pd.DataFrame | None = None) -> pd.DataFrame:
        if self.horizon is None:
            raise RuntimeError("SeasonalNaiveForecaster.predict called before fit")
        hist = _prepare(history)
        offset = pd.tseries.frequencies.to_offset(self.freq)
        season, horizon = self.season, self.horizon
        scale = _scales(hist, season, offset)
        last = hist.groupby(SERIES)["timestamp"].max()
        steps = np.arange(1, horizon + 1)
        rows = pd.DataFrame({
            "item_id": np.repeat(last.index.get_level_values(0), horizon),
            "location_id": np.repeat(last.index.get_level_values(1), horizon),
            "origin": np.repeat(last.to_numpy(), horizon),
            "horizon": np.tile(steps, len(last)),
        })
        rows["timestamp"] = _shift(rows["origin"], offset, rows["horizon"])
        seasons_back = np.ceil(rows["horizon"] / season).astype(int)
        # the same position in the last observed season
        rows["source"] = _shift(rows["timestamp"], offset, -seasons_back * season)
        source = hist.rename(columns={"timestamp": "source", "target": "point"})
        rows = rows.merge(source, on=SERIES + ["source"], how="left")
        # a hole in the last season: use that series' mean over its last season instead
        recent_mean = hist[hist["timestamp"] > hist.groupby(SERIES)["timestamp"].transform("max") - offset * season] \
            .groupby(SERIES)["target"].mean().rename("fallback").reset_index()
        rows = rows.merge(recent_mean, on=SERIES, how="left")
        rows["point"] = rows["point"].fillna(rows["fallback"]).fillna(0.0)
        rows = rows.merge(scale.rename("scale").reset_index(), on=SERIES, how="left")
        table = np.asarray(self.error_quantiles)                     # (K, n_quantiles)
        spread = table[seasons_back.to_numpy() - 1]                  # (rows, n_quantiles)
        values = rows["point"].to_numpy()[:, None] + rows["scale"].to_numpy()[:, None] * spread
        out = rows[SERIES + ["timestamp", "horizon"]].copy()
        out[qcols(self.quantiles)] = values
        unseen = self._unseen(hist, future, offset)
        if len(unseen):
            out = pd.concat([out, unseen], ignore_index=True)
        return sort_quantiles(out, self.quantiles).reset_index(drop=True)

    def _unseen(self, hist: pd.DataFrame, future: pd.DataFrame | None, offset) -> pd.DataFrame:
        """Series only in `future` (new items): a naive model has nothing to repeat, so zeros."""
        cols = SERIES + ["timestamp", "horizon"] + qcols(self.quantiles)
        if future is None or future.empty:
            return pd.DataFrame(columns=cols)
        fut = future.copy()
        if "location_id" not in fut.columns:
            fut["location_id"] = "all"
        for col in SERIES:
            fut[col] = fut[col].astype(str)
        seen = hist[SERIES].drop_duplicates()
        new = fut.merge(seen, on=SERIES, how="left", indicator=True)
        new = new[new["_merge"] == "left_only"][SERIES].drop_duplicates()
        if new.empty:
            return pd.DataFrame(columns=cols)
        origin = hist["timestamp"].max()
        stamps = pd.date_range(origin, periods=self.horizon + 1, freq=offset)[1:]
        grid = new.merge(pd.DataFrame({"timestamp": stamps, "horizon": np.arange(1, self.horizon + 1)}), how="cross")
        for q in self.quantiles:
            grid[qcol(q)] = 0.0
        return grid[cols]

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {"name": self.name, "season": self.season, "horizon": self.horizon, "freq": self.freq,
                 "quantiles": list(self.quantiles), "error_quantiles": self.error_quantiles}
        (path / MODEL_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, path: Path) -> "SeasonalNaiveForecaster":
        state = json.loads((Path(path) / MODEL_FILE).read_text())
        model = cls(season=state["season"])
        model.horizon, model.freq = state["horizon"], state["freq"]
        model.quantiles = tuple(state["quantiles"])
        model.error_quantiles = state["error_quantiles"]
        return model
