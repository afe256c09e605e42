"""Backfill a DAG over data dates with Airflow 3's own backfill (executed by a running scheduler).

Analysts think in data dates; Airflow's backfill takes logical (run) dates. Every Echelon run processes
the day before its logical date (echelon.schedule.data_partition), whatever its time of day (demand at
02:00, capacity on Mondays at 04:00), so data dates FROM..TO are the runs whose logical dates fall on the
days FROM+1..TO+1. Completed runs are reprocessed, so that a re-run replaces partitions.

Airflow's `backfill create` refuses a DAG whose schedule is not periodic (placement_nightly runs on demand's
forecasts Asset). Such a DAG is backfilled here as what a backfill is made of: one run per data date with
its logical date (`airflow dags trigger -l`, the nightly run date of that day, created in date order; the
DAG's max_active_runs queues them), and a date that already has a run is cleared to run again
(`--reprocess`: completed clears finished runs, failed only failed ones, none skips them); a scheduler
executes them (ARCHITECTURE.md).

Airflow applies a backfill's max_active_runs independently of the DAG's own: a DAG whose runs must go one
at a time, in date order (capacity rounds, callouts, placement), would run out of order under a larger
backfill limit. So the limit defaults to the DAG's own, and a larger one is refused."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from typing import Callable

from echelon.airflow_env import airflow
from echelon.schedule import data_partition, nightly_run_date


class BackfillError(ValueError):
    """A backfill that must not be created; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dag", required=True, help="DAG id, e.g. demand_nightly")
    parser.add_argument("--from", dest="start", required=True, help="first data date (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", required=True, help="last data date (YYYY-MM-DD), inclusive")
    parser.add_argument("--max-active-runs", type=int, default=None,
                        help="runs at once (default and upper bound: the DAG's own max_active_runs)")
    parser.add_argument("--reprocess", default="completed", choices=["none", "failed", "completed"])
    parser.add_argument("--dry-run", action="store_true", help="list the runs the backfill would create, create none")


def run_window(start: str, end: str) -> tuple[dt.datetime, dt.datetime]:
    """The logical dates of the runs that process data dates start..end (inclusive), at any time of day."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if last < first:
        raise BackfillError(f"backfill range is empty: --from {start} is after --to {end}")
    day = dt.timedelta(days=1)
    utc = dt.timezone.utc
    return (dt.datetime.combine(first + day, dt.time(0, 0), utc),
            dt.datetime.combine(last + day, dt.time(23, 59, 59), utc))


def active_runs(dag: str, requested: int | None, dag_limit: int) -> int:
    """How many runs of the backfill may run at once: the DAG's own limit unless fewer are asked for."""
    if requested is None:
        return dag_limit
    if requested < 1:
        raise BackfillError(f"--max-active-runs must be at least 1, got {requested}")
    if requested > dag_limit:
        raise BackfillError(f"{dag} allows {dag_limit} active run(s) at a time (its runs build on each other "
                            f"in date order); --max-active-runs {requested} would break that")
    return requested


def backfill_command(dag: str, start: str, end: str, max_active_runs: int, reprocess: str = "completed") -> list[str]:
    first, last = run_window(start, end)
    return ["backfill", "create", "--dag-id", dag, "--from-date", first.isoformat(), "--to-date", last.isoformat(),
            "--reprocess-behavior", reprocess, "--max-active-runs", str(max_active_runs)]


def json_rows(out: subprocess.CompletedProcess) -> list[dict] | None:
    """The JSON list an `airflow ... -o json` command printed (its last line that is one), or None."""
    return next((json.loads(line) for line in reversed(out.stdout.splitlines()) if line.startswith("[")), None)


def dag_details(dag: str) -> dict:
    """The DAG as the dag-processor serialised it (fails clearly for an unknown DAG)."""
    out = airflow("dags", "details", dag, "-o", "json", check=False, capture_output=True, text=True)
    rows = json_rows(out)
    if out.returncode != 0 or not rows:
        raise BackfillError(f"no DAG {dag!r} in Airflow's metadata database (is the dag-processor running, "
                            f"is the id right?): {out.stderr.strip()[-500:]}")
    return rows[0]


def periodic(details: dict) -> bool:
    """Whether Airflow can backfill the DAG itself (a time-based schedule). The CLI's JSON prints every
    value as a string ("False")."""
    return str(details.get("timetable_periodic", True)).strip().lower() not in ("false", "0", "")


FINISHED = {"success", "failed"}


