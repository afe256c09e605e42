"""placement_nightly: check inputs -> solve & publish -> simulate, each time demand publishes forecasts.

Scheduled on the forecasts Asset (demand_nightly.score's outlet, whose event extra carries `ds`): an
Asset-triggered run has no logical date, so it plans the data date of its newest triggering event
(echelon.schedule.run_partitions): the night demand has just published. Older events that Airflow hands
the same run (a backlog after placement was paused, events coalesced between scheduler loops) are
superseded: the first run after an unpause plans the latest date only. Events of a demand backfill
(extra `backfill`) plan nothing through the Asset; a date range is re-planned by placement's own backfill,
`echelon backfill --dag placement_nightly --from A --to B`, which Airflow refuses for an Asset schedule and
echelon.backfill therefore makes of one run per data date with its logical date (a run with a logical date,
as `airflow dags trigger -l` and dag.test, processes the day before it). Publishes placement_plan and
capacity_prices, whose events carry the same `ds`. Task bodies are one line: the logic lives in
echelon.models.placement.steps, which `echelon placement <step> --date D` runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

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
        days = run_partitions(context.get("logical_date"), context.get("triggering_asset_events"))
        if not days:
            raise AirflowSkipException("every triggering forecasts event came from a demand backfill: "
                                       "re-plan those dates with echelon backfill --dag placement_nightly")
        return days

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
