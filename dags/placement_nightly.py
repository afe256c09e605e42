"""placement_nightly: check inputs -> solve & publish -> simulate, each time demand publishes forecasts.

Scheduled on the forecasts Asset (demand_nightly.score's outlet, whose event extra carries `ds`): an
Asset-triggered run has no logical date, so it takes its data date(s) from the triggering events
(echelon.schedule.run_partitions; several when demand's events were coalesced, e.g. during a demand
backfill: processed oldest first). A run triggered with a logical date (`airflow dags trigger -l`,
dag.test) processes the day before it, as every other DAG. Publishes placement_plan and capacity_prices,
whose events carry the same `ds`. Task bodies are one line: the logic lives in
echelon.models.placement.steps, which `echelon placement <step> --date D` runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from echelon import catalog
from echelon.schedule import data_docs, outlet_extra, run_partitions, task_defaults

FORECASTS = catalog.demand.FORECASTS.asset()   # schedule and inlet: what the night reads from demand
PLAN = catalog.placement.PLAN.asset()
PRICES = catalog.placement.PRICES.asset()

DEFAULT_ARGS = task_defaults("placement", timeout=dt.timedelta(hours=2))


@dag(
    dag_id="placement_nightly",
    schedule=[FORECASTS],          # runs when demand_nightly has published the night's forecasts
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["placement", "nightly"],
    doc_md=__doc__,
)
def placement_nightly():
    @task
    def partitions() -> list[str]:
        context = get_current_context()
        return run_partitions(context.get("logical_date"), context.get("triggering_asset_events"))

    # `ds` is a reserved name in Airflow's task context: the data dates travel as `days`.

    @task(inlets=[FORECASTS])
    def check_inputs(days: list[str]) -> list[dict]:
        from echelon.models.placement import steps
        return [steps.check_inputs(day) for day in days]

    @task(outlets=[PLAN, PRICES])
    def solve(days: list[str], outlet_events=None) -> list[dict]:
        from echelon.models.placement import steps
        summaries = [steps.solve(day) for day in days]
        for asset in (PLAN, PRICES):
            outlet_events[asset].extra = outlet_extra(days, objective=summaries[-1]["objective"], gap=summaries[-1]["gap"])
        return summaries

    @task
    def simulate(days: list[str]) -> list[dict]:
        from echelon.models.placement import steps
        return [steps.simulate(day) for day in days]

    days = partitions()
    check_inputs(days) >> solve(days) >> simulate(days) >> data_docs()


placement_nightly()
