"""Off-policy evaluation: the click rate a target policy would get, estimated from logs of another.

Logs: one row per impression with the context keys, the logged action, `reward` (0/1) and `propensity`
(the logging policy's probability of that action). A target policy is a table of probabilities over
actions per context: key columns + `probability`. Estimators (Dudik et al. 2011; Swaminathan & Joachims
2015):
    DM     mean_i sum_a pi(a|x_i) q(x_i, a)
    IPW    mean_i w_i r_i,                      w_i = pi(a_i|x_i) / p_i
    SNIPW  sum_i w_i r_i / sum_i w_i
    DR     DM + mean_i w_i (r_i - q(x_i, a_i))
with q a reward model. Confidence intervals by the bootstrap over impressions (the reward model is kept
fixed, so the interval covers sampling noise of the logs, not the reward model's own fitting noise).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

ESTIMATORS = ("dm", "ipw", "snipw", "dr")


class OPEError(ValueError):
    """Logs or policy that cannot be evaluated (missing columns, bad propensities, no support)."""


def check_logs(logs: pd.DataFrame, keys: list[str]) -> None:
    missing = [c for c in keys + ["reward", "propensity"] if c not in logs.columns]
    if missing:
        raise OPEError(f"logs lack columns {missing}; they have {list(logs.columns)}")
    if logs.empty:
        raise OPEError("no logged impressions to evaluate on")
    p = logs["propensity"]
    bad = logs[p.isna() | (p <= 0) | (p > 1)]
    if len(bad):
        raise OPEError(f"{len(bad)} logged propensities outside (0, 1], e.g.\n{bad.head().to_string()}")


def cell_means(logs: pd.DataFrame, keys: list[str], shrink_to: list[str] | None = None,
               strength: float = 20.0) -> pd.DataFrame:
    """A simple reward model: the click rate of each (context, action) cell, shrunk toward the rate of a
    coarser cell (`shrink_to` keys, e.g. the action alone) with `strength` pseudo-impressions."""
    cells = logs.groupby(keys, observed=True)["reward"].agg(["sum", "count"]).reset_index()
    if shrink_to:
        coarse = logs.groupby(shrink_to, observed=True)["reward"].agg(["sum", "count"]).reset_index()
        coarse["prior"] = (coarse["sum"] + logs["reward"].mean() * strength) / (coarse["count"] + strength)
        cells = cells.merge(coarse[shrink_to + ["prior"]], on=shrink_to, how="left")
    else:
        cells["prior"] = logs["reward"].mean()
    cells["q"] = (cells["sum"] + cells["prior"] * strength) / (cells["count"] + strength)
    return cells[keys + ["q"]]


def estimate(logs: pd.DataFrame, policy: pd.DataFrame, context: list[str], action: list[str],
             reward_model: pd.DataFrame | None = None, n_bootstrap: int = 200, alpha: float = 0.05,
             seed: int = 0, default_q: float | None = None) -> pd.DataFrame:
    """Point estimates and bootstrap (1 - alpha) intervals of every estimator.

    policy: context + action keys + probability (rows absent = probability 0).
    reward_model: context + action keys + q; by default `cell_means` of the logs."""
    keys = context + action
    check_logs(logs, keys)
    logs = logs.reset_index(drop=True)
    if reward_model is None:
        reward_model = cell_means(logs, keys, shrink_to=action)
    fallback = float(logs["reward"].mean() if default_q is None else default_q)
    w, r, q_logged, dm_i = _components(logs, policy, context, action, reward_model, fallback)

    def values(weights: np.ndarray) -> dict:
        """Estimator values under resampling weights (rows x counts), vectorised over rows."""
        n = weights.sum(axis=-1)
        dm = weights @ dm_i / n
        ipw = weights @ (w * r) / n
        snipw = (weights @ (w * r)) / np.maximum(weights @ w, 1e-12)
        dr = dm + weights @ (w * (r - q_logged)) / n
        return {"dm": dm, "ipw": ipw, "snipw": snipw, "dr": dr}

    point = values(np.ones(len(logs)))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(logs), np.full(len(logs), 1.0 / len(logs)), size=n_bootstrap).astype(float)
    boot = values(counts)
    rows = []
    for name in ESTIMATORS:
        lo, hi = np.quantile(boot[name], [alpha / 2, 1 - alpha / 2])
        rows.append({"estimator": name, "value": float(point[name]), "ci_low": float(lo), "ci_high": float(hi),
                     "std": float(np.std(boot[name])), "n": len(logs),
                     "mean_weight": float(w.mean()), "max_weight": float(w.max())})
    return pd.DataFrame(rows)


def compare(logs: pd.DataFrame, challenger: pd.DataFrame, champion: pd.DataFrame, context: list[str],
            action: list[str], estimator: str = "dr", n_bootstrap: int = 200, alpha: float = 0.05,
            seed: int = 0) -> dict:
    """Paired bootstrap of (challenger - champion) on the same resampled logs: the promotion evidence.
    The challenger wins with confidence when the lower bound of the difference's interval is above 0."""
    keys = context + action
    reward_model = cell_means(logs, keys, shrink_to=action)
    a = _per_row(logs, challenger, context, action, reward_model, estimator)
    b = _per_row(logs, champion, context, action, reward_model, estimator)
    rng = np.random.default_rng(seed)
    n = len(logs)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)
    diff = counts @ (a - b) / n
    lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    return {"estimator": estimator, "challenger": float(a.mean()), "champion": float(b.mean()),
            "difference": float((a - b).mean()), "ci_low": float(lo), "ci_high": float(hi),
            "confident_win": bool(lo > 0)}


def _components(logs, policy, context, action, reward_model, fallback):
    """Per impression: importance weight w, reward r, q of the logged action, and the DM term."""
    keys = context + action
    # w_i: the target's probability of the logged action, over the logging propensity
    target = logs[keys].merge(policy[keys + ["probability"]], on=keys, how="left")["probability"].fillna(0.0)
    w = target.to_numpy() / logs["propensity"].to_numpy()
    r = logs["reward"].to_numpy(float)
    q_logged = logs[keys].merge(reward_model, on=keys, how="left")["q"].fillna(fallback).to_numpy()
    # DM term per impression: expected q under the target policy in that context
    expected = policy.merge(reward_model, on=keys, how="left")
    expected["q"] = expected["q"].fillna(fallback)
    expected = (expected.assign(pq=expected["probability"] * expected["q"])
                .groupby(context, observed=True)["pq"].sum().rename("dm").reset_index())
    dm_i = logs[context].merge(expected, on=context, how="left")["dm"].to_numpy()
    if np.isnan(dm_i).any():
        missing = logs.loc[np.isnan(dm_i), context].drop_duplicates().head()
        raise OPEError(f"the target policy has no actions for {int(np.isnan(dm_i).sum())} logged contexts, "
                       f"e.g.\n{missing.to_string(index=False)}")
    return w, r, q_logged, dm_i


def _per_row(logs, policy, context, action, reward_model, estimator: str) -> np.ndarray:
    """Per-impression contributions whose mean is the DM, IPW or DR estimate (SNIPW is a ratio: use DR)."""
    logs = logs.reset_index(drop=True)
    w, r, q_logged, dm_i = _components(logs, policy, context, action, reward_model, float(logs["reward"].mean()))
    if estimator == "dm":
        return dm_i
    if estimator == "ipw":
        return w * r
    if estimator == "dr":
        return dm_i + w * (r - q_logged)
    raise OPEError(f"paired comparison supports dm, ipw or dr, not {estimator!r}")
