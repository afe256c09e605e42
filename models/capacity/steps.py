"""The weekly capacity round, one function per DAG task: read (jobs/capacity/rounds.py) -> pure logic
(models/capacity/mechanism.py, report.py) -> publish through the gates (jobs/capacity/rounds.py).

    base_limits -> requests -> clear -> statements -> simulate -> report

A round's date ds is its cut-off (the Sunday the weekly run processes); its period is the calendar
month of ds. `echelon capacity <step> --ds YYYY-MM-DD` runs any step by hand exactly as the DAG does;
`echelon capacity clear --requests FILE.csv --capacity CUBES --output DIR` and
`echelon capacity period --rounds DIR... --output DIR` do the same on files, without the lake
(models/capacity/files.py).
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from echelon import lake, settings
from echelon.catalog.capacity import BASE_LIMITS, GRANTS, RAW_REQUESTS, REQUESTS, ROUNDS, SETTLEMENTS, STATEMENTS  # noqa: F401
from echelon.jobs.capacity import rounds as io
from echelon.jobs.capacity.periods import (PeriodClosed, closed_on, ensure_open,  # noqa: F401
                                           period_bounds, period_of, previous_period, rounds_in_period)
from echelon.models.capacity import files, mechanism as mech, report as pure
from echelon.settings import get_settings

log = logging.getLogger(__name__)
report_dir = functools.partial(settings.report_dir, "capacity")


def _settings() -> dict:
    config = get_settings().capacity
    return {"credit_share": float(mech.CREDIT_SHARE if config.credit_share is None else config.credit_share),
            "safety_buffer": float(mech.SAFETY_BUFFER if config.safety_buffer is None else config.safety_buffer),
            "cover_days": config.cover_days}


# ---- steps ----------------------------------------------------------------------------------------

def base_limits(ds: str, spark=None) -> dict:
    """Base limits of the round's period: computed at its first round and frozen for the later ones."""
    ensure_open(ds)
    frozen = io.frozen_limits(ds)
    if frozen is not None:
        limits, announced = frozen
        return io.publish_limits(limits, ds, announced=announced)
    from echelon.jobs.capacity import sellers

    limits = mech.base_limits(sellers.sellers(ds, spark), cover_days=_settings()["cover_days"])
    limits.insert(0, "period", period_of(ds))
    return io.publish_limits(limits, ds, announced=ds)


def requests(ds: str) -> dict:
    """Validate the week's requests (clear errors first, then the Great Expectations gate) into raw."""
    ensure_open(ds)
    limits = io.limits(ds)
    cutoff = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(hours=23, minutes=59, seconds=59)
    frame = mech.validate_requests(io.landed_requests(ds), sellers=set(limits["seller_id"]),
                                   cutoff=cutoff, where=f"{REQUESTS} ds={ds}")
    params = {"sellers": sorted(limits["seller_id"].unique()), "storage_types": list(mech.STORAGE_TYPES),
              "cutoff_epoch": int(cutoff.timestamp())}
    return io.publish_requests(frame, ds, params)


def offered_capacity(ds: str, limits: pd.DataFrame) -> dict[str, float]:
    """Program capacity per storage type for the round (see mechanism.program_capacity)."""
    inputs = io.capacity_inputs(ds)
    if inputs is None:
        from echelon.jobs.capacity.sellers import CAPACITY_PRICES

        raise mech.CapacityError(f"program capacity is missing for ds={ds}: {CAPACITY_PRICES} has no partition "
                                 f"ds={ds} (placement publishes it; run placement for that date first)")
    facilities, prices, granted = inputs
    share = limits.groupby("storage_type")["base_limit_cuft"].sum()
    return mech.program_capacity(facilities, prices, share, granted, _settings()["safety_buffer"])


def clear(ds: str) -> dict:
    """Clear the round: cap each request, clear every storage type's pool, publish grants and rounds
    together, log the round to MLflow with its demand/supply curve."""
    ensure_open(ds)
    limits = io.limits(ds)
    frame = pure.capped_requests(io.valid_requests(ds), limits)
    result = mech.clear_round(frame, offered_capacity(ds, limits))
    grants = result.grants.drop(columns=["pool", "request_cap_cuft"]).assign(period=period_of(ds))
    grants = grants.sort_values("request_id").reset_index(drop=True)
    manifests = io.publish_round(grants, result.pools.assign(period=period_of(ds)), ds)
    _log_round(ds, grants, result)
    return {"summary": result.summary(), "rows": {k: m["rows"] for k, m in manifests.items()}}


def _log_round(ds: str, grants: pd.DataFrame, result: mech.RoundResult) -> None:
    import mlflow

    from echelon import tracking
    from echelon.models.capacity.plots import curve_plot

    summary = result.summary()
    plot = curve_plot(grants, result.pools, report_dir(ds) / "curves.png", title=f"Capacity round ds={ds}")
    with tracking.run("capacity", ds, f"round-{ds}", stage="clear", period=period_of(ds)):
        mlflow.log_params({"period": period_of(ds), **_settings()})
        mlflow.log_metrics({k: float(summary[k]) for k in ("granted_cuft", "capacity_cuft", "requested_cuft",
                                                             "fill_ratio", "requests", "granted_requests")})
        for pool, info in summary["pools"].items():
            if info["clearing_price"] is not None:
                mlflow.log_metric(f"clearing_price_{pool}", info["clearing_price"])
            mlflow.log_metric(f"granted_cuft_{pool}", info["granted_cuft"])
        mlflow.log_artifact(str(plot), "plots")


