"""Layouts: a Bayesian logistic model with main effects and pairwise interactions between the layout
components (headline, body, image, reviews), searched by hill climbing.

With components of sizes (3, 2, 4, 2) there are 48 layouts but only 11 main-effect levels and 49 pairwise
cells: the model learns from a small subset of the combinations and generalises to the rest. Thompson
sampling draws one weight vector, and hill climbing (change one component at a time to its best level
given the others, repeat until nothing improves, from a few random starts) finds that draw's best layout
without scoring every combination, which matters when components multiply into thousands of layouts.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from echelon.models.callouts import bayeslogit

MAIN_VAR, PAIR_VAR, INTERCEPT_VAR = 1.0, 0.25, 25.0


def features(levels: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Rows of component levels -> [1, one-hot main effects, one-hot pairwise cells]."""
    levels = np.atleast_2d(levels)
    n = len(levels)
    cols = [np.ones((n, 1))]
    for i, k in enumerate(sizes):
        cols.append(np.eye(k)[levels[:, i]])
    for i, j in itertools.combinations(range(len(sizes)), 2):
        cols.append(np.eye(sizes[i] * sizes[j])[levels[:, i] * sizes[j] + levels[:, j]])
    return np.hstack(cols)


def prior_variance(sizes: tuple[int, ...]) -> np.ndarray:
    mains = sum(sizes)
    pairs = sum(a * b for a, b in itertools.combinations(sizes, 2))
    return np.concatenate([[INTERCEPT_VAR], np.full(mains, MAIN_VAR), np.full(pairs, PAIR_VAR)])


def fit(levels: np.ndarray, impressions, clicks, sizes: tuple[int, ...]) -> bayeslogit.GaussianPosterior:
    """Posterior over the interaction model's weights from (layout levels, impressions, clicks) rows."""
    return bayeslogit.fit(features(levels, sizes), impressions, clicks, prior_variance(sizes))


def hill_climb(weights: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator, restarts: int = 3,
               max_rounds: int = 20) -> tuple[tuple[int, ...], float, int]:
    """Best layout under `weights` by coordinate ascent from random starts.
    Returns (levels, score, number of layouts scored)."""
    best, best_score, scored = None, -np.inf, 0
    for _ in range(restarts):
        current = np.array([rng.integers(k) for k in sizes])
        for _ in range(max_rounds):
            changed = False
            for i, k in enumerate(sizes):
                options = np.repeat(current[None, :], k, axis=0)
                options[:, i] = np.arange(k)
                scores = features(options, sizes) @ weights
                scored += k
                pick = int(scores.argmax())
                if pick != current[i]:
                    current[i], changed = pick, True
            if not changed:
                break
        score = float((features(current, sizes) @ weights)[0])
        if score > best_score:
            best, best_score = tuple(int(x) for x in current), score
    return best, best_score, scored


def thompson_layout(post: bayeslogit.GaussianPosterior, sizes, rng, restarts: int = 3):
    """One Thompson step: draw weights, hill-climb to that draw's best layout."""
    return hill_climb(post.sample(1, rng)[0], sizes, rng, restarts)[0]


def layout_probabilities(post: bayeslogit.GaussianPosterior, sizes, layout_ids: dict, draws: int = 500,
                         seed: int = 0, epsilon: float = 0.05) -> pd.Series:
    """P(layout is chosen by a Thompson draw + hill climb), floored by epsilon over every layout.
    layout_ids maps a levels tuple to its id."""
    rng = np.random.default_rng(seed)
    wins = {lid: 0 for lid in layout_ids.values()}
    for _ in range(draws):
        wins[layout_ids[thompson_layout(post, sizes, rng)]] += 1
    probs = pd.Series(wins, dtype=float) / draws
    return (1 - epsilon) * probs + epsilon / len(probs)


def search(true_rate, sizes: tuple[int, ...], budget: int, batch: int = 500, seed: int = 0,
           draws_per_batch: int = 25) -> dict:
    """Simulated layout search: each batch is split among `draws_per_batch` Thompson draws (each
    hill-climbed to its best layout), clicks come from `true_rate(levels)`, and the model is refit after
    every batch. Returns the final best layout (posterior mean, hill climbed) and the impressions used."""
    rng = np.random.default_rng(seed)
    counts: dict[tuple, list] = {}
    post = None
    used = 0
    while used < budget:
        share = batch // draws_per_batch
        for _ in range(draws_per_batch):
            levels = tuple(int(rng.integers(k)) for k in sizes) if post is None else thompson_layout(post, sizes, rng, 2)
            cell = counts.setdefault(levels, [0, 0])
            cell[0] += share
            cell[1] += int(rng.binomial(share, true_rate(levels)))
        used += share * draws_per_batch
        keys = list(counts)
        post = fit(np.array(keys), [counts[k][0] for k in keys], [counts[k][1] for k in keys], sizes)
    levels, _, _ = hill_climb(post.mean, sizes, rng, restarts=8)
    return {"best": levels, "impressions": used, "layouts_tried": len(counts)}
