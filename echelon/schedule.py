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


def run_partitions(logical_date: dt.datetime | None, triggering_asset_events=None) -> list[str]:
    """The data dates a run processes. A run with a logical date (cron, manual with a date, backfill,
    dag.test, `echelon backfill` of an Asset-scheduled DAG) processes the day before it.

    An Asset-triggered run has no logical date: it processes the `ds` that its newest triggering event's
    `extra` carries (the producer's outlet sets it): the latest published date, whatever else Airflow hands
    it. Airflow hands a run every event since the DAG's previous Asset-triggered run; after a pause (a
    backlog of nights) or events coalesced between two scheduler loops the older dates are superseded, so
    a consumer that is unpaused runs once, for the latest date, not once per missed night. Events of a
    producer's backfill (`extra["backfill"]`, see outlet_extra) re-run nothing through the Asset: a date
    range is re-run by the consumer's own backfill (echelon.backfill), so an Asset run processes nightly
    publications only, and no date when every triggering event came from a backfill."""
    if logical_date is not None:
        return [data_partition(logical_date)]
    events = [event for found in (triggering_asset_events or {}).values() for event in found]
    missing = [str(getattr(event, "asset", event)) for event in events if not (event.extra or {}).get("ds")]
    if not events or missing:
        raise ValueError(f"no data date: the run has no logical date and its triggering Asset events "
                         f"{missing or 'are none'} carry no 'ds' in their extra; trigger it with a logical date")
    nightly = [event for event in events if not event.extra.get("backfill")]
    if not nightly:
        return []
    newest = max(nightly, key=lambda event: (getattr(event, "timestamp", None) or _EPOCH, event.extra["ds"]))
    return [newest.extra["ds"]]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def outlet_extra(days: list[str], backfill: bool = False, **facts) -> dict:
    """An outlet event's extra for a run over `days`: `ds` (the last), `days` when several, and `backfill`
    when the producing run is one of an Airflow backfill's (see run_partitions)."""
    return {"ds": days[-1], **({"days": days} if len(days) > 1 else {}),
            **({"backfill": True} if backfill else {}), **facts}


def is_backfill(dag_run) -> bool:
    """Whether an Airflow DagRun (a task's `dag_run` from its context) is one of a backfill's runs."""
    run_type = getattr(dag_run, "run_type", None)
    return getattr(run_type, "value", run_type) == "backfill"


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
