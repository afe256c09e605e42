"""Membership plots: each stage's loss curve, estimated vs true reward, plan shares under each scenario."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def loss_curves(losses: dict):
    figure, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3))
    for ax, (stage, values) in zip(np.atleast_1d(axes), losses.items()):
        ax.plot(values)
        ax.set_yscale("log")
        ax.set_title(f"{stage} stage loss")
        ax.set_xlabel("gradient step")
    figure.tight_layout()
    return figure


def reward_scatter(estimate: np.ndarray, truth: np.ndarray):
    """Member actions' reward, estimated against true, over held-out visits."""
    figure, ax = plt.subplots(figsize=(4.5, 4.5))
    for a, name in ((1, "monthly"), (2, "annual")):
        ax.scatter(truth[:, a], estimate[:, a], s=3, alpha=0.3, label=name)
    lo, hi = float(truth[:, 1:].min()), float(truth[:, 1:].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("true reward")
    ax.set_ylabel("estimated reward (Deep PQR)")
    ax.legend()
    figure.tight_layout()
    return figure


def shares_plot(frame: pd.DataFrame):
    """Share of each plan over the months, one panel per scenario (the segments' mean):
    estimate solid, truth dashed."""
    scenarios = list(dict.fromkeys(frame["scenario"]))
    figure, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.2), sharey=True, squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        mine = frame[frame["scenario"] == scenario]
        for plan, color in (("annual", "C0"), ("monthly", "C1"), ("none", "C2")):
            p = mine[mine["plan"] == plan].groupby("month")[["share", "share_true"]].mean()
            ax.plot(range(len(p)), p["share"], color=color, label=plan)
            if p["share_true"].notna().any():
                ax.plot(range(len(p)), p["share_true"], color=color, ls="--")
        ax.set_title(scenario)
        ax.set_xlabel("month ahead")
    axes[0][0].set_ylabel("share (dashed: truth)")
    axes[0][0].legend()
    figure.tight_layout()
    return figure
