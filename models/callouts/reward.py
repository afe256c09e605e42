"""Reward models over impression and action features, for the DM, DR, Switch-DR and DRos estimators.

`ope.cell_means` models a click rate per (context, action) cell, which is all a segment-level policy needs.
Real logs carry more (the Open Bandit Dataset: four hashed user features, the position, item attributes)
and very few clicks (38 in 10,000 random impressions), so a cell per (user features, item, position)
cannot be estimated. These models share strength across cells instead:

- `LogisticReward`: L2-regularised logistic regression, additive on the logit scale in one-hot context
  features (including the position), the action's one-hot id and the action's attributes; the
  regularisation strength is chosen by stratified cross-validated log-loss on the training rows only.
  Additivity makes predicting every (impression, action) pair one outer sum.
- `BoostedReward`: gradient-boosted trees (scikit-learn's histogram GBDT, shallow, strongly regularised)
  on the same features, which can learn context x action interactions when the data supports them.

`cross_fit` gives each impression predictions from a model that did not see it (k folds), as the Open
Bandit Pipeline does (`RegressionModel.fit_predict(n_folds=3)`): the DR correction term then stays unbiased.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from echelon.models.callouts.ope import Predictions

C_GRID = tuple(float(c) for c in np.logspace(-3, 1, 9))


@dataclass
class _Encoder:
    """One-hot of categorical columns (categories fixed at fit), numeric columns standardised."""
    columns: list[str]
    levels: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> "_Encoder":
        for c in self.columns:
            if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].nunique() > 12:
                self.scale[c] = (float(frame[c].mean()), float(frame[c].std() or 1.0))
            else:
                self.levels[c] = sorted(frame[c].astype(str).unique())
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        parts = [np.zeros((len(frame), 0))]
        for c in self.columns:
            if c in self.scale:
                mean, sd = self.scale[c]
                parts.append(((frame[c].to_numpy(float) - mean) / sd)[:, None])
            else:
                codes = pd.Categorical(frame[c].astype(str), categories=self.levels[c]).codes
                onehot = np.zeros((len(frame), len(self.levels[c])))
                seen = codes >= 0   # a level unseen at fit contributes nothing (the baseline)
                onehot[np.flatnonzero(seen), codes[seen]] = 1.0
                parts.append(onehot)
        return np.hstack(parts)


def _action_frame(actions: pd.DataFrame, action: list[str], attributes: pd.DataFrame | None) -> pd.DataFrame:
    frame = actions[action].reset_index(drop=True)
    if attributes is not None:
        frame = frame.merge(attributes, on=action, how="left")
    return frame


@dataclass
class LogisticReward:
    """q(x, a) = sigmoid(b + phi(x) . theta + psi(a) . gamma), L2 strength chosen by CV log-loss."""
    context: list[str]
    action: list[str]
    attributes: pd.DataFrame | None = None   # action keys + attribute columns (e.g. item features)
    cs: tuple = C_GRID
    folds: int = 3
    seed: int = 0

    def fit(self, logs: pd.DataFrame) -> "LogisticReward":
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        y = logs["reward"].to_numpy(int)
        acts = _action_frame(logs, self.action, self.attributes)
        self._ctx = _Encoder(list(self.context)).fit(logs)
        self._act = _Encoder(list(acts.columns)).fit(acts)
        X_context = self._ctx.transform(logs)
        self._k = X_context.shape[1]
        X = np.hstack([X_context, self._act.transform(acts)])
        if y.min() == y.max():   # all clicks or none: the constant model
            self.c_, self.intercept_, self.coef_ = np.nan, float(special.logit(np.clip(y.mean(), 1e-4, 1 - 1e-4))), \
                np.zeros(X.shape[1])
            return self
        folds = int(min(self.folds, y.sum(), len(y) - y.sum()))
        if folds >= 2 and len(self.cs) > 1:
            model = LogisticRegressionCV(Cs=list(self.cs), cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed),
                                         scoring="neg_log_loss", max_iter=2000, l1_ratios=(0,),
                                         use_legacy_attributes=False).fit(X, y)
            self.c_ = float(np.ravel(model.C_)[0])
        else:
            self.c_ = float(self.cs[len(self.cs) // 2])
            model = LogisticRegression(C=self.c_, max_iter=2000).fit(X, y)
        self.intercept_, self.coef_ = float(model.intercept_[0]), model.coef_[0].copy()
        return self

    def predict(self, logs: pd.DataFrame, actions: pd.DataFrame) -> np.ndarray:
        """(impressions x actions) click probabilities."""
        context_part = self._ctx.transform(logs) @ self.coef_[:self._k]
        action_part = self._act.transform(_action_frame(actions, self.action, self.attributes)) @ self.coef_[self._k:]
        return special.expit(self.intercept_ + context_part[:, None] + action_part[None, :])


@dataclass
class BoostedReward:
    """Gradient-boosted trees on the same features (shallow, strongly regularised: clicks are rare)."""
    context: list[str]
    action: list[str]
    attributes: pd.DataFrame | None = None
    seed: int = 0
    params: dict = field(default_factory=lambda: {"max_depth": 3, "min_samples_leaf": 200, "learning_rate": 0.05,
                                                   "max_iter": 100, "l2_regularization": 10.0})

    def _features(self, logs: pd.DataFrame, acts: pd.DataFrame) -> np.ndarray:
        return np.hstack([self._ctx.transform(logs), self._act.transform(acts)])

    def fit(self, logs: pd.DataFrame) -> "BoostedReward":
        from sklearn.ensemble import HistGradientBoostingClassifier

        acts = _action_frame(logs, self.action, self.attributes)
        self._ctx = _Encoder(list(self.context)).fit(logs)
        self._act = _Encoder(list(acts.columns)).fit(acts)
        y = logs["reward"].to_numpy(int)
        self._constant = None if y.min() != y.max() else float(y.mean())
        if self._constant is None:
            self._model = HistGradientBoostingClassifier(early_stopping=False, random_state=self.seed,
                                                         **self.params).fit(self._features(logs, acts), y)
        return self

    def predict(self, logs: pd.DataFrame, actions: pd.DataFrame) -> np.ndarray:
        if self._constant is not None:
            return np.full((len(logs), len(actions)), self._constant)
        ctx = self._ctx.transform(logs)
        act = self._act.transform(_action_frame(actions, self.action, self.attributes))
        X = np.hstack([np.repeat(ctx, len(act), axis=0), np.tile(act, (len(ctx), 1))])
        return self._model.predict_proba(X)[:, 1].reshape(len(ctx), len(act))


MODELS = {"logistic": LogisticReward, "boosted": BoostedReward}


def cross_fit(kind: str, logs: pd.DataFrame, actions: pd.DataFrame, context: list[str], action: list[str],
              attributes: pd.DataFrame | None = None, folds: int = 3, seed: int = 0, **options) -> Predictions:
    """Predictions for every impression (rows of `logs` after reset_index) and action, each impression's
    from a model fit on the other folds (folds=1: one model fit on all rows). `options` go to the model
    (e.g. cs= for the logistic model's grid of inverse regularisation strengths)."""
    logs = logs.reset_index(drop=True)
    actions = actions[action].drop_duplicates().reset_index(drop=True)
    make = MODELS[kind]
    q = np.zeros((len(logs), len(actions)))
    if folds <= 1:
        q[:] = make(context, action, attributes, seed=seed, **options).fit(logs).predict(logs, actions)
        return Predictions(actions, q)
    order = np.random.default_rng(seed).permutation(len(logs))
    for test in np.array_split(order, folds):
        train = np.setdiff1d(order, test)
        model = make(context, action, attributes, seed=seed, **options).fit(logs.iloc[train])
        q[test] = model.predict(logs.iloc[test], actions)
    return Predictions(actions, q)
