"""The contract every demand forecaster follows, and the canonical frame it reads and writes.

History ("long format", see README): one row per series and time step
    item_id (str), location_id (str, "all" when the data has no locations), timestamp (datetime64),
    target (float, units sold), optional known covariates: price (float), promo (0/1),
    optional static attribute: category (str).
A series is (item_id, location_id). Future known covariates for the horizon, when a caller has them,
come as the same columns without `target`.

Forecasts: item_id, location_id, timestamp, horizon (1..H), one column per quantile named
q_0.1 ... q_0.9; quantiles are non-decreasing and non-negative.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from echelon.catalog.demand import QUANTILES, SERIES, qcol, qcols  # noqa: F401  (the published contract's)


def sort_quantiles(forecasts: pd.DataFrame, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
    """Make quantiles non-negative and non-decreasing (models trained per quantile can cross)."""
    cols = qcols(quantiles)
    values = np.clip(forecasts[cols].to_numpy(dtype=float), 0.0, None)
    forecasts = forecasts.copy()
    forecasts[cols] = np.sort(values, axis=1)
    return forecasts


def canonical(frame: pd.DataFrame, required: Sequence[str] = ("item_id", "timestamp", "target")) -> pd.DataFrame:
    """A copy with string series keys (location_id "all" when absent) and datetime timestamps."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}; has {list(frame.columns)}")
    frame = frame.copy()
    if "location_id" not in frame.columns:
        frame["location_id"] = "all"
    for col in SERIES:
        frame[col] = frame[col].astype(str)
    if "timestamp" in frame.columns:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


class Forecaster(Protocol):
    name: str

    def fit(self, history: pd.DataFrame, horizon: int, freq: str,
            quantiles: Sequence[float] = QUANTILES) -> "Forecaster":
        """Learn from the history of every series (pooled across series where the model can)."""

    def predict(self, history: pd.DataFrame, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast the `horizon` steps after each series' last timestamp in `history`."""

    def save(self, path: Path) -> None:
        """Write everything needed to predict into the folder `path`."""

    @classmethod
    def load(cls, path: Path) -> "Forecaster":
        ...
