"""Layouts: a Bayesian logistic model with main effects and pairwise interactions between the layout
components (headline, body, image, reviews), searched by hill climbing.

With components of sizes (3, 2, 4, 2) there are 48 layouts, 11 main-effect levels and 44 pairwise cells.
The pairwise model has more weights than there are layouts, so what lets it learn from a subset of the
combinations is its prior: main effects and interactions are shrunk toward zero with their own variances,
and those variances are learned from the data (empirical Bayes: the pair of variances with the largest
Laplace-approximated marginal likelihood, `fit`). When interactions are small the model pools every
impression of a headline into that headline's main effect, which a 48-arm test cannot do.

Thompson sampling draws one weight vector, and hill climbing (change one component at a time to its best
level given the others, repeat until nothing improves, from a few random starts) finds that draw's best
layout without scoring every combination, which matters when components multiply into thousands of
layouts. The search (`search`) proposes layouts by Thompson sampling; `top_two=True` switches to top-two
Thompson sampling (Russo 2016), the variant meant for finding the best arm rather than for clicks along
the way (half the draws show the sampled leader, the other half the first different layout a fresh draw
prefers). On the benchmark's ten layout worlds it did not beat plain Thompson sampling (it was equal or
a few points behind at every budget, within noise), so plain sampling is the default.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from echelon.models.callouts import bayeslogit

MAIN_VAR, PAIR_VAR, INTERCEPT_VAR = 1.0, 0.25, 25.0
# empirical-Bayes candidates for the variances of main effects and of pairwise interactions (logit scale)
MAIN_GRID = (0.01, 0.04, 0.16, 0.64)
PAIR_GRID = (0.0025, 0.01, 0.04, 0.16)


def columns(levels: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Rows of component levels -> the indices of their non-zero features: [intercept, one main-effect
    column per component, one pairwise cell per pair of components]."""
    levels = np.atleast_2d(np.asarray(levels, int))
    cols = [np.zeros((len(levels), 1), int)]
    offset = 1
    for i, k in enumerate(sizes):
        cols.append(offset + levels[:, i:i + 1])
        offset += k
    for i, j in itertools.combinations(range(len(sizes)), 2):
        cols.append(offset + levels[:, i:i + 1] * sizes[j] + levels[:, j:j + 1])
        offset += sizes[i] * sizes[j]
    return np.hstack(cols)


