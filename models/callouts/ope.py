"""Off-policy evaluation: the click rate a target policy would get, estimated from logs of another.

Logs: one row per impression with the context keys, the logged action, `reward` (0/1) and `propensity`
(the logging policy's probability of that action). A target policy is a table of probabilities over
actions per context: key columns + `probability`. Estimators (Dudik et al. 2011; Swaminathan & Joachims
2015; Wang et al. 2017; Su et al. 2020):
    DM         mean_i sum_a pi(a|x_i) q(x_i, a)
    IPW        mean_i w_i r_i,                      w_i = pi(a_i|x_i) / p_i
    SNIPW      sum_i w_i r_i / sum_i w_i
    DR         DM + mean_i w_i (r_i - q(x_i, a_i))
    SNDR       DM + sum_i w_i (r_i - q(x_i, a_i)) / sum_i w_i   (DR's correction self-normalised)
    Switch-DR  DM + mean_i 1{w_i <= tau} w_i (r_i - q(x_i, a_i))   (the model alone where weights explode)
    DRos       DM + mean_i lam w_i / (w_i^2 + lam) (r_i - q(x_i, a_i))   (weights shrunk toward 0)
with q a reward model: a table of (context, action) -> q (`cell_means`, the default), or a matrix of
predictions per impression and action (`Predictions`, e.g. the logistic model of reward.py).
Switch-DR's tau and DRos's lambda run from the DM (0) to DR (infinity); each is chosen per call by an
estimated mean squared error, variance of the mean + squared bias against DR (unbiased), the squared bias
debiased by the variance of the difference (`tune`). Confidence intervals by the bootstrap over
impressions (the reward model and the tuned hyper-parameters are kept fixed, so the interval covers
sampling noise of the logs, not the reward model's own fitting noise).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

ESTIMATORS = ("dm", "ipw", "snipw", "dr", "sndr", "switch_dr", "dros")


class OPEError(ValueError):
    """Logs or policy that cannot be evaluated (missing columns, bad propensities, no support)."""


@dataclass(frozen=True)
class Predictions:
    """Reward-model predictions for every logged impression and every action: q[i, j] = q(x_i, actions[j]),
    rows aligned with the logs (after reset_index)."""
    actions: pd.DataFrame    # the action key columns, one row per action
    q: np.ndarray            # (impressions, actions)
    models: tuple = ()       # the fitted model(s) behind q (one per cross-fitting fold), for their settings


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
             reward_model: pd.DataFrame | Predictions | None = None, n_bootstrap: int = 200,
             alpha: float = 0.05, seed: int = 0, default_q: float | None = None) -> pd.DataFrame:
    """Point estimates and bootstrap (1 - alpha) intervals of every estimator.

    policy: context + action keys + probability (rows absent = probability 0).
    reward_model: context + action keys + q (by default `cell_means` of the logs), or `Predictions`."""
    keys = context + action
    check_logs(logs, keys)
    logs = logs.reset_index(drop=True)
    if reward_model is None:
        reward_model = cell_means(logs, keys, shrink_to=action)
    fallback = float(logs["reward"].mean() if default_q is None else default_q)
    w, r, q_logged, dm_i = _components(logs, policy, context, action, reward_model, fallback)
    return estimate_arrays(w, r, q_logged, dm_i, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed)


def estimate_arrays(w: np.ndarray, r: np.ndarray, q_logged: np.ndarray, dm_i: np.ndarray,
                    n_bootstrap: int = 200, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Every estimator from its per-impression parts: importance weight w_i, reward r_i, the model's q of
    the logged action and the DM term sum_a pi(a|x_i) q(x_i, a)."""
    w, r, q_logged, dm_i = (np.asarray(a, float) for a in (w, r, q_logged, dm_i))
    residual = r - q_logged
    tau, lam = tune(w, residual, dm_i, "switch_dr"), tune(w, residual, dm_i, "dros")
    # per-row terms of the estimators that are means (SNIPW and SNDR are ratios: their sums travel separately)
    terms = np.column_stack([dm_i, w * r, dm_i + w * residual, _shrunk("switch_dr", tau, w, residual, dm_i),
                             _shrunk("dros", lam, w, residual, dm_i), w * r, w, w * residual])
    linear = ("dm", "ipw", "dr", "switch_dr", "dros")

    def values(counts: np.ndarray) -> dict:
        """Estimator values under resampling counts (samples x rows), vectorised over rows."""
        sums = counts @ terms
        n = counts.sum(axis=-1)
        out = {name: sums[..., k] / n for k, name in enumerate(linear)}
        out["snipw"] = sums[..., 5] / np.maximum(sums[..., 6], 1e-12)
        out["sndr"] = sums[..., 0] / n + sums[..., 7] / np.maximum(sums[..., 6], 1e-12)
        return out

    point = values(np.ones(len(r)))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(r), np.full(len(r), 1.0 / len(r)), size=n_bootstrap).astype(float)
    boot = values(counts)
    rows = []
    for name in ESTIMATORS:
        lo, hi = np.quantile(boot[name], [alpha / 2, 1 - alpha / 2])
        rows.append({"estimator": name, "value": float(point[name]), "ci_low": float(lo), "ci_high": float(hi),
                     "std": float(np.std(boot[name])), "n": len(r), "mean_weight": float(w.mean()),
                     "max_weight": float(w.max()),
                     "hyperparameter": {"switch_dr": tau, "dros": lam}.get(name, np.nan)})
    return pd.DataFrame(rows)


