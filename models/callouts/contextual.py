"""Contextual Thompson sampling: Bayesian logistic regression on segment features x callout attributes.

Design of one arm (segment s, callout c):
    intercept, segment one-hot, family one-hot, segment x family, segment x value, callout one-hot.
The callout one-hot is a random effect with a narrow prior: a new callout has no data on its own weight, so
its score comes from its family and value (what similar callouts earned), not from a zero weight that
would drag it to the global mean; as its own data arrives its weight moves away from zero.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from echelon.models.callouts import bayeslogit

PRIOR_VAR = {"intercept": 25.0, "segment": 1.0, "family": 1.0, "segment_family": 0.5, "segment_value": 0.5,
             "callout": 0.25}


def design(arms: pd.DataFrame, segments: list[str], families: list[str], callouts: list[str]):
    """Feature matrix of arms (segment, callout_id, family, value) and the prior variance of each column."""
    n = len(arms)
    seg = pd.Categorical(arms["segment"], categories=segments).codes
    fam = pd.Categorical(arms["family"], categories=families).codes
    cal = pd.Categorical(arms["callout_id"], categories=callouts).codes
    S, F, C = len(segments), len(families), len(callouts)
    blocks, variances = [np.ones((n, 1))], [[PRIOR_VAR["intercept"]]]

    def onehot(codes, width):
        m = np.zeros((n, width))
        ok = codes >= 0   # an unseen category (e.g. a callout launched after the fit) gets no column
        m[np.flatnonzero(ok), codes[ok]] = 1.0
        return m

    s1, f1 = onehot(seg, S), onehot(fam, F)
    sf = (s1[:, :, None] * f1[:, None, :]).reshape(n, S * F)
    sv = s1 * arms["value"].to_numpy(float)[:, None]
    for name, block in (("segment", s1), ("family", f1), ("segment_family", sf), ("segment_value", sv),
                        ("callout", onehot(cal, C))):
        blocks.append(block)
        variances.append([PRIOR_VAR[name]] * block.shape[1])
    return np.hstack(blocks), np.concatenate(variances)


class ContextualTS:
    """Fit on aggregated counts per (segment, callout); serve Thompson probabilities per segment."""

    def __init__(self, segments: list[str], families: list[str]):
        self.segments, self.families = list(segments), list(families)
        self.callouts: list[str] = []
        self.posterior: bayeslogit.GaussianPosterior | None = None

    def fit(self, counts: pd.DataFrame) -> "ContextualTS":
        """counts: segment, callout_id, family, value, impressions, clicks."""
        self.callouts = sorted(counts["callout_id"].unique())
        X, var = design(counts, self.segments, self.families, self.callouts)
        self.posterior = bayeslogit.fit(X, counts["impressions"], counts["clicks"], var)
        return self

    def mean_rate(self, arms: pd.DataFrame) -> np.ndarray:
        from scipy import special

        X, _ = design(arms, self.segments, self.families, self.callouts)
        return special.expit(X @ self.posterior.mean)

    def sample_scores(self, arms: pd.DataFrame, draws: int, rng: np.random.Generator) -> np.ndarray:
        """(draws, arms) log-odds under weights drawn from the posterior."""
        X, _ = design(arms, self.segments, self.families, self.callouts)
        return self.posterior.sample(draws, rng) @ X.T

    def serving(self, arms: pd.DataFrame, epsilon: float = 0.05, draws: int = 2000, seed: int = 0) -> pd.DataFrame:
        """arms: every (segment, callout_id, family, value) to serve; adds `probability` per segment."""
        rng = np.random.default_rng(seed)
        scores = self.sample_scores(arms, draws, rng)
        arms = arms.reset_index(drop=True).copy()
        arms["probability"] = 0.0
        for _, rows in arms.groupby("segment"):
            idx = rows.index.to_numpy()
            wins = np.bincount(scores[:, idx].argmax(axis=1), minlength=len(idx)) / draws
            arms.loc[idx, "probability"] = (1 - epsilon) * wins + epsilon / len(idx)
        return arms
