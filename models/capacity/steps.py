"""The weekly capacity round, one function per DAG task; every gate is wired here, in one place.

    base_limits -> requests -> clear -> statements -> simulate -> report

A round's date ds is its cut-off (the Sunday the weekly run processes); its period is the calendar
month of ds. `echelon capacity <step> --ds YYYY-MM-DD` runs any step by hand exactly as the DAG does;
`echelon capacity clear --requests FILE.csv --capacity CUBES --output DIR` and
`echelon capacity period --rounds DIR... --output DIR` do the same on files, without the lake.

Size: every step of the weekly round plus the file-based tools (clear, period) behind one CLI.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from echelon import lake, settings
from echelon.catalog.capacity import BASE_LIMITS, GRANTS, RAW_REQUESTS, REQUESTS, ROUNDS, SETTLEMENTS, STATEMENTS
from echelon.jobs.capacity.periods import (PeriodClosed, closed_on, ensure_open,  # noqa: F401
                                           period_bounds, period_of, previous_period, rounds_in_period)
from echelon.models.capacity import mechanism as mech
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
    earlier = rounds_in_period(BASE_LIMITS, ds, before=True)
    if earlier:
        limits = lake.read(BASE_LIMITS, earlier[0]).drop(columns="ds")
        announced = earlier[0]
    else:
        from echelon.jobs.capacity import sellers

        limits = mech.base_limits(sellers.sellers(ds, spark), cover_days=_settings()["cover_days"])
        limits.insert(0, "period", period_of(ds))
        announced = ds
    return lake.publish(limits, BASE_LIMITS, ds, gate=True,
                        extra={"announced": announced})


def requests(ds: str) -> dict:
    """Validate the week's requests (clear errors first, then the Great Expectations gate) into raw."""

    ensure_open(ds)
    limits = lake.read(BASE_LIMITS, ds)
    cutoff = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(hours=23, minutes=59, seconds=59)
    frame = mech.validate_requests(lake.read(REQUESTS, ds).drop(columns="ds"), sellers=set(limits["seller_id"]),
                                   cutoff=cutoff, where=f"{REQUESTS} ds={ds}")
    params = {"sellers": sorted(limits["seller_id"].unique()), "storage_types": list(mech.STORAGE_TYPES),
              "cutoff_epoch": int(cutoff.timestamp())}
    return lake.publish(frame, RAW_REQUESTS, ds, gate=True, params=params)


def offered_capacity(ds: str, limits: pd.DataFrame) -> dict[str, float]:
    """Program capacity per storage type for the round (see mechanism.program_capacity)."""
    from echelon.jobs.capacity.sellers import CAPACITY_PRICES, FACILITIES, reference_partition

    if not lake.exists(CAPACITY_PRICES, ds):
        raise mech.CapacityError(f"program capacity is missing for ds={ds}: {CAPACITY_PRICES} has no partition "
                                 f"ds={ds} (placement publishes it; run placement for that date first)")
    facilities = lake.read(FACILITIES, reference_partition(FACILITIES, ds))
    facilities = facilities[facilities["facility_type"] == "FC"]   # sellers' stock lives in fulfillment centres
    granted = {}
    for earlier in rounds_in_period(GRANTS, ds, before=True):
        g = lake.read(GRANTS, earlier)
        for t, v in g.groupby("storage_type")["cuft_granted"].sum().items():
            granted[t] = granted.get(t, 0.0) + float(v)
    share = limits.groupby("storage_type")["base_limit_cuft"].sum()
    return mech.program_capacity(facilities, lake.read(CAPACITY_PRICES, ds), share, granted, _settings()["safety_buffer"])


