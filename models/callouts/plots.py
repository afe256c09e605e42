"""Plots an analyst would rather look at than read: posteriors per callout, regret curves, OPE intervals."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402


def posterior_plot(post: pd.DataFrame, path: Path, title: str, max_callouts: int = 12) -> Path:
    """Beta posterior densities of the callouts of each segment (one panel per segment)."""
    segments = sorted(post["segment"].unique())
    cols = min(3, len(segments))
    rows = int(np.ceil(len(segments) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    upper = float(min(1.0, np.quantile(stats.beta.ppf(0.995, post["alpha"], post["beta"]), 0.95) * 1.3))
    x = np.linspace(0, upper, 400)
    for ax, segment in zip(axes.flat, segments):
        rows_ = post[post["segment"] == segment].sort_values("mean", ascending=False).head(max_callouts)
        for _, r in rows_.iterrows():
            ax.plot(x, stats.beta.pdf(x, r["alpha"], r["beta"]), lw=1.2,
                    label=f"{r['callout_id']} ({int(r['impressions'])} imp)")
        ax.set_title(segment, fontsize=10)
        ax.set_xlabel("click rate")
        ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[len(segments):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def regret_plot(frame: pd.DataFrame, path: Path) -> Path:
    """Cumulative regret, new-callout regret and daily click rate per policy over impressions."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for name, rows in frame.groupby("policy"):
        axes[0].plot(rows["cumulative_impressions"], rows["cumulative_regret"], label=name)
        axes[1].plot(rows["cumulative_impressions"], rows["cumulative_new_callout_regret"], label=name)
        axes[2].plot(rows["cumulative_impressions"], rows["click_rate"].rolling(5, min_periods=1).mean(), label=name)
    for ax, title in zip(axes, ["cumulative regret (clicks lost)", "regret spent on new callouts",
                                "click rate (5-day rolling)"]):
        ax.set_title(title)
        ax.set_xlabel("impressions")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def ope_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Estimates with bootstrap intervals per policy and estimator."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.5))
    labels = [f"{r.policy} / {r.estimator}" for r in table.itertuples()]
    y = np.arange(len(table))
    ax.errorbar(table["value"], y, xerr=[table["value"] - table["ci_low"], table["ci_high"] - table["value"]],
                fmt="o", capsize=3)
    ax.set_yticks(y, labels)
    ax.set_xlabel("estimated click rate (95% bootstrap interval)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