def features(levels: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Rows of component levels -> [1, one-hot main effects, one-hot pairwise cells]."""
    idx = columns(levels, sizes)
    d = 1 + sum(sizes) + sum(a * b for a, b in itertools.combinations(sizes, 2))
    X = np.zeros((len(idx), d))
    X[np.arange(len(idx))[:, None], idx] = 1.0
    return X


def score(levels: np.ndarray, weights: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Logit of each row of levels under `weights` (= features(levels) @ weights, without the matrix)."""
    return weights[columns(levels, sizes)].sum(axis=1)


def prior_variance(sizes: tuple[int, ...], main_var: float = MAIN_VAR, pair_var: float = PAIR_VAR) -> np.ndarray:
    mains = sum(sizes)
    pairs = sum(a * b for a, b in itertools.combinations(sizes, 2))
    return np.concatenate([[INTERCEPT_VAR], np.full(mains, main_var), np.full(pairs, pair_var)])


def fit(levels: np.ndarray, impressions, clicks, sizes: tuple[int, ...],
        empirical_bayes: bool = True) -> bayeslogit.GaussianPosterior:
    """Posterior over the interaction model's weights from (layout levels, impressions, clicks) rows, with
    the prior variances chosen by empirical Bayes (or the fixed MAIN_VAR, PAIR_VAR)."""
    if not empirical_bayes:
        return bayeslogit.fit(features(levels, sizes), impressions, clicks, prior_variance(sizes))
    return fit_eb(levels, impressions, clicks, sizes)[0]


def fit_eb(levels: np.ndarray, impressions, clicks, sizes: tuple[int, ...], main_grid=MAIN_GRID,
           pair_grid=PAIR_GRID) -> tuple[bayeslogit.GaussianPosterior, tuple[float, float]]:
    """(posterior, (main variance, pair variance)) maximising the Laplace marginal likelihood over the grid."""
    X = features(levels, sizes)
    best, best_evidence, chosen = None, -np.inf, None
    for main_var, pair_var in itertools.product(main_grid, pair_grid):
        var = prior_variance(sizes, main_var, pair_var)
        post = bayeslogit.fit(X, impressions, clicks, var)
        evidence = bayeslogit.log_evidence(X, impressions, clicks, var, post)
        if evidence > best_evidence:
            best, best_evidence, chosen = post, evidence, (main_var, pair_var)
    return best, chosen


def blocks(weights: np.ndarray, sizes: tuple[int, ...]) -> tuple[float, list, dict]:
    """weights -> (intercept, main effects per component, interaction matrix per pair of components)."""
    intercept, offset = float(weights[0]), 1
    mains, pairs = [], {}
    for k in sizes:
        mains.append(weights[offset:offset + k])
        offset += k
    for i, j in itertools.combinations(range(len(sizes)), 2):
        pairs[(i, j)] = weights[offset:offset + sizes[i] * sizes[j]].reshape(sizes[i], sizes[j])
        offset += sizes[i] * sizes[j]
    return intercept, mains, pairs


def hill_climb(weights: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator, restarts: int = 3,
               max_rounds: int = 20) -> tuple[tuple[int, ...], float, int]:
    """Best layout under `weights` by coordinate ascent from random starts: each step sets one component
    to its best level given the others (its main effect plus its interactions with their levels).
    Returns (levels, score, number of layouts scored)."""
    _, mains, pairs = blocks(weights, sizes)
    best, best_score, scored = None, -np.inf, 0
    for _ in range(restarts):
        current = [int(rng.integers(k)) for k in sizes]
        for _ in range(max_rounds):
            changed = False
            for i, k in enumerate(sizes):
                scores = mains[i].copy()
                for j in range(len(sizes)):
                    if j < i:
                        scores += pairs[(j, i)][current[j], :]
                    elif j > i:
                        scores += pairs[(i, j)][:, current[j]]
                scored += k
                pick = int(scores.argmax())
                if pick != current[i]:
                    current[i], changed = pick, True
            if not changed:
                break
        value = float(score(np.array(current), weights, sizes)[0])
        if value > best_score:
            best, best_score = tuple(current), value
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


def propose(post: bayeslogit.GaussianPosterior, sizes, rng: np.random.Generator, top_two: bool = False,
            tries: int = 10) -> tuple[int, ...]:
    """The layout to show next: the leader of a Thompson draw, or (top-two, half the time) the first
    different layout that a further draw prefers."""
    leader = thompson_layout(post, sizes, rng, restarts=2)
    if not top_two or rng.random() < 0.5:
        return leader
    for _ in range(tries):
        challenger = thompson_layout(post, sizes, rng, restarts=2)
        if challenger != leader:
            return challenger
    return leader


def search(true_rate, sizes: tuple[int, ...], budget: int, batch: int = 1000, seed: int = 0,
           draws_per_batch: int = 25, checkpoints=(), top_two: bool = False) -> dict:
    """Simulated layout search: each batch is split among `draws_per_batch` proposals (`propose`), clicks
    come from `true_rate(levels)`, and the model is refit (empirical Bayes) after every batch. The
    recommendation at any point is the layout that is best under the posterior mean (hill climbed).
    Returns the final recommendation, the impressions used, the layouts tried, and the recommendation at
    each of `checkpoints` (impressions) as `picks`."""
    rng = np.random.default_rng(seed)
    counts: dict[tuple, list] = {}
    post = None
    used = 0
    share = max(1, batch // draws_per_batch)
    marks = sorted({int(c) for c in checkpoints if c <= budget} | {int(budget)})
    picks: dict[int, tuple] = {}
    while used < budget:
        for _ in range(draws_per_batch):
            if used >= budget:
                break
            levels = tuple(int(rng.integers(k)) for k in sizes) if post is None else propose(post, sizes, rng, top_two)
            cell = counts.setdefault(levels, [0, 0])
            n = min(share, budget - used)
            cell[0] += n
            cell[1] += int(rng.binomial(n, true_rate(levels)))
            used += n
        keys = list(counts)
        post = fit(np.array(keys), [counts[k][0] for k in keys], [counts[k][1] for k in keys], sizes)
        due = [m for m in marks if m <= used and m not in picks]
        if due:
            best = hill_climb(post.mean, sizes, rng, restarts=8)[0]
            picks.update({m: best for m in due})
    return {"best": picks[marks[-1]], "impressions": used, "layouts_tried": len(counts), "picks": picks}


def uniform_test(true_rate, sizes: tuple[int, ...], checkpoints, seed: int = 0) -> dict:
    """The 48-arm test: impressions split evenly over every layout, the layout with the highest observed
    click rate wins (ties broken at random). Returns the pick at each checkpoint (nested samples: the
    test at 20,000 impressions continues the one at 10,000)."""
    rng = np.random.default_rng(seed)
    grid = list(itertools.product(*[range(k) for k in sizes]))
    rates = np.array([true_rate(g) for g in grid])
    shown, clicked, picks = np.zeros(len(grid)), np.zeros(len(grid)), {}
    for mark in sorted(int(c) for c in checkpoints):
        target = np.full(len(grid), mark // len(grid)) + (np.arange(len(grid)) < mark % len(grid))
        extra = target - shown
        clicked += rng.binomial(extra.astype(int), rates)
        shown = target.astype(float)
        observed = clicked / np.maximum(shown, 1)
        top = np.flatnonzero(observed == observed.max())
        picks[mark] = grid[int(rng.choice(top))]
    return {"picks": picks}
