"""Raw ingest: the retailer's source extract -> the raw demand tables of one partition date.

For partition ds it publishes
- raw/demand/sales  the canonical long history (item_id, location_id, timestamp, target, price, promo,
                    category, in_stock) from window_start(ds) to ds: at least the trailing `history_days`
                    days, starting on a date of a fixed grid every `window_step` days (below). Never a row
                    after ds.
- raw/demand/plan   the known future covariates (item_id, location_id, timestamp, price, promo,
                    category) for the days after ds, up to `plan_days` (56). It may hold items that have
                    no history yet (launches announced for the coming weeks).

The source (source/demand/sales and source/demand/plan, written by jobs/demand/world.py or a real
extract) is cumulative: partition S holds every day up to S, and its plan the days after S. A run for
ds reads source partition ds, or else the latest one whose date is >= ds (saying so); days between ds
and S come from the source history (the price/promo calendar as it happened), the rest from its plan.

A user file in the documented long format or the Kaggle store-item format (read by
echelon/formats.py) can be ingested instead with --input; its window moves on the same grid, and its
plan holds only rows of the file dated after ds without a target, if any.

The window's start moves in steps (window_step, default WINDOW_STEP_DAYS = 91): it is the latest grid
date (day numbers since 1970-01-01 divisible by window_step) that keeps at least history_days days, so the
window holds history_days .. history_days + window_step - 1 days. Consecutive nights then share their
start and the raw history of ds extends that of ds - 1 by one day, which lets the feature job reuse
yesterday's rows (jobs/demand/features.py); a strictly trailing window (window_step = 1) would drop the
oldest day every night and force a full feature build every night. Once per window_step days the start
moves and that night's features are built in full.

Incremental nights. The raw sales files hold one calendar month each (`m<yyyymm>-part-...`), so the feature
job reads only the months its lookback needs (`files_since`). When the latest earlier raw sales partition
(prev) has the same window start, the same schema, this layout, and its recorded fingerprint equals today's
for every date <= prev (nothing restated, missing or dropped), its files are hard-linked into ds's partition
with their recorded hashes, and only the rows dated after prev are written, gated and hashed (lake.publish
`carry`); a series that resumes after a gap across prev (which the suite's day-to-day check would see only on
the whole history) makes it a full write. The source extract is cumulative, so the night still reads it once
(the fingerprint) to know that nothing before prev changed. The manifest's `build` says "full" or
"incremental" and `build_reason` why.

Size: the source ingest (window, plan, the carried monthly files of an incremental night) and a user's
file share the window grid, the raw layout and the gates; one module keeps those rules in one place.

CLI: python -m echelon.jobs.demand.ingest --ds 2026-11-20 [--history-days 730] [--window-step 91] [--input FILE.csv]
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from echelon import lake
from echelon.demand_features import _normalise, raw_fingerprint
from echelon.jobs.demand.world import PLAN_COLUMNS, SALES_COLUMNS, SOURCE_PLAN, SOURCE_SALES
from echelon.catalog.demand import RAW_PLAN, RAW_SALES
from echelon.lake import Table

DEFAULT_HISTORY_DAYS = 730   # two years: yearly lags (364 days) still have a year of targets
WINDOW_STEP_DAYS = 91        # the window's start moves a quarter at a time: one full feature build per quarter
PLAN_DAYS = 56
MONTH = "_month"             # segment column of raw sales (not stored): one set of files per calendar month
MONTH_FILE = re.compile(r"m(\d{6})-part-")

Gate = Callable[[Path], None]


class IngestError(ValueError):
    """The source cannot give the requested partition: absent, too short, or malformed."""


def source_partition(ds: str) -> str:
    """The source partition to read for ds: ds itself, else the latest partition dated >= ds."""
    ds = lake.parse_ds(ds)
    sales = lake.partitions(SOURCE_SALES)
    candidates = [p for p in sales if p >= ds]
    if not candidates:
        raise IngestError(
            f"no source extract covers ds={ds}: {SOURCE_SALES} has partitions {_describe(sales)} under "
            f"{SOURCE_SALES.root()}; generate one (python -m echelon.jobs.demand.world --end {ds}) or "
            f"load the retailer's extract for a date >= {ds}")
    chosen = ds if ds in candidates else max(candidates)
    if not lake.exists(SOURCE_PLAN, chosen):
        raise IngestError(f"{SOURCE_SALES} has partition ds={chosen} but {SOURCE_PLAN} does not "
                          f"(looked in {SOURCE_PLAN.partition(chosen)}): the extract is incomplete")
    return chosen


def _describe(parts: list[str]) -> str:
    if not parts:
        return "none"
    return f"{parts[0]}..{parts[-1]} ({len(parts)})" if len(parts) > 3 else ", ".join(parts)


def _check_columns(frame_columns, required, where: str) -> None:
    missing = [c for c in required if c not in frame_columns]
    if missing:
        raise IngestError(f"{where}: missing column(s) {missing}; found {list(frame_columns)}")


def window_start(ds: str, history_days: int, window_step: int = WINDOW_STEP_DAYS) -> dt.date:
    """The first day of ds's raw history: the latest date on the window_step-day grid (day numbers since
    1970-01-01 divisible by window_step) at least history_days - 1 days before ds (see the module docstring)."""
    if window_step < 1:
        raise ValueError(f"window_step must be >= 1, got {window_step}")
    latest = dt.date.fromisoformat(ds) - dt.timedelta(days=history_days - 1)
    epoch = dt.date(1970, 1, 1)
    return epoch + dt.timedelta(days=(latest - epoch).days // window_step * window_step)


def history_window(sales, ds: str, history_days: int, window_step: int = WINDOW_STEP_DAYS):
    """Spark: the canonical rows with window_start(ds, history_days, window_step) <= timestamp <= ds."""
    from pyspark.sql import functions as F

    day = dt.date.fromisoformat(ds)
    first = window_start(ds, history_days, window_step)
    return (sales.where((F.col("timestamp") >= F.lit(first)) & (F.col("timestamp") <= F.lit(day)))
            .select(*SALES_COLUMNS))


def plan_window(sales, plan, ds: str, plan_days: int):
    """Spark: known covariates for ds < timestamp <= ds + plan_days, from the source's own history
    (days it already covers) and then its plan. The two never overlap in a well-formed extract."""
    from pyspark.sql import functions as F

    day = dt.date.fromisoformat(ds)
    last = day + dt.timedelta(days=plan_days)
    future = sales.select(*PLAN_COLUMNS).unionByName(plan.select(*PLAN_COLUMNS))
    return future.where((F.col("timestamp") > F.lit(day)) & (F.col("timestamp") <= F.lit(last)))


def catalog_gates(ds: str) -> dict[str, Gate]:
    """Each raw table's own suite from its catalog entry: what the DAG and the CLI gate with. A user's file
    may have no rows after ds, so an empty plan is published without its suite (whose checks of the first
    planned day cannot hold on no rows)."""
    day_after = (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()
    return {"sales": lake.gate_of(RAW_SALES, ds),
            "plan": _unless_empty(lake.gate_of(RAW_PLAN, ds, {"day_after_ds": day_after}))}


def _unless_empty(gate: Gate) -> Gate:
    def run_gate(staged: Path) -> None:
        import pyarrow.dataset as pads

        if pads.dataset(str(staged), format="parquet").count_rows():
            gate(staged)
    return run_gate


def _gate_for(gate: Gate | Mapping[str, Gate] | bool | None, table: Table, ds: str) -> Gate | None:
    """`gate=True`: the catalog's suites (catalog_gates); a callable: both tables; a mapping: per table."""
    if gate is True:
        gate = catalog_gates(ds)
    if gate is None or gate is False or callable(gate):
        return gate or None
    return gate.get(table.name)