def clear(ds: str) -> dict:
    """Clear the round: cap each request, clear every storage type's pool, publish grants and rounds,
    log the round to MLflow with its demand/supply curve."""
    ensure_open(ds)
    limits = lake.read(BASE_LIMITS, ds)
    frame = lake.read(RAW_REQUESTS, ds).drop(columns="ds")
    frame = frame.merge(limits[["seller_id", "storage_type", "request_cap_cuft"]], on=["seller_id", "storage_type"], how="left")
    # a seller without a base limit of that storage type gets the floor cap
    frame["request_cap_cuft"] = frame["request_cap_cuft"].fillna(mech.REQUEST_CAP_FLOOR)
    frame["cuft_asked"] = frame["cuft_requested"]
    frame["cuft_requested"] = np.minimum(frame["cuft_asked"], frame["request_cap_cuft"])
    capacity = offered_capacity(ds, limits)
    result = mech.clear_round(frame, capacity)
    grants = result.grants.drop(columns=["pool", "request_cap_cuft"]).assign(period=period_of(ds))
    grants = grants.sort_values("request_id").reset_index(drop=True)
    pools = result.pools.assign(period=period_of(ds))
    manifests = {"grants": lake.publish(grants, GRANTS, ds, gate=True),
                 "rounds": lake.publish(pools, ROUNDS, ds, gate=True)}
    summary = result.summary()
    _log_round(ds, grants, result)
    return {"summary": summary, "rows": {k: m["rows"] for k, m in manifests.items()}}


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
    out = {}
    lines = _period_lines(ds)
    out["statements"] = lake.publish(lines, STATEMENTS, ds, gate=True)["rows"]
    previous = previous_period(period_of(ds))
    closed = closed_on(previous)
    if closed is None or closed == ds:
        settled = settle_period(previous, ds, spark)
        if settled is not None:
            out["settlements"] = _publish_settlement(settled, ds, previously_closed=closed)
    return out


def _period_lines(ds: str, period_end: str | None = None) -> pd.DataFrame:
    rounds = rounds_in_period(GRANTS, period_end or ds)
    columns = ["period", "round", "request_id", "seller_id", "storage_type", "cuft_granted", "cleared_price",
               "protected_price", "fee"]
    if not rounds:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in columns[5:] else "string") for c in columns})
    grants = pd.concat([lake.read(GRANTS, r).drop(columns="ds").assign(round=r) for r in rounds], ignore_index=True)
    grants["pool"] = grants["storage_type"]
    return mech.period_lines(grants)[columns]


def settle_period(period: str, ds: str, spark=None) -> pd.DataFrame | None:
    """Per-seller settlement of a finished period: fees after price protection, incremental sales over
    the period's weeks (mechanism.incremental_sales), credits and net charge. None without rounds."""
    from echelon.jobs.capacity import sellers
    from echelon.spark import get_spark

    start, end = period_bounds(period)
    lines = _period_lines(ds, period_end=end)
    if lines.empty:
        return None
    limits = lake.read(BASE_LIMITS, rounds_in_period(BASE_LIMITS, end)[0])
    usage = sellers.period_usage(spark or get_spark("echelon-capacity"), ds, start, end)
    granted = lines.groupby(["seller_id", "storage_type"])["cuft_granted"].sum().rename("granted_cuft").reset_index()
    usage = granted.merge(usage, on=["seller_id", "storage_type"], how="left").merge(
        limits[["seller_id", "storage_type", "base_limit_cuft"]], on=["seller_id", "storage_type"], how="left").fillna(0.0)
    usage["incremental_sales"] = mech.incremental_sales(usage["sales"], usage["used_cuft"], usage["base_limit_cuft"],
                                                        usage["granted_cuft"]).round(2)
    per_seller, _ = mech.settle(lines, usage.groupby("seller_id")["incremental_sales"].sum(), _settings()["credit_share"])
    per_seller.insert(0, "period", period)
    per_seller["status"] = "closed"
    return per_seller


def _publish_settlement(settled: pd.DataFrame, ds: str, previously_closed: str | None) -> int:
    """Publish a closed period's settlement once. Re-running the closing round is allowed only when it
    gives exactly the same rows: a closed period's statements are never silently rewritten."""
    if previously_closed == ds:
        before = lake.read_manifest(SETTLEMENTS, ds)
        staged = _describe(settled)
        if (staged["rows"], staged["checksum"]) != (before["rows"], before["checksum"]):
            raise PeriodClosed(f"settlement of period {settled['period'].iloc[0]} (published ds={ds}) would change "
                               f"on this re-run ({before['rows']} -> {staged['rows']} rows, checksum differs); "
                               f"a closed period's statements are never rewritten")
    return lake.publish(settled, SETTLEMENTS, ds, gate=True)["rows"]


