"""capacity_weekly: base limits -> requests -> clear -> statements -> simulate -> report, once a week.

A run at Monday 04:00 UTC clears the round whose cut-off was the Sunday before (ds = logical date - 1
day). Rounds of one period build on each other (grants reduce later capacity, later prices protect
earlier fees), so runs go one at a time, in date order (backfills too). Task bodies are one line: the
logic lives in echelon.models.capacity.steps (`echelon capacity <step> --ds D`).

The round needs placement's capacity_prices of its Sunday. The weekly cron stays (the round's cut-off is a
calendar fact, and Airflow backfills only time-based schedules); a sensor on the prices Asset's partition
waits for placement (itself triggered by demand's forecasts Asset) instead of failing. Scheduling on the
prices Asset would start a run every night (placement publishes daily), AssetOrTimeSchedule as well as
the weekly one: see ARCHITECTURE.md.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from echelon import catalog
from echelon.schedule import WEEKLY_CRON, data_docs, data_partition, outlet_extra, task_defaults

CAPACITY_ROUND = catalog.capacity.GRANTS.asset()
FORECASTS = catalog.demand.FORECASTS.asset()          # inlets: what the round reads from demand and placement
PRICES = catalog.placement.PRICES.asset()

DEFAULT_ARGS = task_defaults("capacity", timeout=dt.timedelta(hours=1))


@dag(
    dag_id="capacity_weekly",
    schedule=WEEKLY_CRON,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["capacity", "weekly"],
    doc_md=__doc__,
)
def capacity_weekly():
    @task
    def partition(logical_date=None) -> str:
        return data_partition(logical_date)

    # `ds` is reserved in Airflow's task context: the round date travels as `day`.

    @task.sensor(poke_interval=300, timeout=6 * 3600, mode="reschedule", inlets=[PRICES])
    def wait_for_prices(day: str) -> bool:
        from echelon import lake
        return lake.exists(catalog.placement.PRICES, day)

    @task(inlets=[FORECASTS])
    def base_limits(day: str) -> dict:
        from echelon.models.capacity import steps
        return steps.base_limits(day)

    @task
    def requests(day: str) -> dict:
        from echelon.models.capacity import steps
        return steps.requests(day)

    @task(inlets=[PRICES], outlets=[CAPACITY_ROUND])
    def clear(day: str, outlet_events=None) -> dict:
        from echelon.models.capacity import steps
        result = steps.clear(day)
        outlet_events[CAPACITY_ROUND].extra = outlet_extra([day], granted_cuft=result["summary"]["granted_cuft"])
        return result

    @task
    def statements(day: str) -> dict:
        from echelon.models.capacity import steps
        return steps.statements(day)

    @task
    def simulate(day: str) -> dict:
        from echelon.models.capacity import steps
        return steps.simulate(day)

    @task
    def report(day: str) -> str:
        from echelon.models.capacity import steps
        return steps.report(day)

    day = partition()
    wait_for_prices(day) >> base_limits(day) >> requests(day) >> clear(day) >> statements(day) >> simulate(day) >> report(day) >> data_docs()


capacity_weekly()