def run(ds: str, history_days: int = DEFAULT_HISTORY_DAYS, gate: Gate | Mapping[str, Gate] | None = None,
        spark=None, plan_days: int = PLAN_DAYS, log=print, window_step: int = WINDOW_STEP_DAYS) -> dict:
    """Publish raw sales and plan for ds from the source extract. Returns both manifests.

    `gate` is handed to echelon.lake.publish: one callable for both tables, or a mapping
    {"sales": ..., "plan": ...} (a table without an entry is published ungated)."""
    from pyspark.sql import functions as F

    from echelon.spark import get_spark

    ds = lake.parse_ds(ds)
    if history_days < 1 or plan_days < 0:
        raise ValueError(f"history_days must be >= 1 and plan_days >= 0, got {history_days}, {plan_days}")
    began = time.time()
    source_ds = source_partition(ds)
    if source_ds != ds:
        log(f"ingest: no source partition for ds={ds}; using the cumulative extract ds={source_ds} "
            f"(the latest partition dated >= {ds})")
    spark = spark or get_spark("echelon-ingest")
    sales = lake.read_spark(spark, SOURCE_SALES, source_ds).drop("ds")
    plan = lake.read_spark(spark, SOURCE_PLAN, source_ds).drop("ds")
    _check_columns(sales.columns, SALES_COLUMNS, f"{SOURCE_SALES} ds={source_ds}")
    _check_columns(plan.columns, PLAN_COLUMNS, f"{SOURCE_PLAN} ds={source_ds}")

    history = history_window(sales, ds, history_days, window_step)
    normal = _normalise(history, f"{SOURCE_SALES} ds={source_ds}", with_target=True)
    # per-date row hashes (one pass over the window), so this night and the feature job can tell whether
    # yesterday's history is still today's without reading it again (jobs/demand/features.py)
    fingerprint = raw_fingerprint(normal)
    if not fingerprint["dates"]:
        first_source = sales.agg(F.min("timestamp")).first()[0]
        raise IngestError(f"{SOURCE_SALES} ds={source_ds} has no rows in the window ending at ds={ds} "
                          f"({history_days} days); the extract starts on {first_source}")
    first, last = min(fingerprint["dates"]), max(fingerprint["dates"])
    if last != ds:
        raise IngestError(f"{SOURCE_SALES} ds={source_ds} stops on {last}, before ds={ds}: "
                          f"a cumulative extract dated {source_ds} must cover every day up to it")
    schema = history.schema.simpleString()
    extra = {"source_ds": source_ds, "history_days": history_days, "plan_days": plan_days,
             "window_step": window_step, "window": [first, ds]}
    prev, reason = carry_base(ds, first, schema, fingerprint)
    if prev is not None and resumed_series(normal, prev):
        prev, reason = None, f"a series resumes after a gap across ds={prev}: the whole history is gated"
    month = F.concat(F.lit("m"), F.date_format(F.col("timestamp"), "yyyyMM"))
    if prev is None:     # one file per month (a shuffle by month: once per window move)
        rows, carry = history.withColumn(MONTH, month).repartition(MONTH), None
    else:
        rows = history.where(F.col("timestamp") > F.lit(dt.date.fromisoformat(prev))).coalesce(1).withColumn(MONTH, month)
        files = lake.read_manifest(RAW_SALES, prev)["files"]
        carry = {name: (RAW_SALES.partition(prev) / name, [entry["rows"], entry["row_sum"]])
                 for name, entry in files.items()}
    log(f"ingest: {RAW_SALES} ds={ds}: {'incremental' if prev else 'full'} write: {reason}")
    with lake.transaction(ds) as tx:   # sales and plan are published together or not at all
        sales_manifest = tx.publish(rows, RAW_SALES, gate=_gate_for(gate, RAW_SALES, ds), segment_by=MONTH,
                                    carry=carry, extra={**extra, "raw_fingerprint": fingerprint, "spark_schema": schema,
                                                        "build": "incremental" if prev else "full",
                                                        "build_reason": reason})
        log(f"ingest: {RAW_SALES} ds={ds}: {sales_manifest['rows']:,} rows, {first}..{ds} "
            f"({sum(s[0] for _, s in (carry or {}).values()):,} carried from ds={prev})")
        plan_manifest = tx.publish(plan_window(sales, plan, ds, plan_days), RAW_PLAN,
                                   gate=_gate_for(gate, RAW_PLAN, ds), extra=extra)
    log(f"ingest: {RAW_PLAN} ds={ds}: {plan_manifest['rows']:,} rows for the {plan_days} days after ds; "
        f"done in {time.time() - began:.1f}s")
    return {"sales": sales_manifest, "plan": plan_manifest, "source_ds": source_ds}


