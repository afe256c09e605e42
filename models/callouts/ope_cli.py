"""Off-policy estimates of a policy's click rate from a logs folder, with bootstrap intervals.

`echelon callouts ope --logs DIR --policy NAME --output DIR`
- DIR holds impressions.csv|parquet, clicks.csv|parquet (and optionally catalog.csv): the format of
  `echelon callouts obd` and of ingest --logs. A click is a reward when it arrives within WINDOW_DAYS.
- NAME is `uniform`, a method (flat_ts, meta_ts, contextual: fit on the earlier half of the logs by time,
  evaluated on the later half, so it never sees what it is scored on), or a CSV policy table: action
  columns callout_id, layout_id, a probability, and any context columns to match on (segment, position).
--reward-model (for DM, DR, SNDR, Switch-DR, DRos): `eb` (default: reward.EBReward, context rate x callout
effect pooled toward its family x cell effect, every strength by marginal likelihood on the logs; it is the
cell model where the logs are rich and pools where they are thin, its strengths come from the logs'
likelihood, and it costs a second; see benchmarks/results/callouts_ope_obd.md), `cell` (per-(context,
action) rates shrunk toward the action's rate, fixed strength 20), `logistic` (additive L2 logistic
regression, strength by CV log-loss) or `trees` (boosted trees); all but `cell` are cross-fitted over
--folds folds over the policy's context plus the logs' position and user_feature_* columns.
Writes estimates.csv and estimates.json: every estimator with its bootstrap interval, the reward model and
the model's fitted settings. --intervals fixed (default) resamples the logs with the fitted reward model held
fixed (the DM's interval then covers the logs' sampling noise only); --intervals refit refits the model on
every resample.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.callout_logs import LogFileError, TimestampError, parse_utc, read_any, require_columns
from echelon.catalog.callouts import WINDOW_DAYS
from echelon.models.callouts import ope, reward
from echelon.models.callouts.policy import METHODS, serving_table

ACTION = ["callout_id", "layout_id"]
REWARD_MODELS = {"eb": "eb", "cell": None, "logistic": "logistic", "trees": "boosted"}   # flag -> reward.MODELS
FEATURES = ["position"] + [f"user_feature_{k}" for k in range(4)]   # impression features, where logged


def read_logs(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bandit logs with reward, catalog) from a logs folder."""
    folder = Path(folder)
    impressions, clicks = read_any(folder, "impressions"), read_any(folder, "clicks")
    if impressions is None:
        raise ope.OPEError(f"no impressions.csv or impressions.parquet in {folder}")
    try:
        require_columns(impressions, ["impression_id", "shown_at", "propensity", *ACTION], f"{folder}/impressions")
        impressions["shown_at"] = parse_utc(impressions["shown_at"], "shown_at", f"{folder}/impressions")
        impressions["propensity"] = _propensities(impressions["propensity"], f"{folder}/impressions")
        if clicks is None or clicks.empty:
            clicks = pd.DataFrame({"impression_id": pd.Series(dtype=str),
                                   "clicked_at": pd.Series(dtype="datetime64[us, UTC]")})
        require_columns(clicks, ["impression_id", "clicked_at"], f"{folder}/clicks")
        clicks["clicked_at"] = parse_utc(clicks["clicked_at"], "clicked_at", f"{folder}/clicks")
    except (TimestampError, LogFileError) as error:
        raise ope.OPEError(str(error)) from error
    impressions[ACTION] = impressions[ACTION].astype(str)
    _check_clicks(impressions, clicks, folder)
    first = clicks.groupby("impression_id", as_index=False)["clicked_at"].min()
    logs = impressions.merge(first, on="impression_id", how="left")
    in_window = logs["clicked_at"].notna() & (logs["clicked_at"] - logs["shown_at"] < pd.Timedelta(days=WINDOW_DAYS))
    logs["reward"] = logs["click"] = in_window.astype(int)
    catalog = read_any(folder, "catalog")
    if catalog is None:
        catalog = pd.DataFrame({"callout_id": sorted(logs["callout_id"].unique()), "family": "unknown", "value": 0.0})
    return logs, catalog


