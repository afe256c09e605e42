"""The seasonal naive baseline (`seasonal_naive`): repeat the last season, from statsforecast.

Kept as its own name because the nightly DAG, the model registry and the tests know it by it; the
model itself is statsforecast's SeasonalNaive with its model intervals (see models/demand/stats.py,
which also holds the per-series fallback for series shorter than a season).
"""
from __future__ import annotations

from echelon.models.demand.stats import StatsForecaster


class SeasonalNaiveForecaster(StatsForecaster):
    name = "seasonal_naive"

    def __init__(self, season: int | None = None, n_jobs: int = 1, seed: int = 0):
        super().__init__("seasonal_naive", season=season, n_jobs=n_jobs, seed=seed)

    def __repr__(self) -> str:
        return f"SeasonalNaiveForecaster(season={self.season or 'from freq'})"

    @classmethod
    def _from_state(cls, state: dict) -> "SeasonalNaiveForecaster":
        return cls()