def carry_base(ds: str, first: str, schema: str, fingerprint: dict) -> tuple[str | None, str]:
    """The earlier raw sales partition whose files ds's partition can carry, or None and why not."""
    earlier = [p for p in lake.partitions(RAW_SALES) if p < ds]
    if not earlier:
        return None, "no earlier raw sales partition"
    prev = max(earlier)
    manifest = lake.read_manifest(RAW_SALES, prev)
    if (manifest.get("window") or [None])[0] != first:
        return None, f"the window starts on {first}, ds={prev}'s on {(manifest.get('window') or ['?'])[0]}"
    if manifest.get("spark_schema") != schema:
        return None, f"ds={prev} has another schema (or none recorded)"
    files = manifest.get("files") or {}
    if not files or not all(MONTH_FILE.match(n) and "row_sum" in e for n, e in files.items()):
        return None, f"ds={prev}'s files are not laid out by month with recorded row sums"
    before = (manifest.get("raw_fingerprint") or {}).get("dates")
    now = {d: v for d, v in fingerprint["dates"].items() if d <= prev}
    if before != now:
        changed = sorted(d for d in set(now) | set(before or {}) if now.get(d) != (before or {}).get(d))
        return None, (f"the history dated <= {prev} differs from ds={prev}'s on {len(changed)} day(s)"
                      + (f", first {changed[0]}" if changed else "") + " (restated, missing or dropped)")
    return prev, f"rows dated <= {prev} carried from ds={prev}"


