"""Off-policy evaluation on real logs (Open Bandit Dataset sample), the Open Bandit Pipeline protocol
(examples/obd/evaluate_off_policy_estimators.py): estimate the Bernoulli-TS policy's click rate from the
uniform-random logs of the same campaign, compare with its on-policy click rate (the mean click of the
BTS logs), and report the relative estimation error |estimate - truth| / truth, mean and spread over 30
bootstrap samples of the random logs (sample b drawn with numpy's RandomState(b), as OBP does).

Evaluation policy pi_e(item | position), two ways:
- `logged` (default): the frequency of each (item, position) among the BTS logs' impressions. BTS's
  probabilities moved all week (the logged propensity of one (item, position) ranges over a factor of
  ten), and the frequency is an unbiased estimate of their time average, the policy whose value the
  on-policy truth measures. (Averaging the logged propensities instead over-weights the hours an item
  was likely, since it is logged more in those hours: that was this benchmark's first version.)
- `prior` (with --bts-prior FILE): what OBP does, `BernoulliTS(is_zozotown_prior=True)
  .compute_batch_action_dist()`: Monte Carlo of Thompson draws from the production Beta prior of each
  item, ranking the top three. FILE is OBP's `obp/policy/conf/prior_bts.yaml` (st-tech/zr-obp,
  Apache-2.0; not shipped here), or JSON of the same shape ({campaign: {alpha: [...], beta: [...]}}).

Reward models for DM / DR / Switch-DR / DRos, each fit with 3-fold cross-fitting like OBP's
`RegressionModel.fit_predict(n_folds=3)`:
- `cells`: click rate per (position, item) shrunk toward the position's rate (empirical-Bayes pseudo-count);
- `logistic`: models/callouts/reward.py, additive L2 logistic regression on the four user features, the
  position, the item id and the item's four features, regularisation chosen by CV log-loss;
- `boosted`: gradient-boosted trees on the same features;
- `eb`: models/callouts/reward.py's EBReward, the domain's meta-prior as a reward model: position rate x
  item effect (pooled toward its family, item_feature_1, the catalog's `family`) x (position, item) cell
  effect, every Gamma strength by the negative-binomial marginal likelihood of the training fold's counts;
- `eb_unique` (added after the first `eb` run, see the results): the same, with the strengths fitted on
  the fold's distinct impressions (a bootstrap sample repeats rows, and its repeated clicks look like
  item heterogeneity to the likelihood), then applied to all its rows;
- `obp_lr` (reproduction only, with --bts-prior): OBP's own configuration, one LogisticRegression(C=100)
  per position on the one-hot user features and the label-encoded item features.

Every hyper-parameter is chosen without the on-policy truth: the logistic model's L2 strength by
cross-validated log-loss on the training fold, the EB strengths by marginal likelihood on the training
fold, Switch-DR's threshold and DRos's lambda by an MSE estimate on the sample (ope.tune); the boosted
trees' settings were fixed in advance. SNDR (DR with a self-normalised correction) has none.

python benchmarks/callouts_ope_obd.py --out benchmarks/results [--bts-prior prior_bts.yaml]
    [--keep-existing: keep the rows of reward models not rerun from the existing csv (same samples)]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.jobs.callouts.obd import DEFAULT_ROOT, USER_FEATURES, item_attributes, load
from echelon.models.callouts import ope, reward
from echelon.models.callouts.bandits import fit_meta_prior

CONTEXT, ACTION = ["position"], ["callout_id", "layout_id"]
ESTIMATORS = list(ope.ESTIMATORS)
# OBP's published relative errors on this sample (logistic-regression reward model, OBP's BTS prior)
REFERENCE = {"dm": 0.157, "ipw": 0.311, "snipw": 0.312, "dr": 0.292, "switch_dr": 0.258, "dros": 0.160}
TARGET = 0.12


def logs_of(policy: str, campaign: str, root) -> pd.DataFrame:
    _, impressions, clicks = load(root, policy, campaign)
    return impressions.assign(reward=impressions["impression_id"].isin(clicks["impression_id"]).astype(int))


def logged_policy(bts: pd.DataFrame) -> pd.DataFrame:
    """pi_e(item | position): the frequency of each (item, position) among the BTS impressions."""
    table = bts.groupby(CONTEXT + ACTION, as_index=False).size().rename(columns={"size": "probability"})
    table["probability"] = table["probability"] / table.groupby("position")["probability"].transform("sum")
    return table


def prior_policy(path: str, campaign: str, items: list[str], positions: list[int], n_sim: int = 1_000_000,
                 seed: int = 12345) -> pd.DataFrame:
    """OBP's compute_batch_action_dist: P(item ranked k-th) under draws from the Beta prior per item."""
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        spec = yaml.safe_load(text)[campaign]
    else:
        spec = json.loads(text)[campaign]
    alpha, beta = np.asarray(spec["alpha"], float), np.asarray(spec["beta"], float)
    if len(alpha) != len(items):
        raise ValueError(f"the prior has {len(alpha)} items; the campaign has {len(items)}")
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(items), len(positions)))
    for chunk in np.array_split(np.arange(n_sim), max(1, n_sim // 50_000)):
        top = np.argsort(-rng.beta(alpha, beta, size=(len(chunk), len(items))), axis=1)[:, :len(positions)]
        for k in range(len(positions)):
            counts[:, k] += np.bincount(top[:, k], minlength=len(items))
    probs = counts / n_sim
    return pd.DataFrame([{"position": pos, "callout_id": item, "layout_id": "default", "probability": probs[i, k]}
                         for i, item in enumerate(items) for k, pos in enumerate(positions) if probs[i, k] > 0])


def cells_model(sample: pd.DataFrame, actions: pd.DataFrame, folds: int, seed: int) -> ope.Predictions:
    """Cross-fitted per-(position, item) click rates shrunk toward the position's rate, with the pseudo-count
    an empirical-Bayes Beta prior fitted to the cells' own counts gives."""
    q = np.zeros((len(sample), len(actions)))
    order = np.random.default_rng(seed).permutation(len(sample))
    for test in np.array_split(order, folds):
        train = sample.iloc[np.setdiff1d(order, test)]
        cells = train.groupby(CONTEXT + ACTION)["reward"].agg(["sum", "count"])
        prior = fit_meta_prior(cells["sum"], cells["count"], max_strength=1e5)
        table = ope.cell_means(train, CONTEXT + ACTION, shrink_to=CONTEXT, strength=prior.strength if prior else 20.0)
        rates = train.groupby("position")["reward"].mean()
        for pos, rows in sample.iloc[test].groupby("position"):
            grid = actions.assign(position=pos).merge(table, on=CONTEXT + ACTION, how="left")
            q[rows.index.to_numpy()] = grid["q"].fillna(rates.get(pos, train["reward"].mean())).to_numpy()
    return ope.Predictions(actions, q)


def obp_lr_model(sample: pd.DataFrame, actions: pd.DataFrame, items: pd.DataFrame, folds: int,
                 seed: int) -> ope.Predictions:
    """OBP's example configuration: LogisticRegression(C=100) per position on pd.get_dummies(user features,
    drop_first=True) and LabelEncoder codes of item_feature_1..3 next to item_feature_0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import LabelEncoder

    users = pd.get_dummies(sample[USER_FEATURES], drop_first=True).to_numpy(float)
    coded = items.set_index("callout_id")
    coded = np.column_stack([LabelEncoder().fit_transform(coded[c]) for c in ("item_feature_1", "item_feature_2",
                                                                              "item_feature_3")]
                            + [coded["item_feature_0"].to_numpy()]).astype(float)
    index = {c: k for k, c in enumerate(items["callout_id"])}
    item_rows = coded[[index[c] for c in actions["callout_id"]]]
    logged = coded[[index[c] for c in sample["callout_id"]]]
    position, y = sample["position"].to_numpy(), sample["reward"].to_numpy(int)
    q = np.zeros((len(sample), len(actions)))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(users):
        for pos in np.unique(position):
            fit_rows = train[position[train] == pos]
            model = LogisticRegression(C=100, max_iter=10000).fit(np.c_[users[fit_rows], logged[fit_rows]], y[fit_rows])
            rows = test[position[test] == pos]
            w, b = model.coef_[0], model.intercept_[0]
            k = users.shape[1]
            q[rows] = 1 / (1 + np.exp(-(b + (users[rows] @ w[:k])[:, None] + (item_rows @ w[k:])[None, :])))
    return ope.Predictions(actions, q)


def run(args) -> tuple[pd.DataFrame, dict]:
    random, bts = logs_of("random", args.campaign, args.root), logs_of("bts", args.campaign, args.root)
    items = item_attributes(args.root, "random", args.campaign)
    truth = float(bts["reward"].mean())
    actions = pd.DataFrame({"callout_id": items["callout_id"], "layout_id": "default"})
    policies = {"logged": logged_policy(bts)}
    if args.bts_prior:
        policies["prior"] = prior_policy(args.bts_prior, args.campaign, list(items["callout_id"]),
                                         sorted(random["position"].unique()))
    models = [m for m in args.reward_models.split(",") if m]
    if args.bts_prior and "obp_lr" not in models:
        models.append("obp_lr")
    attributes = items.assign(layout_id="default")
    rows, seconds, hyper = [], {m: 0.0 for m in models}, []
    for b in range(args.samples):
        index = np.random.RandomState(b).choice(len(random), size=len(random), replace=True)
        sample = random.iloc[index].reset_index(drop=True)
        for model in models:
            started = time.time()
            if model == "cells":
                predictions = cells_model(sample, actions, args.folds, seed=12345)
            elif model == "obp_lr":
                predictions = obp_lr_model(sample, actions, items, args.folds, seed=12345)
            elif model in ("eb", "eb_unique"):
                predictions = reward.cross_fit("eb", sample, actions, CONTEXT, ACTION, attributes=attributes,
                                               folds=args.folds, seed=12345, family="item_feature_1",
                                               unique_on="impression_id" if model == "eb_unique" else None)
                hyper.extend({"sample": b, "model": model, **m.hyper_} for m in predictions.models)
            else:
                predictions = reward.cross_fit(model, sample, actions, USER_FEATURES + ["position"], ACTION,
                                               attributes=attributes, folds=args.folds, seed=12345)
            seconds[model] += time.time() - started
            for name, policy in policies.items():
                if model == "obp_lr" and name != "prior":
                    continue
                est = ope.estimate(sample, policy, CONTEXT, ACTION, reward_model=predictions, n_bootstrap=2, seed=b)
                for r in est.itertuples():
                    rows.append({"sample": b, "policy": name, "reward_model": model, "estimator": r.estimator,
                                 "estimate": r.value, "hyperparameter": r.hyperparameter,
                                 "relative_error": abs(r.value - truth) / truth})
        # the floor: the random logs' own click rate, which knows nothing of the evaluation policy
        rows.append({"sample": b, "policy": "none", "reward_model": "none", "estimator": "random_click_rate",
                     "estimate": sample["reward"].mean(), "hyperparameter": np.nan,
                     "relative_error": abs(sample["reward"].mean() - truth) / truth})
        print(f"sample {b + 1}/{args.samples}", file=sys.stderr, flush=True)
    facts = {"truth": truth, "random_rows": len(random), "random_clicks": int(random["reward"].sum()),
             "bts_rows": len(bts), "bts_clicks": int(bts["reward"].sum()),
             "seconds_per_sample": {m: s / args.samples for m, s in seconds.items()}, "eb_strengths": hyper}
    return pd.DataFrame(rows), facts


def report(frame: pd.DataFrame, facts: dict, args) -> str:
    table = (frame[frame["policy"] != "none"]
             .groupby(["policy", "reward_model", "estimator"])["relative_error"].agg(["mean", "std"]).reset_index())
    floor = frame[frame["estimator"] == "random_click_rate"]["relative_error"]
    best = table.loc[table["mean"].idxmin()]
    lines = [
        f"# Off-policy evaluation on the Open Bandit Dataset sample (campaign `{args.campaign}`)",
        "",
        f"Protocol of the Open Bandit Pipeline: the Bernoulli-TS policy's value estimated from the uniform-random "
        f"logs ({facts['random_rows']:,} impressions, {facts['random_clicks']} clicks), against its on-policy click "
        f"rate {facts['truth']:.5f} ({facts['bts_rows']:,} BTS impressions, {facts['bts_clicks']} clicks); relative "
        f"error |estimate - truth| / truth, mean (std) over {args.samples} bootstrap samples of the random logs; "
        f"reward models cross-fitted over {args.folds} folds. Run: "
        + ("; ".join(f"`{r['command']}` ({', '.join(r['kept'])}"
                     + (f"; load {r['load'][0]:.1f} at its start, {r['load'][1]:.1f} at its end on 2 shared cores"
                        if r.get("load") else "") + (f"; {r['note']}" if r.get("note") else "") + ")"
                     for r in facts["runs"]) if facts.get("runs") else
           f"`{facts['command']}`" if "command" in facts else
           f"`python benchmarks/callouts_ope_obd.py --samples {args.samples} --reward-models {args.reward_models}"
           + (" --bts-prior prior_bts.yaml` (OBP's file)" if args.bts_prior else "`"))
        + (f"; machine load (1-min average) {facts['load'][0]:.1f} at the start, {facts['load'][1]:.1f} at the end "
           "(2 shared cores)" if "load" in facts and not facts.get("runs") else "")
        + "; every estimate, with the tuned Switch-DR threshold and DRos lambda, is in `callouts_ope_obd.csv`.",
        "",
    ]
    for policy, label in (("logged", "pi_e = the BTS logs' (item, position) frequencies (default)"),
                          ("prior", "pi_e = Monte Carlo of BTS from OBP's production prior (OBP's own protocol)")):
        part = table[table["policy"] == policy]
        if part.empty:
            continue
        models = list(dict.fromkeys(part["reward_model"]))
        lines += [f"## {label}", "", "| estimator | " + " | ".join(models) + " | OBP reference |",
                  "|---|" + "---|" * (len(models) + 1)]
        for est in ESTIMATORS:
            cells = []
            for m in models:
                r = part[(part["reward_model"] == m) & (part["estimator"] == est)]
                cells.append(f"{r['mean'].iloc[0]:.3f} ({r['std'].iloc[0]:.3f})" if len(r) else "")
            ref = f"{REFERENCE[est]:.3f}" if est in REFERENCE else ""
            lines.append(f"| {est} | " + " | ".join(cells) + f" | {ref} |")
        lines.append("")
    repro = table[(table["policy"] == "prior") & (table["reward_model"] == "obp_lr")].set_index("estimator")["mean"]
    if len(repro):
        lines += ["Reproduction: with OBP's pi_e and OBP's own reward-model configuration (column `obp_lr`) the "
                  "published reference comes out: " + ", ".join(
                      f"{e} {repro[e]:.3f} vs {REFERENCE[e]:.3f}" for e in ("dm", "ipw", "snipw", "dr")) + ".", ""]
    hyper = frame[frame["estimator"].isin(["switch_dr", "dros"]) & frame["hyperparameter"].notna()]
    if len(hyper):
        lines += [f"Switch-DR / DRos tuning (estimated MSE, per sample): the DM end (0) in "
                  f"{(hyper['hyperparameter'] == 0).mean():.0%} of the fits, DR (infinity) in "
                  f"{np.isinf(hyper['hyperparameter']).mean():.0%}; with {facts['random_clicks']} clicks the MSE "
                  "estimate is itself noisy, and the samples where it picks DR carry their large errors.", ""]
    if facts.get("eb_strengths"):
        fits = pd.DataFrame(facts["eb_strengths"]).assign(model=lambda f: f.get("model", "eb")).fillna({"model": "eb"})
        for model, strengths in fits.groupby("model"):
            strengths = strengths.drop(columns=["sample", "model"])
            top = strengths >= 1e6 * 0.999
            lines += [f"`{model}` strengths (Gamma(s, s) effects, s by marginal likelihood on each training fold; "
                      "1e6 = the bound, complete pooling), median and share at the bound over "
                      f"{len(strengths)} fits: " + ", ".join(
                          f"{c.replace('_strength', '')} {strengths[c].median():.3g} ({top[c].mean():.0%})"
                          for c in strengths.columns) + ".", ""]
    rate = facts["random_clicks"] / facts["random_rows"]
    spread = np.sqrt(rate * (1 - rate) / facts["random_rows"]) / facts["truth"]
    lines += [
        f"Noise floor. The random logs' own click rate, which ignores the evaluation policy entirely, is off by "
        f"{floor.mean():.3f} ({floor.std():.3f}) on the same samples. Its bootstrap spread is {spread:.3f} of the "
        f"truth ({facts['random_clicks']} clicks), and an estimator centred exactly on the truth with that spread "
        f"would average sqrt(2/pi) x {spread:.3f} = {np.sqrt(2 / np.pi) * spread:.3f}: the target is at the floor "
        "that the sample's click count sets. Only an estimator less variable than the click count itself could go "
        f"below it, i.e. one leaning on prior assumptions instead of the logs; and the truth rests on "
        f"{facts['bts_clicks']} clicks. With 30 samples, a mean's standard error is about std / 5.5 (~0.02 here): "
        "differences between the DM variants are within it.",
        "",
        f"Best: {best['estimator']} with the {best['reward_model']} reward model ({best['policy']} pi_e) at "
        f"{best['mean']:.3f} (target <= {TARGET}: {'met nominally' if best['mean'] <= TARGET else 'not met'}).",
        "",
        *reading(frame, best, np.sqrt(2 / np.pi) * spread),
        "Reward-model cost per bootstrap sample (3 fits): " + ", ".join(
            f"{m} {s:.1f} s" for m, s in facts["seconds_per_sample"].items()) + " (measured on a shared, loaded machine).",
    ]
    return "\n".join(lines)


HYPERPARAMETERS = [
    "How every hyper-parameter was chosen (none with the on-policy truth):",
    "- `logistic`: the L2 strength C from a grid of 9 (1e-3..10) by stratified 3-fold cross-validated log-loss "
    "on the training fold's rows.",
    "- `boosted`: depth 3, 200 rows a leaf, learning rate 0.05, 100 trees, L2 10: fixed settings, not tuned.",
    "- `cells`: the pseudo-count of the (position, item) cells' shrinkage toward the position's rate is the "
    "strength of a Beta prior fitted to the cells' counts by beta-binomial marginal likelihood on the training fold.",
    "- `eb`, `eb_unique`: the four Gamma strengths (position, family, item, cell) by negative-binomial marginal "
    "likelihood of the training fold's counts, level by level (`eb_unique`: on its distinct impressions).",
    "- Switch-DR's threshold and DRos's lambda: per sample, the grid value with the smallest estimated MSE "
    "(variance + debiased squared difference from DR) on the sample itself (`ope.tune`). SNDR, IPW, SNIPW, DR: none.",
    "- The evaluation policy pi_e: the BTS logs' (item, position) frequencies, which use the BTS impressions but "
    "not their clicks (the truth is their click rate).",
    "",
]


def reading(frame: pd.DataFrame, best, floor: float) -> list[str]:
    """Paired differences (same bootstrap samples) of the best estimator's error against the policy-blind
    click rate and the other reward models' DM, with standard errors: what the 30 samples can tell apart."""
    logged = frame[frame["policy"].isin([best["policy"], "none"])]
    err = logged.pivot_table(index="sample", columns=["reward_model", "estimator"], values="relative_error")
    mine = err[(best["reward_model"], best["estimator"])]
    others = [("none", "random_click_rate")] + [(m, "dm") for m in dict.fromkeys(logged["reward_model"])
                                                 if m not in ("none", best["reward_model"]) and (m, "dm") in err]
    parts = []
    for other in others:
        d = (mine - err[other]).dropna()
        parts.append(f"{'the policy-blind click rate' if other[0] == 'none' else other[0] + ' DM'} "
                     f"{d.mean():+.3f} (se {d.std(ddof=1) / np.sqrt(len(d)):.3f})")
    lines = ["Paired over the same samples, the best estimator's error minus: " + ", ".join(parts) + ".", ""]
    est = logged.pivot_table(index="sample", columns=["reward_model", "estimator"], values="estimate")
    if ("eb_unique", "dm") in est and ("eb", "dm") in est:
        ratio = est[("eb_unique", "dm")] / est[("none", "random_click_rate")]
        corr = np.corrcoef(est[("eb_unique", "dm")], est[("none", "random_click_rate")])[0, 1]
        lines += [
            "Reading. `eb` was fixed before its run; on the bootstrap samples its likelihood saw strong item and "
            "cell heterogeneity (median strengths above), because a resample repeats clicked rows and repeated "
            "clicks look like over-dispersion, so it barely shrank and its DM was the worst. `eb_unique` was "
            "written after that run (one variant, its rule set by the mechanism, not tuned on the error): fitted on "
            "distinct impressions it pools the items completely in most folds, as on the original logs, and keeps "
            f"a family effect; its DM is the random logs' click rate times {ratio.median():.2f} (median; correlation "
            f"{corr:.2f} with that rate). It meets 0.12 nominally, but by less than its paired standard error "
            f"against the policy-blind click rate, and {mine.mean():.3f} vs the {floor:.3f} floor is within the samples' noise: read it as "
            "\"at the floor\", not as a demonstrated gain. The same conclusion as before holds: 38 clicks cannot "
            "show which items BTS favours better than the pooled rate does; IPW-based estimators (DR, SNDR, "
            "Switch-DR, DRos) pay the weights' variance (pi_e puts up to ~10x the uniform mass on an item).", ""]
    return lines + HYPERPARAMETERS


def keep_existing(out: Path, frame: pd.DataFrame, facts: dict) -> tuple[pd.DataFrame, dict]:
    """The new rows plus the earlier runs' rows of the (policy, reward model) pairs not rerun (each sample b
    is drawn with RandomState(b) in every run, so the rows compare sample by sample); facts["runs"] says
    which run made which rows, with its command and load."""
    old = pd.read_csv(out / "callouts_ope_obd.csv")
    old_facts = json.loads((out / "callouts_ope_obd.json").read_text())
    pairs = set(zip(frame["policy"], frame["reward_model"]))
    kept = old[[pair not in pairs for pair in zip(old["policy"], old["reward_model"])]]
    kept = kept[kept["sample"] < facts["args"]["samples"]]
    new = sorted(f"{p}/{m}" for p, m in pairs if m != "none")
    runs = [dict(r, kept=[k for k in r["kept"] if k not in new]) for r in old_facts.get("runs", [])]
    facts["runs"] = [r for r in runs if r["kept"]] + [{"command": facts["command"], "kept": new, "load": facts["load"]}]
    models = list(dict.fromkeys(list(kept["reward_model"]) + list(frame["reward_model"])))
    facts["args"]["reward_models"] = ",".join(m for m in models if m not in ("none", "obp_lr"))
    facts["args"]["bts_prior"] = facts["args"]["bts_prior"] or old_facts["args"]["bts_prior"]
    facts["seconds_per_sample"] = {**old_facts["seconds_per_sample"], **facts["seconds_per_sample"]}
    rerun = {m for _, m in pairs}
    facts["eb_strengths"] = [r for r in old_facts.get("eb_strengths", []) if r.get("model") not in rerun] \
        + facts["eb_strengths"]
    return pd.concat([kept, frame], ignore_index=True), facts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(DEFAULT_ROOT))
    parser.add_argument("--campaign", default="all")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--reward-models", default="cells,eb,eb_unique,logistic,boosted")
    parser.add_argument("--bts-prior", help="OBP's prior_bts.yaml (or JSON of its shape): adds OBP's own pi_e")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--report-only", action="store_true", help="rebuild the .md from the .csv and .json")
    parser.add_argument("--keep-existing", action="store_true",
                        help="keep the existing csv's rows of reward models not rerun (the samples are the same)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:   # re-render the report from a finished run's csv and facts
        frame = pd.read_csv(out / "callouts_ope_obd.csv")
        facts = json.loads((out / "callouts_ope_obd.json").read_text())
        args.samples, args.folds, args.reward_models, args.bts_prior = (facts["args"][k] for k in (
            "samples", "folds", "reward_models", "bts_prior"))
    elif not Path(args.root).exists():
        print(f"skipped: the Open Bandit Dataset is absent ({args.root})", file=sys.stderr)
        return 0
    else:
        load = os.getloadavg()[0]
        frame, facts = run(args)
        facts["load"] = [load, os.getloadavg()[0]]
        facts["command"] = "nice -n 10 python " + " ".join(sys.argv)
        facts["args"] = {"samples": args.samples, "folds": args.folds, "reward_models": args.reward_models,
                         "bts_prior": bool(args.bts_prior)}
        if args.keep_existing and (out / "callouts_ope_obd.csv").exists():
            frame, facts = keep_existing(out, frame, facts)
            args.reward_models, args.bts_prior = facts["args"]["reward_models"], facts["args"]["bts_prior"]
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "callouts_ope_obd.csv", index=False)
        (out / "callouts_ope_obd.json").write_text(json.dumps(facts, indent=2))
    text = report(frame, facts, args)
    (out / "callouts_ope_obd.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
