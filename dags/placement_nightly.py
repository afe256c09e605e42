"""placement_nightly: wait for forecasts -> check inputs -> solve & publish -> simulate.

Runs on its own nightly schedule (an hour after demand_nightly) and waits, with a sensor in reschedule
mode, for the `forecasts` partition of its date: asset-triggered runs would have no logical date and
could not be backfilled. Publishes placement_plan and capacity_prices (Assets announce them to the
capacity domain). Task bodies are one line: the logic lives in echelon.models.placement.steps, which
`echelon placement <step> --date D` runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from echelon import catalog
from echelon.schedule import data_docs, data_partition, task_defaults

FORECASTS = catalog.demand.FORECASTS.asset()   # inlet: what the night reads from demand
PLAN = catalog.placement.PLAN.asset()
PRICES = catalog.placement.PRICES.asset()

DEFAULT_ARGS = task_defaults("placement", timeout=dt.timedelta(hours=2))


@dag(
    dag_id="placement_nightly",
    schedule="0 3 * * *",          # after demand_nightly (02:00); the sensor covers a late forecast
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["placement", "nightly"],
    doc_md=__doc__,
)
def placement_nightly():
    @task
    def partition(logical_date=None) -> str:
        return data_partition(logical_date)

    # `ds` is a reserved name in Airflow's task context: the data date travels as `day`.

    @task.sensor(poke_interval=300, timeout=6 * 3600, mode="reschedule", inlets=[FORECASTS])
    def wait_for_forecasts(day: str) -> bool:
        from echelon import lake
        return lake.exists(catalog.demand.FORECASTS, day)

    @task(inlets=[FORECASTS])
    def check_inputs(day: str) -> dict:
        from echelon.models.placement import steps
        return steps.check_inputs(day)

    @task(outlets=[PLAN, PRICES])
    def solve(day: str, outlet_events=None) -> dict:
        from echelon.models.placement import steps
        summary = steps.solve(day)
        for asset in (PLAN, PRICES):
            outlet_events[asset].extra = {"ds": day, "objective": summary["objective"], "gap": summary["gap"]}
        return summary

    @task
    def simulate(day: str) -> dict:
        from echelon.models.placement import steps
        return steps.simulate(day)

    day = partition()
    wait_for_forecasts(day) >> check_inputs(day) >> solve(day) >> simulate(day) >> data_docs()


placement_nightly()
