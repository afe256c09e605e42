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
- `EBReward`: the domain's meta-prior idea as a reward model. The click rate of a (context, action) cell
  is the context's rate times an action effect (shared by every context, optionally pooled toward the
  action's family: similar callouts) times a cell effect; each effect has a Gamma(a, a) prior (mean 1)
  whose strength `a` maximises the negative-binomial marginal likelihood of the counts, level by level.
  Where the counts show no heterogeneity the strength runs to its bound and the model pools completely,
  so it never invents item differences that 38 clicks cannot show.

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


def gamma_poisson_strength(clicks, exposure, bounds=(1e-2, 1e6)) -> float:
    """Empirical Bayes: the strength a of effects theta ~ Gamma(a, a) (mean 1) maximising the marginal
    (negative-binomial) likelihood of clicks ~ Poisson(theta * exposure). The bound's upper end means no
    detectable heterogeneity (complete pooling)."""
    from scipy import optimize

    k, e = np.asarray(clicks, float), np.asarray(exposure, float)
    keep = e > 0
    k, e = k[keep], e[keep]
    if len(k) < 2 or k.sum() == 0:
        return float(bounds[1])

    def negative(log_a):
        a = np.exp(log_a)
        return -float(np.sum(special.gammaln(k + a) - special.gammaln(a) + a * np.log(a / (a + e))
                             + k * np.log(e / (a + e))))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    best = optimize.minimize_scalar(negative, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    # the bounded search stops just inside an end; a flat likelihood at the top end is complete pooling
    return float(bounds[1]) if negative(hi) <= best.fun + 1e-9 else float(np.exp(best.x))


@dataclass
class EBReward:
    """q(x, a) = m(x) * theta(a) * eta(x, a), rates shrunk level by level with empirical-Bayes strengths:
    m(x) the context's click rate (x = the `context` keys, e.g. the position), theta(a) the action's effect
    given its exposure sum m(x) over its impressions (pooled toward its `family`'s effect when given),
    eta(x, a) the cell's own deviation. Each Gamma(s, s) strength is fitted on the training rows alone
    (`gamma_poisson_strength`); `hyper_` records them. Poisson counts approximate binomial ones for rare
    clicks; predictions are clipped to [0, 1]."""
    context: list[str]
    action: list[str]
    attributes: pd.DataFrame | None = None   # action keys + attribute columns; `family` names one of them
    family: str | None = None
    seed: int = 0   # unused (the fit is deterministic); kept for cross_fit's common signature
    # rows sharing this id are one observation for the strengths (a bootstrap sample repeats rows: its
    # duplicated clicks look like heterogeneity to the marginal likelihood); None: every row counts
    unique_on: str | None = None

    def _strength(self, frame: pd.DataFrame, keys: list[str], exposure) -> float:
        """gamma_poisson_strength of the groups `keys`, on the distinct rows when unique_on is set;
        exposure(rows) -> the groups' exposures (aligned with the groupby)."""
        rows = frame if self.unique_on is None else frame.drop_duplicates(self.unique_on)
        counts = rows.groupby(keys, observed=True)["reward"].sum()
        return gamma_poisson_strength(counts, exposure(rows).reindex(counts.index))

    def fit(self, logs: pd.DataFrame) -> "EBReward":
        ids = [self.unique_on] if self.unique_on else []
        frame = logs[self.context + self.action + ["reward"] + ids].copy()
        self.pooled_ = float(frame["reward"].mean()) if len(frame) else 0.0
        ctx = frame.groupby(self.context, observed=True)["reward"].agg(["sum", "count"])
        # context rates shrunk toward the pooled rate by the same rule (exposure = count x pooled rate)
        s_ctx = self._strength(frame, self.context, lambda rows: rows.groupby(self.context, observed=True)
                               ["reward"].size() * self.pooled_)
        ctx["m"] = self.pooled_ * (ctx["sum"] + s_ctx) / (ctx["count"] * self.pooled_ + s_ctx)
        self._m = ctx["m"].rename("m").reset_index()
        frame = frame.merge(self._m, on=self.context, how="left")
        acts = frame.groupby(self.action, observed=True).agg(k=("reward", "sum"), e=("m", "sum")).reset_index()
        acts["g"], s_family = 1.0, np.nan
        if self.family is not None:
            acts = acts.merge(self.attributes[self.action + [self.family]], on=self.action, how="left")
            acts[self.family] = acts[self.family].fillna("__none__")
            fam = acts.groupby(self.family)[["k", "e"]].sum()
            families = frame.merge(self.attributes[self.action + [self.family]], on=self.action, how="left")
            families[self.family] = families[self.family].fillna("__none__")
            s_family = self._strength(families, [self.family],
                                      lambda rows: rows.groupby(self.family)["m"].sum())
            fam["g"] = (fam["k"] + s_family) / (fam["e"] + s_family)
            self._family_effect = fam["g"]
            acts["g"] = acts[self.family].map(fam["g"]).to_numpy()
        g = acts.set_index(self.action)["g"]
        s_action = self._strength(frame, self.action, lambda rows: rows.groupby(self.action, observed=True)["m"].sum()
                                  * g.reindex(rows.groupby(self.action, observed=True).size().index))
        acts["theta"] = acts["g"] * (acts["k"] + s_action) / (acts["e"] * acts["g"] + s_action)
        self._theta = acts[self.action + ["theta"]]
        cells = frame.groupby(self.context + self.action, observed=True).agg(k=("reward", "sum"), n=("m", "size"),
                                                                             m=("m", "first")).reset_index()
        cells = cells.merge(self._theta, on=self.action, how="left")
        cells["e"] = cells["n"] * cells["m"] * cells["theta"]
        theta = self._theta.set_index(self.action)["theta"]
        s_cell = self._strength(frame, self.context + self.action, lambda rows: rows.assign(
            _e=rows["m"] * theta.reindex(pd.MultiIndex.from_frame(rows[self.action]) if len(self.action) > 1
                                         else rows[self.action[0]]).to_numpy()
        ).groupby(self.context + self.action, observed=True)["_e"].sum())
        cells["q"] = cells["m"] * cells["theta"] * (cells["k"] + s_cell) / (cells["e"] + s_cell)
        self._cells = cells[self.context + self.action + ["q"]]
        self.hyper_ = {"context_strength": s_ctx, "family_strength": s_family, "action_strength": s_action,
                       "cell_strength": s_cell}
        return self

    def _theta_of(self, actions: pd.DataFrame) -> np.ndarray:
        """Each action's effect; an action unseen at fit takes its family's effect (or 1)."""
        theta = actions[self.action].merge(self._theta, on=self.action, how="left")["theta"]
        if self.family is not None and theta.isna().any():
            fam = actions[self.action].merge(self.attributes[self.action + [self.family]], on=self.action,
                                             how="left")[self.family].map(self._family_effect)
            theta = theta.fillna(fam)
        return theta.fillna(1.0).to_numpy(float)

    def predict(self, logs: pd.DataFrame, actions: pd.DataFrame) -> np.ndarray:
        """(impressions x actions) click probabilities."""
        actions = actions[self.action].reset_index(drop=True)
        contexts = logs[self.context].drop_duplicates().reset_index(drop=True)
        m = contexts.merge(self._m, on=self.context, how="left")["m"].fillna(self.pooled_).to_numpy()
        grid = contexts.assign(_c=np.arange(len(contexts))).merge(actions.assign(_a=np.arange(len(actions))),
                                                                  how="cross")
        q_cell = grid.merge(self._cells, on=self.context + self.action, how="left")["q"].to_numpy()
        table = (m[:, None] * self._theta_of(actions)[None, :]).ravel()   # the cell's prior mean when unseen
        table = np.where(np.isnan(q_cell), table, q_cell).reshape(len(contexts), len(actions))
        row = logs[self.context].merge(contexts.assign(_c=np.arange(len(contexts))), on=self.context,
                                       how="left")["_c"].to_numpy(int)
        return np.clip(table[row], 0.0, 1.0)


MODELS = {"logistic": LogisticReward, "boosted": BoostedReward, "eb": EBReward}


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
        model = make(context, action, attributes, seed=seed, **options).fit(logs)
        q[:] = model.predict(logs, actions)
        return Predictions(actions, q, (model,))
    order = np.random.default_rng(seed).permutation(len(logs))
    models = []
    for test in np.array_split(order, folds):
        train = np.setdiff1d(order, test)
        models.append(make(context, action, attributes, seed=seed, **options).fit(logs.iloc[train]))
        q[test] = models[-1].predict(logs.iloc[test], actions)
    return Predictions(actions, q, tuple(models))
