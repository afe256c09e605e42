"""Policies side by side on the synthetic world: cumulative regret and click rate over time.

Each day every policy serves its share of the day's shoppers by Thompson sampling from its posterior as
of the previous night, exactly as production serves tonight's table tomorrow. Feedback is delayed the
same way as in the pipeline: an impression of day S is learned from on day S + WINDOW_DAYS, when its
attribution window has closed (pending impressions are never counted as non-clicks). Regret of an
impression = best true click rate for that segment among the callouts live that day - the rate of the
callout shown; "new-callout regret" is the part spent on callouts launched less than `new_days` ago.

CLI: echelon callouts simulate --impressions 100000 --days 50 --policies flat_ts,meta_ts,contextual
     --seed 42 --output DIR   (writes regret.csv, summary.json and regret.png)
This module is model code: it takes the world as an argument (anything with the shopper world's `start`,
`segment_weight`, `affinity`, `active(day)` and `rates(day)`); the tool's front in the callouts steps module
builds it (jobs/callouts/world.py) and hands it to `main`.
Each simulation is also an MLflow run `simulate` in the experiment `echelon-callouts` (tag stage=simulate,
ds = the world's first day; --no-mlflow skips it): the world's knobs as parameters, per policy the final
cumulative regret, new-callout regret and click rates as metrics, the regret and click-rate curves as metric
histories (step = impressions served so far), and regret.png, regret.csv and summary.json as artifacts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.catalog.callouts import WINDOW_DAYS
from echelon.models.callouts import bandits
from echelon.models.callouts.contextual import ContextualTS

log = logging.getLogger(__name__)
POLICIES = ("uniform", "flat_ts", "meta_ts", "contextual")


def fit_policy(name: str, counts: pd.DataFrame, arms: pd.DataFrame, segments: list[str], families: list[str],
               seed: int = 0):
    """Return a sampler: (segment codes of impressions, rng) -> chosen arm index into `arms`.

    counts: matured (segment, callout_id, impressions, clicks); arms: today's (segment, callout_id,
    family, value) rows, every live callout for every segment; segments (in the order of the codes) and
    families: the world's."""
    full = arms.merge(counts, on=["segment", "callout_id"], how="left").fillna({"impressions": 0, "clicks": 0})
    by_segment = [np.flatnonzero(full["segment"].to_numpy() == s) for s in segments]
    if name == "uniform":
        def draw(seg, rng):
            return np.array([rng.choice(by_segment[s]) for s in seg])
        return draw
    if name in ("flat_ts", "meta_ts"):
        post = bandits.posteriors(full, prior="flat" if name == "flat_ts" else "meta")
        a, b = post["alpha"].to_numpy(), post["beta"].to_numpy()

        def draw(seg, rng):
            out = np.empty(len(seg), int)
            for s, idx in enumerate(by_segment):
                who = np.flatnonzero(seg == s)
                if len(who):
                    sample = rng.beta(a[idx], b[idx], size=(len(who), len(idx)))
                    out[who] = idx[sample.argmax(axis=1)]
            return out
        return draw
    if name == "contextual":
        seen = full[full["impressions"] > 0]
        model = ContextualTS(segments, families).fit(seen) if len(seen) else None

        def draw(seg, rng):
            out = np.empty(len(seg), int)
            for s, idx in enumerate(by_segment):
                who = np.flatnonzero(seg == s)
                if not len(who):
                    continue
                if model is None:
                    out[who] = rng.choice(idx, size=len(who))
                else:
                    scores = model.sample_scores(full.iloc[idx], len(who), rng)
                    out[who] = idx[scores.argmax(axis=1)]
            return out
        return draw
    raise ValueError(f"unknown policy {name!r}; choose from {POLICIES}")


def run_policy(world, name: str, days: int, per_day: int, seed: int = 0, new_days: int = 14) -> pd.DataFrame:
    """Day-by-day results of one policy on `world` (jobs/callouts/world.World): impressions, clicks, expected
    regret, new-callout regret."""
    rng = np.random.default_rng([seed, POLICIES.index(name) if name in POLICIES else 99])
    traffic = np.random.default_rng([seed, 7])     # the same shoppers for every policy
    segments, families = list(world.segment_weight), list(world.affinity.columns)
    weights = np.array([world.segment_weight[s] for s in segments])
    pending: list[tuple[int, pd.DataFrame]] = []    # (day shown, per-impression outcomes)
    matured = pd.DataFrame({"segment": pd.Series(dtype=str), "callout_id": pd.Series(dtype=str),
                            "impressions": pd.Series(dtype=int), "clicks": pd.Series(dtype=int)})
    rows = []
    for k in range(days):
        day = world.start + dt.timedelta(days=k)
        live = world.active(day)
        rates = world.rates(day)
        arms = rates.merge(live[["callout_id", "family", "value", "launched_on"]], on="callout_id")
        draw = fit_policy(name, matured, arms[["segment", "callout_id", "family", "value"]], segments, families,
                          seed + k)
        seg = traffic.choice(len(segments), size=per_day, p=weights)
        chosen = arms.iloc[draw(seg, rng)].reset_index(drop=True)
        best = rates.groupby("segment")["rate"].max()
        regret = best.loc[chosen["segment"]].to_numpy() - chosen["rate"].to_numpy()
        launched = pd.to_datetime(chosen["launched_on"])
        is_new = (launched > pd.Timestamp(world.start)) & ((pd.Timestamp(day) - launched).dt.days < new_days)
        clicks = traffic.random(per_day) < chosen["rate"].to_numpy()
        pending.append((k, chosen[["segment", "callout_id"]].assign(impressions=1, clicks=clicks.astype(int))))
        # tonight: impressions whose attribution window has closed join the posterior, exactly once
        ripe = [frame for shown, frame in pending if shown <= k - WINDOW_DAYS]
        pending = [(shown, frame) for shown, frame in pending if shown > k - WINDOW_DAYS]
        if ripe:
            matured = (pd.concat([matured, *ripe]).groupby(["segment", "callout_id"], as_index=False)
                       [["impressions", "clicks"]].sum())
        rows.append({"policy": name, "day": k, "date": day.isoformat(), "impressions": per_day,
                     "clicks": int(clicks.sum()), "expected_clicks": float(chosen["rate"].sum()),
                     "regret": float(regret.sum()), "new_callout_regret": float(regret[is_new.to_numpy()].sum()),
                     "new_callout_share": float(is_new.mean())})
    frame = pd.DataFrame(rows)
    frame["cumulative_impressions"] = frame["impressions"].cumsum()
    frame["cumulative_regret"] = frame["regret"].cumsum()
    frame["cumulative_new_callout_regret"] = frame["new_callout_regret"].cumsum()
    frame["click_rate"] = frame["expected_clicks"] / frame["impressions"]
    return frame


