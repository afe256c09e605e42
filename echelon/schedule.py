"""Partition dates from Airflow run dates, in one place. A nightly run at 02:00 UTC on day D+1 processes
the data of day D: the partition is always computed from the logical date, never from the wall clock."""
from __future__ import annotations

import datetime as dt

from echelon.settings import get_settings

NIGHTLY_CRON = "0 2 * * *"     # 02:00 UTC, after the day's sales have landed
WEEKLY_CRON = "0 4 * * 1"      # Mondays 04:00 UTC


def data_partition(logical_date: dt.datetime) -> str:
    """The data date a nightly run processes: the day before its logical date."""
    return (logical_date.date() - dt.timedelta(days=1)).isoformat()


def nightly_run_date(ds: str) -> dt.datetime:
    """The logical date of the nightly run that processes partition `ds` (inverse of data_partition)."""
    day = dt.date.fromisoformat(ds) + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, 2, 0, tzinfo=dt.timezone.utc)


def task_defaults(owner: str, timeout: dt.timedelta, retry_delay: dt.timedelta = dt.timedelta(minutes=2)) -> dict:
    """Every DAG's default_args: retries (ECHELON_TASK_RETRIES, default 2; tests set 0), delay, timeout."""
    return {"owner": owner, "retries": get_settings().task_retries,
            "retry_delay": retry_delay, "execution_timeout": timeout}


def data_docs():
    """Every DAG's last task: rebuild the Great Expectations Data Docs from the gates' stored results. A
    teardown, so it runs after a failed task too and never decides the run's state. (Gates skip the
    rebuild when they pass: once per run instead of once per gate.)"""
    from airflow.sdk import teardown

    @teardown
    def data_docs() -> str:
        from echelon.expectations.gate import build_docs
        return str(build_docs())

    return data_docs()
