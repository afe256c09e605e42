"""demand_nightly: ingest -> features -> train (weekly) -> evaluate & promote -> score -> report.

Every step publishes through the lake's staging + Great Expectations gate + atomic swap, so a failed
gate fails its task and publishes nothing. Task bodies are one line: the logic lives in
echelon.models.demand.steps, which the `echelon demand <step> --ds D` command runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task

from echelon.schedule import NIGHTLY_CRON, data_docs, data_partition, task_defaults

FORECASTS = Asset("echelon://published/demand/forecasts")

DEFAULT_ARGS = task_defaults("demand", timeout=dt.timedelta(hours=2))


@dag(
    dag_id="demand_nightly",
    schedule=NIGHTLY_CRON,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["demand", "nightly"],
    doc_md=__doc__,
)
def demand_nightly():
    @task
    def partition(logical_date=None) -> str:
        return data_partition(logical_date)

    # `ds` is a reserved name in Airflow's task context: the data date travels as `day`.

    @task
    def ingest(day: str) -> dict:
        from echelon.models.demand import steps
        return steps.ingest(day)

    @task
    def features(day: str) -> dict:
        from echelon.models.demand import steps
        return steps.features(day)

    @task
    def train(day: str) -> dict:
        from echelon.models.demand import steps
        return steps.train(day)

    @task
    def evaluate_and_promote(day: str) -> dict:
        from echelon.models.demand import steps
        return steps.evaluate_and_promote(day)

    @task(outlets=[FORECASTS])
    def score(day: str, outlet_events=None) -> dict:
        from echelon.models.demand import steps
        manifest = steps.score(day)
        outlet_events[FORECASTS].extra = {"ds": day, "rows": manifest["rows"]}
        return manifest

    @task
    def report(day: str) -> str:
        from echelon.models.demand import steps
        return steps.report(day)

    day = partition()
    published = ingest(day) >> features(day) >> train(day) >> evaluate_and_promote(day) >> score(day)
    published >> report(day) >> data_docs()


demand_nightly()