def _describe(frame: pd.DataFrame) -> dict:
    """Rows and checksum of a frame as lake.publish would record them."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        frame.to_parquet(Path(folder) / "part-00000.parquet", index=False)
        return lake.describe(Path(folder))


def simulate(ds: str, seeds=(1, 2, 3)) -> dict:
    """The market simulation on this round's sellers, logged to MLflow and kept for the report."""
    import mlflow

    from echelon import tracking
    from echelon.models.capacity import market

    limits = lake.read(BASE_LIMITS, ds)
    capacity = lake.read(ROUNDS, ds)["capacity_cuft"].sum()
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
    """An HTML page: the round per pool, the curves, the open statements and the market simulation."""
    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    pools = lake.read(ROUNDS, ds)
    lines = lake.read(STATEMENTS, ds)
    market_csv = folder / "market.csv"
    parts = [f"<h1>Capacity round ds={ds} (period {period_of(ds)})</h1>",
             "<h2>Pools</h2>", pools.to_html(index=False, float_format="{:,.2f}".format),
             '<img src="curves.png" width="900">',
             f"<h2>Open statements of the period ({len(lines)} granted lines)</h2>",
             lines.groupby("seller_id")[["cuft_granted", "fee"]].sum().reset_index().to_html(index=False, float_format="{:,.2f}".format)]
    if market_csv.exists():
        parts += ["<h2>Market simulation (same sellers, three allocation rules)</h2>",
                  pd.read_csv(market_csv).to_html(index=False, float_format="{:,.3f}".format)]
    if lake.exists(SETTLEMENTS, ds):
        parts += ["<h2>Settled period</h2>", lake.read(SETTLEMENTS, ds).to_html(index=False, float_format="{:,.2f}".format)]
    path = folder / "index.html"
    path.write_text("<html><body style='font-family:sans-serif'>" + "\n".join(parts) + "</body></html>")
    return str(path)


def world(ds: str) -> dict:
    from echelon.jobs.capacity import world as job

    return job.run(ds)


STEPS = {"world": world, "base_limits": base_limits, "requests": requests, "clear": clear,
         "statements": statements, "simulate": simulate, "report": report}


# ---- the files front: one round, one period --------------------------------------------------------

def parse_capacity(text: str) -> float | dict[str, float]:
    """'50000' (one pool) or 'standard=40000,oversize=10000' (one pool per storage type)."""
    if "=" not in text:
        return mech.check_capacity(_number(text))
    pools = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        pools[name.strip()] = mech.check_capacity(_number(value), name.strip())
    return pools


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text   # check_capacity names it


def clear_file(requests_csv: Path, capacity, output: Path, cutoff: str | None = None) -> dict:
    raw = pd.read_csv(requests_csv)
    types = set(raw["storage_type"].dropna().astype(str)) if "storage_type" in raw else set()
    known = set(capacity) if isinstance(capacity, dict) else types
    frame = mech.validate_requests(raw, storage_types=known, cutoff=cutoff, where=str(requests_csv))
    result = mech.clear_round(frame, capacity)
    output.mkdir(parents=True, exist_ok=True)
    grants = result.grants[["request_id", "cuft_granted", "fee_per_cuft", "seller_id", "storage_type", "pool"]]
    grants.to_csv(output / "grants.csv", index=False)
    summary = result.summary()
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def period_files(rounds: list[Path], output: Path, incremental_csv: Path | None, share: float) -> pd.DataFrame:
    """Rounds in order (each a `clear` output folder) -> price-protected lines and per-seller statements."""
    frames = []
    for k, folder in enumerate(rounds):
        if not (folder / "grants.csv").exists():
            raise FileNotFoundError(f"round {k + 1}: {folder / 'grants.csv'} not found (run `echelon capacity clear` first)")
        frames.append(pd.read_csv(folder / "grants.csv", dtype={"request_id": str, "seller_id": str}).assign(round=k + 1))
    grants = pd.concat(frames, ignore_index=True)
    incremental = pd.Series(dtype="float64")
    if incremental_csv is not None:
        table = pd.read_csv(incremental_csv, dtype={"seller_id": str})
        incremental = table.groupby("seller_id")["incremental_sales"].sum()
    per_seller, lines = mech.settle(mech.period_lines(grants), incremental, share)
    output.mkdir(parents=True, exist_ok=True)
    lines.to_csv(output / "lines.csv", index=False)
    per_seller.to_csv(output / "statements.csv", index=False)
    return per_seller


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


def main(args: argparse.Namespace) -> int:
    if args.step == "clear" and args.requests is not None:
        if args.capacity is None or args.output is None:
            raise SystemExit("echelon capacity clear --requests needs --capacity and --output")
        result = clear_file(args.requests, parse_capacity(args.capacity), args.output, args.cutoff)
    elif args.step == "period" and args.rounds:
        if args.output is None:
            raise SystemExit("echelon capacity period --rounds needs --output")
        result = period_files(args.rounds, args.output, args.incremental_sales, args.credit_share).to_dict("records")
    else:
        if args.ds is None:
            raise SystemExit(f"echelon capacity {args.step} needs --ds (or the file arguments)")
        step = "statements" if args.step == "period" else args.step
        result = STEPS[step](lake.parse_ds(args.ds))
    print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0