def statements(ds: str, spark=None) -> dict:
    """Price protection over the period's rounds so far (open statements), and, at the first round of a
    new period, the previous period's settlement with credits."""
    ensure_open(ds)
    out = {"statements": io.publish_statements(pure.statement_lines(io.period_grants(ds)), ds)["rows"]}
    previous = previous_period(period_of(ds))
    closed = closed_on(previous)
    if closed is None or closed == ds:
        settled = settle_period(previous, ds, spark)
        if settled is not None:
            out["settlements"] = io.publish_settlement(settled, ds, previously_closed=closed)
    return out


def settle_period(period: str, ds: str, spark=None) -> pd.DataFrame | None:
    """Per-seller settlement of a finished period (report.settlement); None without rounds."""
    from echelon.jobs.capacity import sellers
    from echelon.spark import get_spark

    start, end = period_bounds(period)
    lines = pure.statement_lines(io.period_grants(end))
    if lines.empty:
        return None
    usage = sellers.period_usage(spark or get_spark("echelon-capacity"), ds, start, end)
    return pure.settlement(period, lines, usage, io.first_limits(end), _settings()["credit_share"])


def simulate(ds: str, seeds=(1, 2, 3)) -> dict:
    """The market simulation on this round's sellers, logged to MLflow and kept for the report."""
    import mlflow

    from echelon import tracking
    from echelon.models.capacity import market

    limits = io.limits(ds)
    capacity = io.round_pools(ds)["capacity_cuft"].sum()
    table = market.compare(market.agents_from_limits(limits), capacity, seeds=seeds)
    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "market.csv", index=False)
    with tracking.run("capacity", ds, f"market-{ds}", stage="simulate"):
        mlflow.log_params({"seeds": ",".join(map(str, seeds)), "agents": len(limits), "capacity_cuft": capacity})
        for row in table.itertuples():
            mlflow.log_metrics({f"{row.variant}_productivity": row.sales_per_cuft, f"{row.variant}_surplus": row.seller_surplus})
        mlflow.log_artifact(str(folder / "market.csv"), "market")
    return {"market": table.to_dict("records")}


def report(ds: str) -> str:
    """The round's HTML page (report.html) in the round's report folder."""
    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    market = pd.read_csv(folder / "market.csv") if (folder / "market.csv").exists() else None
    path = folder / "index.html"
    path.write_text(pure.html(ds, period_of(ds), io.round_pools(ds), io.statement_lines(ds), market, io.settlement(ds)))
    return str(path)


def world(ds: str) -> dict:
    from echelon.jobs.capacity import world as job

    return job.run(ds)


STEPS = {"world": world, "base_limits": base_limits, "requests": requests, "clear": clear,
         "statements": statements, "simulate": simulate, "report": report}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="step", required=True)
    for name in STEPS:
        if name != "clear":
            sub.add_parser(name, help=f"pipeline step {name} for a round date").add_argument("--ds", required=True)
    c = sub.add_parser("clear", help="clear a round: --ds D (pipeline) or --requests FILE --capacity C --output DIR")
    c.add_argument("--ds", help="round date (pipeline step)")
    c.add_argument("--requests", type=Path, help="CSV: request_id, seller_id, storage_type, max_fee_per_cuft, "
                   "cuft_requested, submitted_at")
    c.add_argument("--capacity", help="cubic feet: 50000, or standard=40000,oversize=10000")
    c.add_argument("--cutoff", help="reject requests submitted after this time (ISO, UTC)")
    c.add_argument("--output", type=Path)
    p = sub.add_parser("period", help="price protection and credits across the rounds of a period")
    p.add_argument("--ds", help="round date: recompute the period's statements in the lake (pipeline step)")
    p.add_argument("--rounds", type=Path, nargs="+", help="`clear` output folders, earliest round first")
    p.add_argument("--incremental-sales", type=Path, help="CSV: seller_id, incremental_sales")
    p.add_argument("--credit-share", type=float, default=mech.CREDIT_SHARE)
    p.add_argument("--output", type=Path)


def _usage_error(message: str) -> int:
    print(f"echelon capacity: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    if args.step == "clear" and args.requests is not None:
        if args.capacity is None or args.output is None:
            return _usage_error("clear --requests needs --capacity and --output")
        result = files.clear_file(args.requests, files.parse_capacity(args.capacity), args.output, args.cutoff)
    elif args.step == "period" and args.rounds:
        if args.output is None:
            return _usage_error("period --rounds needs --output")
        result = files.period_files(args.rounds, args.output, args.incremental_sales, args.credit_share).to_dict("records")
    else:
        if args.ds is None:
            return _usage_error(f"{args.step} needs --ds (or the file arguments)")
        step = "statements" if args.step == "period" else args.step
        result = STEPS[step](lake.parse_ds(args.ds))
    print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0
