"""Pictures an analyst reads faster than tables: convergence of the decomposition and facility load."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def convergence(history: list[dict], path: Path, title: str = "Lagrangian decomposition") -> Path:
    """Dual bound and master (primal) objective per iteration, with the recovered plan's cost."""
    plt = _plt()
    rows = [h for h in history if not h.get("recovered")]
    its = [h["iteration"] for h in rows]
    fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 4))
    ax.plot(its, [h["objective"] for h in rows], "o-", ms=3, label="restricted master (upper bound)")
    ax.plot(its, [h["bound"] for h in rows], "s-", ms=3, alpha=0.6, label="L(lambda) this iteration")
    ax.plot(its, [h["best_bound"] for h in rows], "-", lw=2, label="best dual bound")
    final = [h for h in history if h.get("recovered")]
    if final:
        ax.axhline(final[-1]["objective"], color="k", ls="--", lw=1, label="recovered plan (feasible)")
        ax.axhline(final[-1]["bound"], color="g", ls=":", lw=1, label="final bound")
    finite = [h["bound"] for h in rows if np.isfinite(h["bound"])]
    if finite and rows:
        top = max(h["objective"] for h in rows)
        low = np.percentile(finite, 20)
        ax.set_ylim(low - 0.05 * abs(top - low), top + 0.05 * abs(top - low))
    ax.set_xlabel("iteration"), ax.set_ylabel("expected cost ($)"), ax.set_title(title)
    ax.legend(fontsize=8)
    gaps = [max(h["gap"], 1e-9) for h in rows]
    gx.semilogy(its, gaps, "o-", ms=3, label="per iteration")
    if final:
        # the final gap: the recovered plan against the final bound (tightened after the loop on large instances)
        gx.semilogy([final[-1]["iteration"]], [max(final[-1]["gap"], 1e-9)], "k*", ms=10,
                    label=f"final: {final[-1]['gap']:.2%}")
        gx.legend(fontsize=8)
    gx.set_xlabel("iteration"), gx.set_ylabel("relative gap (master - bound) / master"), gx.set_title("gap")
    gx.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def utilisation(prices, path: Path) -> Path:
    """Storage and flow utilisation per facility, labelled with the shadow price of each capacity.
    `prices`: the capacity_prices frame (facility_id, resource, shadow_price, utilisation)."""
    plt = _plt()
    facilities = sorted(prices["facility_id"].unique())
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(facilities) + 2), 4))
    width = 0.4
    for j, (resource, colour) in enumerate((("storage", "tab:blue"), ("flow", "tab:orange"))):
        part = prices[prices["resource"] == resource].set_index("facility_id").reindex(facilities)
        xs = np.arange(len(facilities)) + (j - 0.5) * width
        ax.bar(xs, part["utilisation"].fillna(0), width, color=colour, label=resource)
        for x, util, price in zip(xs, part["utilisation"].fillna(0), part["shadow_price"].fillna(0)):
            if price > 1e-9:
                ax.text(x, util + 0.02, f"${price:.2f}", ha="center", fontsize=7, rotation=90)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xticks(np.arange(len(facilities)), facilities, rotation=45)
    ax.set_ylim(0, 1.35)
    ax.set_ylabel("utilisation of capacity"), ax.set_title("Capacity utilisation (labels: shadow price)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def simulation(comparison, path: Path) -> Path:
    """Shipping cost, on-time share, lost sales and holding for the optimised plan and the baselines:
    `comparison` one row per policy, or the long summary of `simulate.summarise` (then with 95% intervals)."""
    plt = _plt()
    metrics = [("shipping_cost", "shipping cost ($)"), ("on_time_share", "orders meeting their promise"),
               ("lost_units", "lost sales (units)"), ("holding_cost", "holding cost on hand ($)"),
               ("total_cost", "total cost ($)")]
    long = "metric" in comparison.columns
    policies = list(dict.fromkeys(comparison["policy"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(16, 3.6))
    colours = ["tab:green", "tab:gray", "tab:purple", "tab:orange", "tab:blue", "tab:red"]
    for ax, (key, label) in zip(axes, metrics):
        if long:
            part = comparison[comparison["metric"] == key].set_index("policy").reindex(policies)
            ax.bar(policies, part["mean"], yerr=part["half_width"], capsize=4, color=colours[:len(policies)])
        else:
            ax.bar(policies, comparison[key], color=colours[:len(policies)])
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