def _propensities(values: pd.Series, source: str) -> pd.Series:
    """The logged propensities as numbers; text such as 'abc' is named with its rows (the range (0, 1] is
    ope.check_logs' check)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        raise LogFileError(f"{source}: {int(bad.sum())} non-numeric `propensity` values "
                           f"(rows {values.index[bad][:3].tolist()}: {values[bad].head(3).tolist()})")
    return numbers.astype("float64")


def _check_clicks(impressions: pd.DataFrame, clicks: pd.DataFrame, folder: Path) -> None:
    """Duplicate impression ids, clicks for unknown impressions and clicks before their impression would each
    bias the rewards silently: refuse them by name, as the nightly gates do."""
    duplicated = impressions.loc[impressions["impression_id"].duplicated(keep=False), "impression_id"]
    if len(duplicated):
        raise ope.OPEError(f"{folder}/impressions: {duplicated.nunique()} duplicate impression ids, e.g. "
                           f"{sorted(duplicated.unique())[:5]}")
    joined = clicks.merge(impressions[["impression_id", "shown_at"]], on="impression_id", how="left")
    unknown = joined.loc[joined["shown_at"].isna(), "impression_id"]
    if len(unknown):
        raise ope.OPEError(f"{folder}/clicks: {len(unknown)} clicks for unknown impressions, e.g. "
                           f"{sorted(unknown.unique())[:5]}")
    early = joined.loc[joined["clicked_at"] < joined["shown_at"], "impression_id"]
    if len(early):
        raise ope.OPEError(f"{folder}/clicks: {len(early)} clicks before their impression, e.g. "
                           f"{sorted(early.unique())[:5]}")


def reward_model_for(name: str, logs: pd.DataFrame, policy: pd.DataFrame, catalog: pd.DataFrame,
                     context: list[str], folds: int, seed: int):
    """(reward model for ope.estimate, its fitted settings): `cell` is ope's table, the others are
    cross-fitted prediction matrices over every action the logs or the policy name."""
    if name not in REWARD_MODELS:
        raise ope.OPEError(f"unknown reward model {name!r}: use one of {list(REWARD_MODELS)}")
    if REWARD_MODELS[name] is None:
        return ope.cell_means(logs, context + ACTION, shrink_to=ACTION), {"strength": 20.0}
    logs = logs.reset_index(drop=True)
    actions = pd.concat([logs[ACTION], policy[ACTION]]).drop_duplicates().reset_index(drop=True)
    attributes = actions.merge(catalog.astype({"callout_id": str}), on="callout_id", how="left")
    options = {}
    if name == "eb":
        features = context
        if "impression_id" in logs.columns:   # a resample's repeated rows are not independent evidence
            options["unique_on"] = "impression_id"
        if "family" in attributes.columns:
            attributes["family"] = attributes["family"].fillna("unknown").astype(str)
            options["family"] = "family"
    else:
        features = list(dict.fromkeys(context + [c for c in FEATURES if c in logs.columns]))
        attributes = attributes[ACTION + [c for c in ("family", "value") if c in attributes.columns]]
    predictions = reward.cross_fit(REWARD_MODELS[name], logs, actions, features,
                                   ACTION, attributes=attributes, folds=folds, seed=seed, **options)
    settings = [getattr(m, "hyper_", None) or {"c": getattr(m, "c_", None)} for m in predictions.models]
    if name == "trees":
        settings = [dict(predictions.models[0].params)]
    finite = [{k: (float(v) if v is not None and np.isfinite(v) else None) for k, v in fit.items()} for fit in settings]
    return predictions, {"folds": folds, "fits": finite}


def policy_for(name: str, logs: pd.DataFrame, catalog: pd.DataFrame, seed: int = 0):
    """(policy table, evaluation logs, context columns)."""
    if Path(name).suffix == ".csv":
        if not Path(name).exists():
            raise ope.OPEError(f"no policy table at {name}")
        table = pd.read_csv(name)
        lacking = [c for c in ACTION + ["probability"] if c not in table.columns]
        if lacking:
            raise ope.OPEError(f"policy {name} lacks columns {lacking}; it has {list(table.columns)}")
        table[ACTION[0]] = table[ACTION[0]].astype(str)
        table[ACTION[1]] = table[ACTION[1]].astype(str)
        context = [c for c in table.columns if c not in ACTION + ["probability"]]
        if not context:   # one distribution for every impression: match on a constant
            table, logs, context = table.assign(_all=0), logs.assign(_all=0), ["_all"]
        missing = [c for c in context if c not in logs.columns]
        if missing:
            raise ope.OPEError(f"policy {name}: context columns {missing} are not in the logs ({list(logs.columns)})")
        return table, logs, context
    if name == "uniform":
        actions = logs[ACTION].drop_duplicates()
        table = logs[["segment"]].drop_duplicates().merge(actions, how="cross")
        table["probability"] = 1.0 / len(actions)
        return table, logs, ["segment"]
    if name in METHODS:
        cut = logs["shown_at"].quantile(0.5)
        early, late = logs[logs["shown_at"] <= cut], logs[logs["shown_at"] > cut]
        live = catalog[catalog["callout_id"].isin(late["callout_id"])]
        table, _ = serving_table(name, early, live, sorted(late["segment"].unique()), seed,
                                 layout_ids=sorted(late["layout_id"].unique()))
        return table, late, ["segment"]
    raise ope.OPEError(f"unknown policy {name!r}: use uniform, one of {METHODS}, or a CSV policy table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", required=True, help="logs folder (impressions, clicks[, catalog])")
    parser.add_argument("--policy", required=True, help=f"uniform, {', '.join(METHODS)}, or a policy CSV")
    parser.add_argument("--output", required=True, help="folder for estimates.csv and estimates.json")
    parser.add_argument("--reward-model", default="eb", choices=list(REWARD_MODELS),
                        help="reward model of DM, DR, SNDR, Switch-DR and DRos (default eb)")
    parser.add_argument("--folds", type=_at_least(1), default=3,
                        help="cross-fitting folds of the eb, logistic and trees models (1: one fit on all rows)")
    parser.add_argument("--bootstrap", type=_at_least(2), default=200, help="bootstrap resamples of the logs")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - the intervals' coverage")
    parser.add_argument("--intervals", choices=["fixed", "refit"], default="fixed",
                        help="fixed: resample the logs with the fitted reward model and tuning held fixed (fast; "
                             "DM's interval then misses the model's own noise); refit: refit the reward model and "
                             "retune Switch-DR/DRos on every resample (slower, honest for the DM too)")
    parser.add_argument("--seed", type=int, default=0)


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


def _refit_intervals(estimates: pd.DataFrame, args, logs: pd.DataFrame, table, catalog, context) -> pd.DataFrame:
    """Percentile intervals (and std) from resamples of the logs on each of which the reward model is refit
    and every estimator recomputed; the point estimates stay those of the full logs."""
    rng = np.random.default_rng(args.seed)
    logs = logs.reset_index(drop=True)
    draws = []
    for b in range(args.bootstrap):
        sample = logs.iloc[rng.integers(0, len(logs), len(logs))].reset_index(drop=True)
        model, _ = reward_model_for(args.reward_model, sample, table, catalog, context, args.folds, args.seed + b)
        draws.append(ope.estimate(sample, table, context, ACTION, reward_model=model, n_bootstrap=2)
                     .set_index("estimator")["value"])
    draws = pd.DataFrame(draws)
    low, high = draws.quantile(args.alpha / 2), draws.quantile(1 - args.alpha / 2)
    return estimates.assign(ci_low=estimates["estimator"].map(low), ci_high=estimates["estimator"].map(high),
                            std=estimates["estimator"].map(draws.std(ddof=0)))


def main(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise ope.OPEError(f"--alpha must lie in (0, 1), got {args.alpha}")
    logs, catalog = read_logs(args.logs)
    table, eval_logs, context = policy_for(args.policy, logs, catalog, args.seed)
    ope.check_logs(eval_logs, context + ACTION)
    model, settings = reward_model_for(args.reward_model, eval_logs, table, catalog, context, args.folds, args.seed)
    estimates = ope.estimate(eval_logs, table, context, ACTION, reward_model=model, n_bootstrap=args.bootstrap,
                             alpha=args.alpha, seed=args.seed)
    if args.intervals == "refit":
        estimates = _refit_intervals(estimates, args, eval_logs, table, catalog, context)
    estimates.insert(0, "policy", args.policy)
    estimates.insert(1, "reward_model", args.reward_model)
    estimates["logged_click_rate"] = float(eval_logs["reward"].mean())
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    estimates.to_csv(out / "estimates.csv", index=False)
    (out / "estimates.json").write_text(json.dumps(
        {"policy": args.policy, "reward_model": args.reward_model, "reward_model_settings": settings,
         "coverage": 1 - args.alpha, "bootstrap": args.bootstrap, "intervals": args.intervals,
         "estimates": ope.records(estimates)},
        indent=2, allow_nan=False))
    print(estimates.to_string(index=False))
    return 0
