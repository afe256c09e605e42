"""demand_nightly: ingest -> features -> train (weekly) -> evaluate & promote -> score -> report.

Every step publishes through the lake's staging + Great Expectations gate + atomic swap, so a failed
gate fails its task and publishes nothing. Task bodies are one line: the logic lives in
echelon.models.demand.steps, which the `echelon demand <step> --ds D` command runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task

from echelon.schedule import NIGHTLY_CRON, data_partition

FORECASTS = Asset("echelon://published/demand/forecasts")

DEFAULT_ARGS = {
    "owner": "demand",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "execution_timeout": dt.timedelta(hours=2),
}


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

    @task
    def ingest(ds: str) -> dict:
        from echelon.models.demand import steps
        return steps.ingest(ds)

    @task
    def features(ds: str) -> dict:
        from echelon.models.demand import steps
        return steps.features(ds)

    @task
    def train(ds: str) -> dict:
        from echelon.models.demand import steps
        return steps.train(ds)

    @task
    def evaluate_and_promote(ds: str) -> dict:
        from echelon.models.demand import steps
        return steps.evaluate_and_promote(ds)

    @task(outlets=[FORECASTS])
    def score(ds: str, outlet_events=None) -> dict:
        from echelon.models.demand import steps
        manifest = steps.score(ds)
        outlet_events[FORECASTS].extra = {"ds": ds, "rows": manifest["rows"]}
        return manifest

    @task
    def report(ds: str) -> str:
        from echelon.models.demand import steps
        return steps.report(ds)

    ds = partition()
    published = ingest(ds) >> features(ds) >> train(ds) >> evaluate_and_promote(ds) >> score(ds)
    published >> report(ds)


demand_nightly()
