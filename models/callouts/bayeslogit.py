"""Bayesian logistic regression with a Gaussian (Laplace) posterior, fit on aggregated counts.

Rows are distinct feature vectors with `trials` and `successes` (a binomial likelihood), so a day of
millions of impressions over a few thousand (segment, callout, layout) cells costs a few thousand rows.
Thompson sampling draws weights from N(mean, cov) and scores every arm with the draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special


@dataclass(frozen=True)
class GaussianPosterior:
    mean: np.ndarray
    cov: np.ndarray

    @cached_property
    def chol(self) -> np.ndarray:
        return np.linalg.cholesky(self.cov + 1e-10 * np.eye(len(self.mean)))

    def sample(self, draws: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.standard_normal((draws, len(self.mean))) @ self.chol.T


def fit(X, trials, successes, prior_var, prior_mean=None, iterations: int = 50,
        tol: float = 1e-8) -> GaussianPosterior:
    """MAP by Newton's method, covariance = inverse Hessian at the MAP (Laplace approximation).

    prior_var: one variance per weight (or a scalar): wide for intercepts, narrower for interactions."""
    X = np.asarray(X, float)
    n = np.asarray(trials, float)
    k = np.asarray(successes, float)
    d = X.shape[1]
    prior_prec = 1.0 / np.broadcast_to(np.asarray(prior_var, float), (d,))
    m0 = np.zeros(d) if prior_mean is None else np.asarray(prior_mean, float)
    w = m0.copy()
    for _ in range(iterations):
        p = special.expit(X @ w)
        grad = X.T @ (k - n * p) - prior_prec * (w - m0)
        hess = (X * (n * p * (1 - p))[:, None]).T @ X + np.diag(prior_prec)
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.max(np.abs(step)) < tol:
            break
    p = special.expit(X @ w)
    hess = (X * (n * p * (1 - p))[:, None]).T @ X + np.diag(prior_prec)
    return GaussianPosterior(w, np.linalg.inv(hess))


def log_evidence(X, trials, successes, prior_var, post: GaussianPosterior, prior_mean=None) -> float:
    """Laplace approximation of log p(clicks | prior variances), up to terms that do not depend on the
    prior (the binomial coefficients): log-likelihood at the MAP + log prior density at the MAP
    + (d/2) log 2 pi + 1/2 log |posterior covariance|. Compares prior variances (empirical Bayes)."""
    X = np.asarray(X, float)
    n = np.asarray(trials, float)
    k = np.asarray(successes, float)
    d = X.shape[1]
    var = np.broadcast_to(np.asarray(prior_var, float), (d,))
    m0 = np.zeros(d) if prior_mean is None else np.asarray(prior_mean, float)
    logit = X @ post.mean
    loglik = float(np.sum(k * logit - n * np.logaddexp(0.0, logit)))
    log_prior = float(-0.5 * np.sum(np.log(var)) - 0.5 * np.sum((post.mean - m0) ** 2 / var))
    return loglik + log_prior + 0.5 * float(np.linalg.slogdet(post.cov)[1])
