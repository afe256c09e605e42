"""Bayesian parts of the callouts domain: conjugate updates, empirical-Bayes priors, contextual fit,
layout search, and the meta-prior's advantage on new callouts in a seeded simulation.

Cost: the empirical-Bayes fits (scipy L-BFGS-B) call OpenBLAS, whose two threads per call fight over a
loaded 2-core machine: the simulation ran ~3.5x slower than on one thread (24 s vs 7 s), so this module
runs its numerics on one BLAS thread (threadpoolctl; restored afterwards). The regret simulation is 10 days
of 400 shoppers (the meta-prior spends 0.18x the flat prior's new-callout regret and 0.74x its total;
seeds 6-8 give 0.18-0.29 and 0.79-0.97, so the bounds below are not one seed's luck)."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import special
from threadpoolctl import threadpool_limits

from echelon.models.callouts import bandits, bayeslogit, layouts
from echelon.models.callouts.simulate import run_policy
from echelon.jobs.callouts.world import make_world


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def test_posterior_update_matches_the_conjugate_formula():
    alpha, beta = bandits.beta_posterior([1.0, 2.5], [1.0, 40.0], clicks=[3, 0], impressions=[10, 7])
    assert alpha.tolist() == [4.0, 2.5] and beta.tolist() == [8.0, 47.0]
    post = bandits.posteriors(pd.DataFrame({"segment": "s", "callout_id": ["a"], "family": "f",
                                            "impressions": [50], "clicks": [5]}), prior="flat")
    assert post.loc[0, "alpha"] == 6 and post.loc[0, "beta"] == 46 and post.loc[0, "mean"] == pytest.approx(6 / 52)
    with pytest.raises(ValueError, match="clicks must lie"):
        bandits.beta_posterior(1, 1, clicks=[5], impressions=[3])


def test_empirical_bayes_recovers_known_hyperparameters():
    rng = np.random.default_rng(3)
    a, b = 3.0, 60.0                                   # mean 0.048, strength 63
    rates = rng.beta(a, b, size=400)
    n = rng.integers(500, 3000, size=400)
    prior = bandits.fit_meta_prior(rng.binomial(n, rates), n)
    assert prior.mean == pytest.approx(a / (a + b), rel=0.05)
    assert prior.strength == pytest.approx(a + b, rel=0.3)


def test_thompson_probabilities_favour_the_better_arm_and_sum_to_one():
    p = bandits.thompson_probabilities([50, 5, 1], [950, 95, 1], draws=20000, rng=np.random.default_rng(0))
    assert p.sum() == pytest.approx(1.0)
    assert p[2] > 0.4                                  # Beta(1,1): the unexplored arm is wildly optimistic
    assert p[0] < 0.2


def test_bayesian_logistic_recovers_weights():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(200), rng.normal(size=(200, 2))])
    w = np.array([-2.0, 0.8, -0.5])
    n = np.full(200, 400)
    k = rng.binomial(n, special.expit(X @ w))
    post = bayeslogit.fit(X, n, k, prior_var=100.0)
    assert np.allclose(post.mean, w, atol=0.1)
    assert np.all(np.abs(post.mean - w) < 4 * np.sqrt(np.diag(post.cov)))


def test_hill_climbing_finds_the_best_layout_of_a_known_interaction_model():
    sizes = (3, 2, 4, 2)
    rng = np.random.default_rng(5)
    grid = np.array(list(itertools.product(*[range(k) for k in sizes])))
    exact = 0
    for trial in range(20):
        # main effects stronger than pairwise interactions, as in the synthetic world (0.2 vs 0.15)
        weights = np.sqrt(layouts.prior_variance(sizes)) * rng.normal(0, 0.2, layouts.prior_variance(sizes).shape)
        truth = layouts.features(grid, sizes) @ weights
        found, score, _ = layouts.hill_climb(weights, sizes, rng, restarts=6)
        assert score == pytest.approx(float((layouts.features(np.array(found), sizes) @ weights)[0]))
        assert score >= truth.max() - 0.05, f"trial {trial}: stuck far from the best layout"
        exact += tuple(grid[truth.argmax()]) == found
    assert exact >= 18   # coordinate ascent can stop at a local optimum; restarts make that rare


def test_layout_search_learns_the_best_layout_from_a_subset():
    sizes = (3, 2, 4, 2)
    rng = np.random.default_rng(11)
    weights = np.concatenate([[special.logit(0.04)], rng.normal(0, 0.15, len(layouts.prior_variance(sizes)) - 1)])
    rate = lambda levels: float(special.expit(layouts.features(np.array(levels), sizes) @ weights)[0])  # noqa: E731
    grid = list(itertools.product(*[range(k) for k in sizes]))
    best = max(rate(g) for g in grid)
    result = layouts.search(rate, sizes, budget=20000, batch=2000, seed=2)
    assert rate(result["best"]) >= 0.98 * best


def test_layout_prior_variances_are_learned_from_the_data():
    """Empirical Bayes picks the smallest interaction variance when the components do not interact, and a
    large one when they do (48 layouts x 20,000 impressions each)."""
    sizes = (3, 2, 4, 2)
    grid = np.array(list(itertools.product(*[range(k) for k in sizes])))
    rng = np.random.default_rng(3)
    shown = np.full(len(grid), 20000)
    chosen = {}
    for pair_sd in (0.0, 0.4):
        var = layouts.prior_variance(sizes, 0.16, pair_sd ** 2)
        weights = np.sqrt(var) * rng.standard_normal(len(var))
        weights[0] = special.logit(0.05)
        clicks = rng.binomial(shown, special.expit(layouts.features(grid, sizes) @ weights))
        chosen[pair_sd] = layouts.fit_eb(grid, shown, clicks, sizes)[1]
    assert chosen[0.0][1] == min(layouts.PAIR_GRID) and chosen[0.0][0] >= 0.04
    assert chosen[0.4][1] >= 0.04


def test_meta_prior_spends_less_regret_on_new_callouts_than_flat_priors():
    world = make_world(seed=5, days=10, launch_every=2)
    flat = run_policy(world, "flat_ts", days=10, per_day=400, seed=5)
    meta = run_policy(world, "meta_ts", days=10, per_day=400, seed=5)
    assert meta["new_callout_regret"].sum() < 0.6 * flat["new_callout_regret"].sum()
    assert meta["regret"].sum() < flat["regret"].sum()