def resumed_series(normal, prev: str) -> bool:
    """Whether a series with rows after prev has its previous row before prev (a gap the suite's check of
    consecutive days sees only on the whole history, not on the new rows alone)."""
    from pyspark.sql import functions as F

    day = F.lit(dt.date.fromisoformat(prev))
    spans = (normal.groupBy("item_id", "location_id")
             .agg(F.max(F.when(F.col("date") <= day, F.col("date"))).alias("last_old"),
                  F.min(F.when(F.col("date") > day, F.col("date"))).alias("first_new")))
    return bool(spans.where(F.col("last_old").isNotNull() & F.col("first_new").isNotNull()
                            & (F.datediff("first_new", "last_old") != 1)).limit(1).collect())


def files_since(ds: str, since: dt.date) -> list[Path] | None:
    """The files of raw sales ds that can hold rows dated >= since (their month is not earlier), or None
    where the partition is not laid out by month (written before this layout, or from a user's file)."""
    found = lake.folder(RAW_SALES, ds)
    names = list((lake.read_manifest(RAW_SALES, ds).get("files") or {}))
    months = {name: MONTH_FILE.match(name) for name in names}
    if found is None or not names or any(m is None for m in months.values()):
        return None
    return [found / name for name, m in sorted(months.items()) if m.group(1) >= f"{since:%Y%m}"]


# ----------------------------------------------------------------------------------------------
# A user's own file
# ----------------------------------------------------------------------------------------------

def read_user_file(path: str | Path, date_format: str | None = None) -> pd.DataFrame:
    """A long-format or Kaggle store-item file -> canonical frame (echelon/formats.py)."""
    from echelon.formats import read_any

    return read_any(path, date_format)


