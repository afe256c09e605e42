"""Off-policy estimates of a policy's click rate from a logs folder, with bootstrap intervals.

`echelon callouts ope --logs DIR --policy NAME --output DIR`
- DIR holds impressions.csv|parquet, clicks.csv|parquet (and optionally catalog.csv): the format of
  `echelon callouts obd` and of ingest --logs. A click is a reward when it arrives within WINDOW_DAYS.
- NAME is `uniform`, a method (flat_ts, meta_ts, contextual: fit on the earlier half of the logs by time,
  evaluated on the later half, so it never sees what it is scored on), or a CSV policy table: action
  columns callout_id, layout_id, a probability, and any context columns to match on (segment, position).
Writes estimates.csv and estimates.json (dm, ipw, snipw, dr with 95% intervals).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from echelon.jobs.callouts.ingest import _read_any
from echelon.jobs.callouts.timestamps import TimestampError, parse_utc
from echelon.models.callouts import ope
from echelon.models.callouts.policy import METHODS, serving_table
from echelon.models.callouts.world import WINDOW_DAYS

ACTION = ["callout_id", "layout_id"]


def read_logs(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bandit logs with reward, catalog) from a logs folder."""
    folder = Path(folder)
    impressions, clicks = _read_any(folder, "impressions"), _read_any(folder, "clicks")
    if impressions is None:
        raise ope.OPEError(f"no impressions.csv or impressions.parquet in {folder}")
    try:
        impressions["shown_at"] = parse_utc(impressions["shown_at"], "shown_at", f"{folder}/impressions")
        if clicks is None or clicks.empty:
            clicks = pd.DataFrame({"impression_id": pd.Series(dtype=str),
                                   "clicked_at": pd.Series(dtype="datetime64[us, UTC]")})
        clicks["clicked_at"] = parse_utc(clicks["clicked_at"], "clicked_at", f"{folder}/clicks")
    except TimestampError as error:
        raise ope.OPEError(str(error)) from error
    first = clicks.groupby("impression_id", as_index=False)["clicked_at"].min()
    logs = impressions.merge(first, on="impression_id", how="left")
    in_window = logs["clicked_at"].notna() & (logs["clicked_at"] - logs["shown_at"] < pd.Timedelta(days=WINDOW_DAYS))
    logs["reward"] = logs["click"] = in_window.astype(int)
    catalog = _read_any(folder, "catalog")
    if catalog is None:
        catalog = pd.DataFrame({"callout_id": sorted(logs["callout_id"].unique()), "family": "unknown", "value": 0.0})
    return logs, catalog


def policy_for(name: str, logs: pd.DataFrame, catalog: pd.DataFrame, seed: int = 0):
    """(policy table, evaluation logs, context columns)."""
    if Path(name).suffix == ".csv":
        table = pd.read_csv(name)
        table[ACTION[0]] = table[ACTION[0]].astype(str)
        context = [c for c in table.columns if c not in ACTION + ["probability"]]
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
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    logs, catalog = read_logs(args.logs)
    table, eval_logs, context = policy_for(args.policy, logs, catalog, args.seed)
    estimates = ope.estimate(eval_logs, table, context, ACTION, n_bootstrap=args.bootstrap, seed=args.seed)
    estimates.insert(0, "policy", args.policy)
    estimates["logged_click_rate"] = float(eval_logs["reward"].mean())
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    estimates.to_csv(out / "estimates.csv", index=False)
    (out / "estimates.json").write_text(json.dumps(ope.records(estimates), indent=2))
    print(estimates.to_string(index=False))
    return 0
