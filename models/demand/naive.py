"""The seasonal naive baseline (`seasonal_naive`): repeat the last season, from statsforecast.

Kept as its own name because the nightly DAG, the model registry and the tests know it by it; the
model itself is statsforecast's SeasonalNaive with its model intervals (see models/demand/stats.py,
which also holds the per-series fallback for series shorter than a season).
"""
from __future__ import annotations

from pathlib import Path

from echelon.models.demand.stats import MODEL_FILE, StatsForecaster

LEGACY_FILE = "seasonal_naive.json"     # what the hand-written model saved (same settings keys)


class SeasonalNaiveForecaster(StatsForecaster):
    name = "seasonal_naive"

    def __init__(self, season: int | None = None, n_jobs: int = 1, seed: int = 0, intervals: str = "calibrated"):
        super().__init__("seasonal_naive", season=season, n_jobs=n_jobs, seed=seed, intervals=intervals)

    def __repr__(self) -> str:
        return f"SeasonalNaiveForecaster(season={self.season or 'from freq'}, intervals={self.intervals!r})"

    @classmethod
    def _state_file(cls, path: Path) -> Path:
        """Models registered before statsforecast saved LEGACY_FILE: they load as this model."""
        return path / MODEL_FILE if (path / MODEL_FILE).exists() or not (path / LEGACY_FILE).exists() \
            else path / LEGACY_FILE

    @classmethod
    def _from_state(cls, state: dict) -> "SeasonalNaiveForecaster":
        return cls(intervals=state.get("intervals", "model"))