def ingest_file(path: str | Path, ds: str | None = None, history_days: int = DEFAULT_HISTORY_DAYS,
                gate: Gate | Mapping[str, Gate] | bool | None = None, plan_days: int = PLAN_DAYS, log=print,
                date_format: str | None = None, window_step: int = WINDOW_STEP_DAYS) -> dict:
    """Publish raw sales (and plan) for ds from a user's file; ds defaults to its last dated target.

    The history starts at window_start(ds, history_days, window_step), as the source ingest's (run), so
    the raw sales of consecutive dates extend each other and the feature job can build them
    incrementally; window_step=1 keeps a strictly trailing window of history_days days.
    Only the columns the file has are published (the feature job treats absent covariates as
    unknown); a daily file is required, since the raw tables are daily."""
    frame = read_user_file(path, date_format)
    stamps = pd.to_datetime(frame["timestamp"])
    if (stamps != stamps.dt.normalize()).any():
        sample = frame[stamps != stamps.dt.normalize()].head()
        raise IngestError(f"{path}: the raw demand tables are daily, but some timestamps have a time of "
                          f"day; aggregate to days first (or forecast the file directly with "
                          f"`echelon forecast`):\n{sample.to_string(index=False)}")
    frame = frame.assign(timestamp=stamps.dt.date)
    known = frame["target"].notna()
    if ds is None:
        ds = max(frame.loc[known, "timestamp"]).isoformat()
    ds = lake.parse_ds(ds)
    day = dt.date.fromisoformat(ds)
    if history_days < 1 or plan_days < 0:
        raise IngestError(f"history_days must be >= 1 and plan_days >= 0, got {history_days}, {plan_days}")
    if window_step < 1:
        raise IngestError(f"window_step must be >= 1, got {window_step}")
    first = window_start(ds, history_days, window_step)
    columns = [c for c in SALES_COLUMNS if c in frame.columns]
    history = frame.loc[known & (frame["timestamp"] >= first) & (frame["timestamp"] <= day), columns]
    if history.empty:
        dates = frame["timestamp"]
        raise IngestError(f"{path}: no rows between {first} and ds={ds}; the file covers "
                          f"{min(dates)}..{max(dates)}")
    plan_columns = [c for c in PLAN_COLUMNS if c in frame.columns]
    future = frame.loc[(frame["timestamp"] > day)
                       & (frame["timestamp"] <= day + dt.timedelta(days=plan_days)), plan_columns]
    extra = {"source_file": str(Path(path).resolve()), "history_days": history_days, "plan_days": plan_days,
             "window_step": window_step, "window": [min(history["timestamp"]).isoformat(), ds]}
    with lake.transaction(ds) as tx:
        sales_manifest = tx.publish(history.reset_index(drop=True), RAW_SALES,
                                    gate=_gate_for(gate, RAW_SALES, ds), extra=extra)
        plan_manifest = tx.publish(future.reset_index(drop=True), RAW_PLAN,
                                   gate=_gate_for(gate, RAW_PLAN, ds), extra=extra)
    log(f"ingest: {path} -> {RAW_SALES} ds={ds}: {sales_manifest['rows']:,} rows; "
        f"{RAW_PLAN}: {plan_manifest['rows']:,} rows")
    return {"sales": sales_manifest, "plan": plan_manifest, "source_file": str(path)}


def main(argv: list[str] | None = None) -> int:
    """The CLI: every publish goes through the tables' catalog gates (as the DAG's), bad input exits 2."""
    parser = argparse.ArgumentParser(prog="python -m echelon.jobs.demand.ingest",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ds", help="partition date YYYY-MM-DD (with --input: defaults to the file's last date)")
    parser.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS)
    parser.add_argument("--plan-days", type=int, default=PLAN_DAYS)
    parser.add_argument("--window-step", type=int, default=WINDOW_STEP_DAYS,
                        help="the history's start moves on a grid of this many days (1: strictly trailing)")
    parser.add_argument("--input", help="ingest this long-format or Kaggle store-item file instead of the source")
    parser.add_argument("--date-format", help="--input's date format (strptime codes, e.g. %%d/%%m/%%Y): "
                        "required where its dates read both day-first and month-first")
    args = parser.parse_args(argv)
    if not args.input and not args.ds:
        parser.error("--ds is required (unless --input is given)")
    from echelon.cli import run_reporting

    def command() -> int:
        if args.input:
            ingest_file(args.input, ds=args.ds, history_days=args.history_days, plan_days=args.plan_days, gate=True,
                        date_format=args.date_format, window_step=args.window_step)
        else:
            run(args.ds, history_days=args.history_days, plan_days=args.plan_days, gate=True,
                window_step=args.window_step)
        return 0

    return run_reporting("demand ingest", command)


if __name__ == "__main__":
    sys.exit(main())