def run_plan(start: str, end: str, existing: dict[str, str], reprocess: str) -> list[tuple[str, str, dt.datetime]]:
    """(action, data date, logical date) for each data date start..end of a DAG backfilled run by run:
    `trigger` a new run, `clear` a run that exists (state in `existing`, by data date) so that it runs again,
    or `skip` it (reprocess none, a run not failed under reprocess failed, or one still queued or running)."""
    run_window(start, end)
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    plan = []
    for k in range((last - first).days + 1):
        ds = (first + dt.timedelta(days=k)).isoformat()
        state = existing.get(ds)
        if state is None:
            action = "trigger"
        elif state in FINISHED and (reprocess == "completed" or (reprocess == "failed" and state == "failed")):
            action = "clear"
        else:
            action = "skip"
        plan.append((action, ds, nightly_run_date(ds)))
    return plan


def existing_runs(dag: str) -> dict[str, str]:
    """The state of the DAG's runs that have a logical date, by the data date they process."""
    out = airflow("dags", "list-runs", dag, "-o", "json", check=False, capture_output=True, text=True)
    rows = json_rows(out) or []
    return {data_partition(dt.datetime.fromisoformat(r["logical_date"].replace("Z", "+00:00"))): r["state"]
            for r in rows if r.get("logical_date")}


def backfill_run_by_run(args: argparse.Namespace) -> int:
    """A backfill of a DAG that Airflow cannot backfill (no periodic schedule): see the module docstring."""
    plan = run_plan(args.start, args.end, existing_runs(args.dag), args.reprocess)
    for action, ds, logical in plan:
        print(f"{args.dag}: data date {ds} (logical date {logical.isoformat()}): {action}")
    if args.dry_run:
        return 0
    airflow("dags", "unpause", args.dag)
    for action, ds, logical in plan:
        if action == "trigger":
            done = airflow("dags", "trigger", args.dag, "-l", logical.isoformat(), check=False,
                           capture_output=True, text=True)
        elif action == "clear":
            done = airflow("tasks", "clear", args.dag, "-s", logical.isoformat(), "-e", logical.isoformat(), "-y",
                           *(["--only-failed"] if args.reprocess == "failed" else []), check=False,
                           capture_output=True, text=True)
        else:
            continue
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
            failed = BackfillError(f"airflow could not {action} the run of {args.dag} for data date {ds} "
                                   f"(exit status {done.returncode}); its output is above")
            failed.exit_status = 1   # Airflow's state, not the user's input
            raise failed
    print(f"Backfill of {args.dag} for data dates {args.start}..{args.end}: one run per date, "
          f"{sum(a != 'skip' for a, _, _ in plan)} to run; a running scheduler (`make airflow`) executes them. "
          f"Watch them with `echelon airflow dags list-runs {args.dag}`.")
    return 0


def create_retrying_locks(create: Callable[[], subprocess.CompletedProcess], attempts: int = 3,
                          wait_s: float = 5.0) -> subprocess.CompletedProcess:
    """Run `airflow backfill create` (create), echoing its output; again, up to `attempts` times, while it fails
    only because the embedded SQLite metadata database was locked by another Airflow process. Airflow removes a backfill
    whose runs hit a lock error, so that it can be created again."""
    def echoed(created: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
        sys.stdout.write(created.stdout)
        sys.stderr.write(created.stderr)
        return created

    for attempt in range(1, attempts):
        created = echoed(create())
        if created.returncode == 0 or "database is locked" not in created.stdout + created.stderr:
            return created
        print(f"echelon backfill: Airflow's metadata database was locked (attempt {attempt} of {attempts}); "
              f"creating the backfill again in {wait_s:g} s", file=sys.stderr)
        time.sleep(wait_s)
    return echoed(create())


def main(args: argparse.Namespace) -> int:
    run_window(args.start, args.end)   # a bad range fails before Airflow is asked anything
    details = dag_details(args.dag)
    runs = active_runs(args.dag, args.max_active_runs, int(details["max_active_runs"]))
    if not periodic(details):
        return backfill_run_by_run(args)
    command = backfill_command(args.dag, args.start, args.end, runs, args.reprocess)
    if args.dry_run:
        return airflow(*command, "--dry-run", check=False).returncode
    airflow("dags", "unpause", args.dag)  # a scheduler only executes backfills of unpaused DAGs
    created = create_retrying_locks(lambda: airflow(*command, check=False, capture_output=True, text=True))
    if created.returncode != 0:
        refused = BackfillError(f"airflow backfill create exited with status {created.returncode} for {args.dag} "
                                f"({args.start}..{args.end}); its output is above. Airflow keeps one active backfill "
                                f"per DAG: if another is running, wait until it completes or cancel it in the "
                                f"Airflow UI (Browse > Backfills), then run this again")
        refused.exit_status = 1   # Airflow's state, not the user's input (echelon.cli.exit_status)
        raise refused
    print(f"Backfill of {args.dag} for data dates {args.start}..{args.end} created ({runs} run(s) at a time); "
          f"a running scheduler (`make airflow`) executes it. Watch it in the Airflow UI or with "
          f"`echelon airflow dags list-runs {args.dag}`.")
    return 0
