"""membership_weekly: ingest the panel -> gate -> state features (Spark) -> fit Deep PQR -> counterfactuals.

A run at Monday 04:00 UTC processes the panel extract of the Sunday before (ds = logical date - 1 day):
ingest validates it (clear errors, then the raw gate), Spark attaches each month's next state (gated),
fit estimates the P, Q and R stages (an MLflow run with each stage's loss curve and the held-out
log-likelihood; the model registered @challenger and promoted to @champion when it beats it on the same
held-out customers), and counterfactual runs every scenario file of the folder under the @champion's
reward, publishing membership/counterfactual_shares through its gate. Task bodies are one line: the logic
lives in echelon.models.membership.steps (`echelon membership <step> --ds D`).
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from echelon import catalog
from echelon.schedule import WEEKLY_CRON, data_docs, data_partition, outlet_extra, task_defaults

SHARES = catalog.membership.SHARES.asset()

DEFAULT_ARGS = task_defaults("membership", timeout=dt.timedelta(hours=1))


@dag(
    dag_id="membership_weekly",
    schedule=WEEKLY_CRON,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["membership", "weekly"],
    doc_md=__doc__,
)
def membership_weekly():
    @task
    def partition(logical_date=None) -> str:
        return data_partition(logical_date)

    # `ds` is reserved in Airflow's task context: the data date travels as `day`.

    @task
    def ingest(day: str) -> dict:
        from echelon.models.membership import steps
        return steps.ingest(day)

    @task
    def features(day: str) -> dict:
        from echelon.models.membership import steps
        return steps.features_step(day)

    @task
    def fit(day: str) -> dict:
        from echelon.models.membership import steps
        return steps.fit(day)

    @task(outlets=[SHARES])
    def counterfactual(day: str, outlet_events=None) -> dict:
        from echelon.models.membership import steps
        result = steps.counterfactual(day)
        outlet_events[SHARES].extra = outlet_extra([day], scenarios=result["scenarios"])
        return result

    day = partition()
    ingest(day) >> features(day) >> fit(day) >> counterfactual(day) >> data_docs()


membership_weekly()
