"""Pictures an analyst would rather look at than read: fan charts and quantile calibration."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from echelon.models.demand.base import QUANTILES, SERIES, qcol


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fan_series(volume: pd.Series) -> list[tuple[str, str]]:
    """The series a fan chart shows: the busiest, the median and the quietest by total volume
    (volume: indexed by SERIES)."""
    volume = volume.sort_index().sort_values()
    picks = [volume.index[-1], volume.index[len(volume) // 2], volume.index[0]] if len(volume) else []
    return list(dict.fromkeys(picks))[:3]


def fan_chart(history: pd.DataFrame, forecasts: pd.DataFrame, path: Path, actuals: pd.DataFrame | None = None,
              series: Sequence[tuple[str, str]] | None = None, context_steps: int = 56, title: str = "") -> Path:
    """Quantile fans (P10-P90, P30-P70, median) after each series' recent history, with actuals if known."""
    plt = _pyplot()
    if series is None:
        series = fan_series(history.groupby(SERIES)["target"].sum())
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.8 * max(len(series), 1)), squeeze=False)
    for ax, key in zip(axes[:, 0], series):
        mask = lambda frame: (frame["item_id"] == key[0]) & (frame["location_id"] == key[1])  # noqa: E731
        past = history[mask(history)].sort_values("timestamp").tail(context_steps)
        fc = forecasts[mask(forecasts)].sort_values("timestamp")
        ax.plot(past["timestamp"], past["target"], color="black", lw=1, label="history")
        ax.fill_between(fc["timestamp"], fc[qcol(0.1)], fc[qcol(0.9)], alpha=0.25, color="tab:blue", label="P10-P90")
        ax.fill_between(fc["timestamp"], fc[qcol(0.3)], fc[qcol(0.7)], alpha=0.35, color="tab:blue", label="P30-P70")
        ax.plot(fc["timestamp"], fc[qcol(0.5)], color="tab:blue", lw=1.5, label="P50")
        if actuals is not None:
            act = actuals[mask(actuals)].sort_values("timestamp")
            ax.plot(act["timestamp"], act["target"], color="tab:red", lw=1, ls="--", label="actual")
        ax.set_title(f"item {key[0]} @ {key[1]}", fontsize=9)
        ax.tick_params(labelsize=7)
    if len(series):
        axes[0, 0].legend(fontsize=7, ncol=5, loc="upper left")
    fig.suptitle(title or "Quantile forecasts", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(forecasts: pd.DataFrame, actuals: pd.DataFrame, path: Path,
                     quantiles: Sequence[float] = QUANTILES, title: str = "") -> Path:
    """Observed share of actuals at or below each predicted quantile, against the nominal level."""
    plt = _pyplot()
    joined = forecasts.merge(actuals[SERIES + ["timestamp", "target"]], on=SERIES + ["timestamp"])
    observed = [float(np.mean(joined["target"] <= joined[qcol(q)])) if len(joined) else np.nan for q in quantiles]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect")
    ax.plot(quantiles, observed, marker="o", label="observed")
    ax.set_xlabel("nominal quantile level")
    ax.set_ylabel("share of actuals <= forecast quantile")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title or "Quantile calibration", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