def simulate(world, policies=("flat_ts", "meta_ts", "contextual"), impressions: int = 100_000, days: int = 50,
             seed: int = 42) -> pd.DataFrame:
    """Every policy over `days` days of `world` (the same shoppers for each), `impressions` in all per policy."""
    per_day = max(1, impressions // days)
    frames = []
    for name in policies:
        started = time.time()
        frames.append(run_policy(world, name, days, per_day, seed))
        log.info("simulated %s: %d impressions in %.1f s, cumulative regret %.1f", name, per_day * days,
                 time.time() - started, frames[-1]["cumulative_regret"].iloc[-1])
    return pd.concat(frames, ignore_index=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    last = frame.sort_values("day").groupby("policy").tail(1).set_index("policy")
    totals = frame.groupby("policy").agg(clicks=("clicks", "sum"), expected_clicks=("expected_clicks", "sum"),
                                         impressions=("impressions", "sum"))
    out = pd.DataFrame({
        "impressions": totals["impressions"],
        "cumulative_regret": last["cumulative_regret"],
        "new_callout_regret": last["cumulative_new_callout_regret"],
        "click_rate": totals["expected_clicks"] / totals["impressions"],
        "observed_click_rate": totals["clicks"] / totals["impressions"],
    })
    return out.reset_index()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impressions", type=int, default=100_000, help="total impressions per policy")
    parser.add_argument("--days", type=int, default=50, help="days the impressions are spread over")
    parser.add_argument("--policies", default="flat_ts,meta_ts,contextual", help=f"comma separated, of {POLICIES}")
    parser.add_argument("--launch-every", type=int, default=4, help="a new callout every N days")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default="var/reports/callouts/simulate", help="folder for csv, json, png")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the simulation to MLflow")


def main(args: argparse.Namespace, world) -> int:
    """The tool on a world built from the same arguments (`make_world(args.seed, days=args.days,
    launch_every=args.launch_every)`, by the callouts steps module)."""
    from echelon.models.callouts.plots import regret_plot

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    frame = simulate(world, policies, args.impressions, args.days, args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "regret.csv", index=False)
    table = summary(frame)
    (out / "summary.json").write_text(json.dumps(table.to_dict(orient="records"), indent=2))
    regret_plot(frame, out / "regret.png")
    print(table.to_string(index=False))
    print(f"wrote {out / 'regret.csv'}, {out / 'summary.json'}, {out / 'regret.png'}")
    if not args.no_mlflow:
        params = {"impressions": args.impressions, "days": args.days, "policies": ",".join(policies),
                  "launch_every": args.launch_every, "seed": args.seed}
        run_id = log_to_mlflow(frame, table, out, params)
        print(f"logged MLflow run {run_id} (experiment echelon-callouts, run name simulate)")
    return 0


def log_to_mlflow(frame: pd.DataFrame, table: pd.DataFrame, out: Path, params: dict) -> str:
    """One MLflow run for a simulation: parameters, final metrics per policy, curves, plot and tables."""
    import mlflow
    from mlflow.entities import Metric

    from echelon import tracking

    start = str(frame["date"].min())
    with tracking.run("callouts", start, "simulate", stage="simulate") as active:
        mlflow.log_params(params)
        for r in table.itertuples():
            mlflow.log_metrics({f"{r.policy}_cumulative_regret": float(r.cumulative_regret),
                                f"{r.policy}_new_callout_regret": float(r.new_callout_regret),
                                f"{r.policy}_click_rate": float(r.click_rate),
                                f"{r.policy}_observed_click_rate": float(r.observed_click_rate)})
        # the curves, one point a day (step = impressions served so far), in batches of MLflow's limit
        now = int(time.time() * 1000)
        curve = [Metric(f"{r.policy}_{name}_curve", float(getattr(r, column)), now, int(r.cumulative_impressions))
                 for r in frame.itertuples()
                 for name, column in (("cumulative_regret", "cumulative_regret"), ("daily_click_rate", "click_rate"))]
        for k in range(0, len(curve), 1000):
            mlflow.MlflowClient().log_batch(active.info.run_id, metrics=curve[k:k + 1000])
        for name in ("regret.png", "regret.csv", "summary.json"):
            mlflow.log_artifact(str(out / name), "simulation")
        return active.info.run_id
