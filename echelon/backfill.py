"""Backfill a nightly DAG over data dates with Airflow 3's own backfill (executed by a running scheduler).

Analysts think in data dates; Airflow's backfill takes logical (run) dates. This converts one to the other
and calls `airflow backfill create`, reprocessing completed runs so that a re-run replaces partitions."""
from __future__ import annotations

import argparse
import datetime as dt

from echelon.airflow_env import airflow
from echelon.schedule import nightly_run_date


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dag", required=True, help="DAG id, e.g. demand_nightly")
    parser.add_argument("--from", dest="start", required=True, help="first data date (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", required=True, help="last data date (YYYY-MM-DD), inclusive")
    parser.add_argument("--max-active-runs", type=int, default=2)
    parser.add_argument("--reprocess", default="completed", choices=["none", "failed", "completed"])


def backfill_command(dag: str, start: str, end: str, max_active_runs: int = 2,
                     reprocess: str = "completed") -> list[str]:
    if dt.date.fromisoformat(end) < dt.date.fromisoformat(start):
        raise ValueError(f"backfill range is empty: --from {start} is after --to {end}")
    return ["backfill", "create", "--dag-id", dag,
            "--from-date", nightly_run_date(start).isoformat(), "--to-date", nightly_run_date(end).isoformat(),
            "--reprocess-behavior", reprocess, "--max-active-runs", str(max_active_runs)]


def main(args: argparse.Namespace) -> int:
    airflow("dags", "unpause", args.dag)  # a scheduler only executes backfills of unpaused DAGs
    airflow(*backfill_command(args.dag, args.start, args.end, args.max_active_runs, args.reprocess))
    print(f"Backfill of {args.dag} for data dates {args.start}..{args.end} created; a running scheduler "
          f"(`make airflow`) executes it. Watch it in the Airflow UI or with `echelon airflow dags list-runs {args.dag}`.")
    return 0
