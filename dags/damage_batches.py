"""damage_batches: score one landed image batch: gate the manifest -> score (Spark) -> log to MLflow.

Triggered when an imaging station announces a batch on the BATCH_LANDED asset (event extra: batch_id,
manifest, ds), or by hand / in tests with the same three values as params (`day` is the landing date:
`ds` is reserved in Airflow's context). One active run at a time, so publishes into a day's partition
never race. Task bodies are one line: the logic is echelon.models.damage.steps, which
`echelon damage step <step> --ds D --batch-id B --manifest M` runs the same way.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, get_current_context, task

from echelon import catalog
from echelon.schedule import data_docs, task_defaults

BATCH_LANDED = Asset("echelon://landing/damage/batches")
DAMAGE_SCORES = catalog.damage.SCORES.asset()

DEFAULT_ARGS = task_defaults("damage", timeout=dt.timedelta(hours=1), retry_delay=dt.timedelta(minutes=1))


@dag(
    dag_id="damage_batches",
    schedule=[BATCH_LANDED],
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"batch_id": Param("", type="string"), "manifest": Param("", type="string"),
            "day": Param("", type="string", description="landing date YYYY-MM-DD (the damage_scores partition)")},
    tags=["damage", "per-batch"],
    doc_md=__doc__,
)
def damage_batches():
    @task
    def batch() -> dict:
        """The batch from the params, else from the latest triggering asset event's extra."""
        from echelon.models.damage import steps

        context = get_current_context()
        params = dict(context["params"])
        if not params.get("manifest"):
            for events in (context.get("triggering_asset_events") or {}).values():
                for event in events:
                    params.update({k: v for k, v in (event.extra or {}).items() if k in ("batch_id", "manifest", "ds")})
            params["day"] = params.get("ds", params.get("day"))
        return steps.batch_info(params["day"], params["batch_id"], params["manifest"])

    @task
    def gate_manifest(info: dict) -> dict:
        from echelon.models.damage import steps
        return steps.gate_manifest(info)

    @task(outlets=[DAMAGE_SCORES])
    def score(info: dict, outlet_events=None) -> dict:
        from echelon.models.damage import steps
        outcome = steps.score(info)
        outlet_events[DAMAGE_SCORES].extra = {k: outcome[k] for k in ("ds", "batch_id", "scored", "sidelined")}
        return outcome

    @task
    def log_batch(info: dict) -> dict:
        from echelon.models.damage import steps
        return steps.log_batch(info)

    info = batch()
    gate_manifest(info) >> score(info) >> log_batch(info) >> data_docs()


damage_batches()
