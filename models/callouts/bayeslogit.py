"""Bayesian logistic regression with a Gaussian (Laplace) posterior, fit on aggregated counts.

Rows are distinct feature vectors with `trials` and `successes` (a binomial likelihood), so a day of
millions of impressions over a few thousand (segment, callout, layout) cells costs a few thousand rows.
Thompson sampling draws weights from N(mean, cov) and scores every arm with the draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special


@dataclass(frozen=True)
class GaussianPosterior:
    mean: np.ndarray
    cov: np.ndarray

    def sample(self, draws: int, rng: np.random.Generator) -> np.ndarray:
        chol = np.linalg.cholesky(self.cov + 1e-10 * np.eye(len(self.mean)))
        return self.mean + rng.standard_normal((draws, len(self.mean))) @ chol.T


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
