"""callouts_nightly: ingest -> feedback -> train -> evaluate & promote -> serve.

Lands the day's impressions and the clicks that arrived (gated: propensities in (0, 1], no clicks for
unknown impressions or before them, no duplicate impressions), rebuilds the matured feedback of the
trailing window with Spark, fits the candidate bandit policies, evaluates them off-policy, promotes with
confidence, and publishes tomorrow's serving table (segment, callout_id, layout_id, probability).
Task bodies are one line: the logic lives in echelon.models.callouts.steps, which
`echelon callouts <step> --ds D` runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from echelon import catalog
from echelon.schedule import NIGHTLY_CRON, data_docs, data_partition, task_defaults

SERVING = catalog.callouts.SERVING.asset()

DEFAULT_ARGS = task_defaults("callouts", timeout=dt.timedelta(hours=1))


@dag(
    dag_id="callouts_nightly",
    schedule=NIGHTLY_CRON,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,   # tonight's logs were served by last night's table: run the days in order
    default_args=DEFAULT_ARGS,
    tags=["callouts", "nightly"],
    doc_md=__doc__,
)
def callouts_nightly():
    @task
    def partition(logical_date=None) -> str:
        return data_partition(logical_date)

    # `ds` is a reserved name in Airflow's task context: the data date travels as `day`.

    @task
    def ingest(day: str) -> dict:
        from echelon.models.callouts import steps
        return steps.ingest(day)

    @task
    def feedback(day: str) -> dict:
        from echelon.models.callouts import steps
        return steps.feedback(day)

    @task
    def train(day: str) -> dict:
        from echelon.models.callouts import steps
        return steps.train(day)

    @task
    def evaluate_and_promote(day: str) -> dict:
        from echelon.models.callouts import steps
        return steps.evaluate_and_promote(day)

    @task(outlets=[SERVING])
    def serve(day: str, outlet_events=None) -> dict:
        from echelon.models.callouts import steps
        manifest = steps.serve(day)
        outlet_events[SERVING].extra = {"ds": day, "rows": manifest["rows"]}
        return manifest

    day = partition()
    ingest(day) >> feedback(day) >> train(day) >> evaluate_and_promote(day) >> serve(day) >> data_docs()


callouts_nightly()
