"""demand_nightly: ingest -> features -> train (weekly) -> evaluate & promote -> score -> report.

Training is mapped: `candidates` lists the models due for the date (none on a day without retraining,
which skips the mapped task), `train_candidate` runs once per model (its own task in the UI, its own
retries, its own MLflow run `train-<name>`), and `choose_challenger` marks the best by wQL @challenger.
The mapped tasks run side by side in Airflow's default_pool, at most ECHELON_DEMAND_TRAIN_PARALLEL at a
time over all runs of the DAG (max_active_tis_per_dag): 1 with the embedded SQLite MLflow store, whose
concurrent writers can fail with "database is locked"; 2 against an MLflow server.

Every step publishes through the lake's staging + Great Expectations gate + atomic swap, so a failed
gate fails its task and publishes nothing. Task bodies are one line: the logic lives in
echelon.models.demand.steps, which the `echelon demand <step> --ds D` command runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from echelon import catalog
from echelon.schedule import NIGHTLY_CRON, data_docs, data_partition, is_backfill, outlet_extra, task_defaults
from echelon.settings import get_settings

FORECASTS = catalog.demand.FORECASTS.asset()

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
    def candidates(day: str) -> list[str]:
        from echelon.models.demand import steps
        return steps.candidates(day)

    @task(pool="default_pool", max_active_tis_per_dag=get_settings().demand_train_parallel,
          map_index_template="{{ candidate }}")
    def train_candidate(day: str, model: str) -> dict:
        from echelon.models.demand import steps
        get_current_context()["candidate"] = model   # names the mapped task in the UI
        return steps.train_candidate(day, model)

    # none_failed: on a day without retraining the mapped task is skipped and this still runs (a no-op),
    # so evaluation and scoring go on with the champion
    @task(trigger_rule="none_failed")
    def choose_challenger(day: str, results: list[dict]) -> dict:
        from echelon.models.demand import steps
        return steps.choose_challenger(day, list(results or []))

    @task
    def evaluate_and_promote(day: str) -> dict:
        from echelon.models.demand import steps
        return steps.evaluate_and_promote(day)

    @task(outlets=[FORECASTS])
    def score(day: str, outlet_events=None, dag_run=None) -> dict:
        from echelon.models.demand import steps
        manifest = steps.score(day)
        # `ds` is placement_nightly's data date: it is scheduled on this Asset (run_partitions); a backfill's
        # events are marked so that they re-plan nothing (placement has its own backfill)
        outlet_events[FORECASTS].extra = outlet_extra([day], backfill=is_backfill(dag_run), rows=manifest["rows"])
        return manifest

    @task
    def report(day: str) -> str:
        from echelon.models.demand import steps
        return steps.report(day)

    day = partition()
    names = candidates(day)
    ingest(day) >> features(day) >> names
    chosen = choose_challenger(day, train_candidate.partial(day=day).expand(model=names))
    published = chosen >> evaluate_and_promote(day) >> score(day)
    published >> report(day) >> data_docs()


demand_nightly()
