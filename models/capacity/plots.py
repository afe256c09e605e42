"""The round as a picture: per storage type, the demand curve (cubic feet requested at or above each
fee, highest fee first), the supply (program capacity), the clearing price and what was granted."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd


def curve_plot(grants: pd.DataFrame, pools: pd.DataFrame, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(pools), 1), figsize=(5.5 * max(len(pools), 1), 4.2), squeeze=False)
    for ax, pool in zip(axes[0], pools.itertuples()):
        mine = grants[grants["storage_type"] == pool.storage_type] if pool.storage_type in set(grants["storage_type"]) else grants
        mine = mine.sort_values("max_fee_per_cuft", ascending=False)
        fees = mine["max_fee_per_cuft"].to_numpy()
        demand = np.cumsum(mine["cuft_requested"].to_numpy())
        allocated = np.cumsum(mine["cuft_granted"].to_numpy())
        if len(fees):
            ax.step(np.r_[0, demand], np.r_[fees[0], fees], where="pre", color="tab:blue", label="demand (requests)")
            ax.step(np.r_[0, allocated], np.r_[fees[0], fees], where="pre", color="tab:green", lw=2.5, alpha=0.6,
                    label="allocation")
        ax.axvline(pool.capacity_cuft, color="tab:red", ls="--", label=f"supply {pool.capacity_cuft:,.0f} cuft")
        if not math.isnan(pool.clearing_price):
            ax.axhline(pool.clearing_price, color="black", lw=0.8, label=f"clearing price ${pool.clearing_price:,.2f}")
        ax.set_xlabel("cubic feet (cumulative, highest fee first)")
        ax.set_ylabel("max fee per cubic foot ($)")
        ax.set_title(f"{pool.storage_type}: {pool.granted_cuft:,.0f} of {pool.requested_cuft:,.0f} cuft granted "
                     f"(fill {pool.fill_ratio:.0%})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title or "Capacity round", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
