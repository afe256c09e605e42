"""damage_training (weekly): world -> train -> evaluate_and_promote.

Trains the supervised model, rebuilds the galleries, fits the fusion and picks the threshold at the
target false-positive rate, registers the result as @challenger, then moves @champion only when the
challenger's recall at that rate is higher on the same validation set. Batch scoring always loads
@champion. The labelled manifests default to the synthetic world under var/damage/world
(ECHELON_DAMAGE_TRAIN / _GALLERY / _VALID point at real ones).
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from echelon.schedule import WEEKLY_CRON, data_partition, task_defaults

DEFAULT_ARGS = task_defaults("damage", timeout=dt.timedelta(hours=3))


@dag(
    dag_id="damage_training",
    schedule=WEEKLY_CRON,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["damage", "weekly"],
    doc_md=__doc__,
)
def damage_training():
    @task
    def partition(logical_date=None) -> str:
        return data_partition(logical_date)

    # `ds` is a reserved name in Airflow's task context: the data date travels as `day`.

    @task
    def world(day: str) -> dict:
        from echelon.models.damage import steps
        return steps.world(day)

    @task
    def train(day: str) -> dict:
        from echelon.models.damage import steps
        return steps.train(day)

    @task
    def evaluate_and_promote(day: str) -> dict:
        from echelon.models.damage import steps
        return steps.evaluate_and_promote(day)

    day = partition()
    world(day) >> train(day) >> evaluate_and_promote(day)


damage_training()