def records(table: pd.DataFrame) -> list[dict]:
    """Rows as strict-JSON-safe dicts (XCom, estimates.json): NaN and infinite values become null (an
    infinite Switch-DR threshold or DRos lambda means the tuned estimator is DR)."""
    return json.loads(table.to_json(orient="records"))


def _shrunk(name: str, value: float, w: np.ndarray, residual: np.ndarray, dm_i: np.ndarray) -> np.ndarray:
    """Per-row terms of Switch-DR (value = tau) or DRos (value = lambda)."""
    if name == "switch_dr":
        return dm_i + np.where(w <= value, w * residual, 0.0)
    if np.isinf(value):
        return dm_i + w * residual
    if value <= 0:
        return dm_i.copy()
    return dm_i + value * w / (w ** 2 + value) * residual


def grid(name: str, w: np.ndarray) -> np.ndarray:
    """Candidate hyper-parameters, from the DM (0) to DR (inf): the weights' own quantiles for Switch-DR's
    threshold, a geometric ladder around the squared weights for DRos's lambda."""
    positive = w[w > 0]
    if not len(positive):
        return np.array([0.0, np.inf])
    if name == "switch_dr":
        return np.unique(np.concatenate([[0.0], np.quantile(positive, np.linspace(0.05, 1.0, 20)), [np.inf]]))
    scale = float(np.median(positive ** 2))
    return np.concatenate([[0.0], scale * np.logspace(-3, 3, 25), [np.inf]])


def tune(w: np.ndarray, residual: np.ndarray, dm_i: np.ndarray, name: str) -> float:
    """The hyper-parameter with the smallest estimated mean squared error:
        var(terms) / n + max(0, (V - V_DR)^2 - var(terms - terms_DR) / n)
    DR is unbiased, so V - V_DR estimates the bias, but its square also carries the noise of the difference,
    which is subtracted (Su et al. 2020 select lambda by an MSE estimate of this kind)."""
    n = len(w)
    dr = dm_i + w * residual
    best, best_mse = np.inf, np.inf
    for value in grid(name, w):
        terms = _shrunk(name, value, w, residual, dm_i)
        diff = terms - dr
        bias2 = max(0.0, diff.mean() ** 2 - diff.var(ddof=1) / n)
        mse = terms.var(ddof=1) / n + bias2
        if mse < best_mse - 1e-18:
            best, best_mse = float(value), mse
    return best


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
    if isinstance(reward_model, Predictions):
        q_logged, dm_i = _from_predictions(logs, policy, context, action, reward_model)
        return w, r, q_logged, dm_i
    q_logged = logs[keys].merge(reward_model, on=keys, how="left")["q"].fillna(fallback).to_numpy()
    # DM term per impression: expected q under the target policy in that context
    expected = policy.merge(reward_model, on=keys, how="left")
    expected["q"] = expected["q"].fillna(fallback)
    expected = (expected.assign(pq=expected["probability"] * expected["q"])
                .groupby(context, observed=True)["pq"].sum().rename("dm").reset_index())
    dm_i = logs[context].merge(expected, on=context, how="left")["dm"].to_numpy()
    _check_support(logs, context, dm_i)
    return w, r, q_logged, dm_i


def _check_support(logs, context, dm_i):
    if np.isnan(dm_i).any():
        missing = logs.loc[np.isnan(dm_i), context].drop_duplicates().head()
        raise OPEError(f"the target policy has no actions for {int(np.isnan(dm_i).sum())} logged contexts, "
                       f"e.g.\n{missing.to_string(index=False)}")


def _from_predictions(logs, policy, context, action, predictions: Predictions):
    """q of the logged action and the DM term from a (impressions x actions) prediction matrix."""
    actions = predictions.actions[action].reset_index(drop=True)
    if predictions.q.shape != (len(logs), len(actions)):
        raise OPEError(f"reward predictions are {predictions.q.shape}; expected (impressions, actions) = "
                       f"({len(logs)}, {len(actions)})")
    column = actions.reset_index().rename(columns={"index": "_col"})
    logged = logs[action].merge(column, on=action, how="left")["_col"]
    if logged.isna().any():
        raise OPEError(f"{int(logged.isna().sum())} logged actions have no reward prediction, e.g.\n"
                       f"{logs.loc[logged.isna(), action].drop_duplicates().head().to_string(index=False)}")
    rows = np.arange(len(logs))
    q_logged = predictions.q[rows, logged.to_numpy(int)]
    # pi as a (contexts x actions) matrix, then one row of it per impression
    ctx = logs[context].drop_duplicates().reset_index(drop=True).reset_index().rename(columns={"index": "_ctx"})
    table = policy[context + action + ["probability"]].merge(ctx, on=context).merge(column, on=action)
    pi = np.zeros((len(ctx), len(actions)))
    np.add.at(pi, (table["_ctx"].to_numpy(int), table["_col"].to_numpy(int)), table["probability"].to_numpy(float))
    row_ctx = logs[context].merge(ctx, on=context, how="left")["_ctx"].to_numpy(int)
    covered = pi.sum(axis=1)[row_ctx]
    dm_i = np.where(covered > 0, (pi[row_ctx] * predictions.q).sum(axis=1), np.nan)
    _check_support(logs, context, dm_i)
    return q_logged, dm_i


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
