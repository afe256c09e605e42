"""From matured logs to a serving table: P(callout, layout | segment) for each candidate method.

    flat_ts     Bernoulli Thompson sampling per (segment, callout), Beta(1, 1) priors (the baseline)
    meta_ts     the same with empirical-Bayes meta-priors per (segment, callout family)
    contextual  Thompson sampling on a Bayesian logistic model of segment x callout attributes
The layout is chosen independently of the method (one interaction model shared by all, layouts.py):
P(callout, layout | segment) = P(callout | segment) * P(layout).
"""
from __future__ import annotations

import pandas as pd

from echelon.models.callouts import bandits, layouts
from echelon.models.callouts.contextual import ContextualTS
from echelon.catalog.callouts import COMPONENTS, all_layouts

METHODS = ("flat_ts", "meta_ts", "contextual")
SERVING_COLUMNS = ["segment", "callout_id", "layout_id", "probability"]


def callout_counts(logs: pd.DataFrame, arms: pd.DataFrame) -> pd.DataFrame:
    """arms (segment, callout_id, family, value) with matured impressions and clicks (0 when unseen)."""
    counts = (logs.groupby(["segment", "callout_id"], as_index=False)
              .agg(impressions=("click", "size"), clicks=("click", "sum")))
    out = arms.merge(counts, on=["segment", "callout_id"], how="left")
    return out.fillna({"impressions": 0, "clicks": 0}).astype({"impressions": int, "clicks": int})


def callout_probabilities(method: str, logs: pd.DataFrame, arms: pd.DataFrame, seed: int = 0,
                          epsilon: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(P(callout | segment) per arm, the posterior frame for plots)."""
    counts = callout_counts(logs, arms)
    if method in ("flat_ts", "meta_ts"):
        post = bandits.posteriors(counts, prior="flat" if method == "flat_ts" else "meta")
        return bandits.serving_probabilities(post, epsilon, seed=seed), post
    if method == "contextual":
        seen = counts[counts["impressions"] > 0]
        segments = sorted(arms["segment"].unique())
        families = sorted(arms["family"].unique())
        if seen.empty:
            served = counts.assign(probability=1.0 / counts.groupby("segment")["callout_id"].transform("size"))
            return served, counts
        model = ContextualTS(segments, families).fit(seen)
        served = model.serving(counts, epsilon, seed=seed)
        return served, counts.assign(mean=model.mean_rate(counts))
    raise ValueError(f"unknown policy method {method!r}; choose from {METHODS}")


def layout_probabilities(logs: pd.DataFrame, layout_ids: list[str] | None = None, seed: int = 0,
                         epsilon: float = 0.05, draws: int = 300) -> pd.DataFrame:
    """P(layout) from the interaction model fit on the logs (uniform when there are no logs)."""
    grid = all_layouts()
    if layout_ids is not None:
        grid = grid[grid["layout_id"].isin(layout_ids)]
    known = logs[logs["layout_id"].isin(grid["layout_id"])]
    if known.empty or len(grid) < len(all_layouts()):   # real logs without our components: no model
        ids = sorted(set(layout_ids or grid["layout_id"]))
        return pd.DataFrame({"layout_id": ids, "layout_probability": 1.0 / len(ids)})
    cells = known.groupby("layout_id", as_index=False).agg(impressions=("click", "size"), clicks=("click", "sum"))
    cells = cells.merge(grid, on="layout_id")
    sizes = tuple(COMPONENTS.values())
    post = layouts.fit(cells[list(COMPONENTS)].to_numpy(), cells["impressions"], cells["clicks"], sizes)
    ids = {tuple(row[list(COMPONENTS)]): row["layout_id"] for _, row in grid.iterrows()}
    probs = layouts.layout_probabilities(post, sizes, ids, draws=draws, seed=seed, epsilon=epsilon)
    return pd.DataFrame({"layout_id": probs.index, "layout_probability": probs.to_numpy()})


def serving_table(method: str, logs: pd.DataFrame, catalog: pd.DataFrame, segments: list[str],
                  seed: int = 0, layout_ids: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(serving table over every segment x catalog callout x layout, callout posterior frame)."""
    arms = pd.MultiIndex.from_product([sorted(segments), catalog["callout_id"]], names=["segment", "callout_id"])
    arms = arms.to_frame(index=False).merge(catalog[["callout_id", "family", "value"]], on="callout_id")
    callouts, post = callout_probabilities(method, logs, arms, seed)
    lay = layout_probabilities(logs, layout_ids, seed)
    table = callouts[["segment", "callout_id", "probability"]].merge(lay, how="cross")
    table["probability"] = table["probability"] * table["layout_probability"]
    # exact normalisation per segment: Monte Carlo frequencies already sum to 1, this removes rounding
    table["probability"] /= table.groupby("segment")["probability"].transform("sum")
    return table[SERVING_COLUMNS].sort_values(SERVING_COLUMNS[:3]).reset_index(drop=True), post


def expected_rate(table: pd.DataFrame, truth: pd.DataFrame, weights: dict) -> float:
    """The true click rate of a serving table in the synthetic world (truth: segment, callout_id,
    layout_id, rate; weights: segment -> traffic share)."""
    merged = table.merge(truth, on=["segment", "callout_id", "layout_id"], how="left").fillna({"rate": 0.0})
    per_segment = (merged["probability"] * merged["rate"]).groupby(merged["segment"]).sum()
    return float(sum(weights.get(s, 0.0) * v for s, v in per_segment.items()) / max(
        sum(weights.get(s, 0.0) for s in per_segment.index), 1e-12))


def best_rate(truth: pd.DataFrame, weights: dict) -> float:
    best = truth.groupby("segment")["rate"].max()
    return float(sum(weights[s] * v for s, v in best.items()) / sum(weights[s] for s in best.index))

