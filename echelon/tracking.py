"""MLflow conventions shared by every domain: one experiment per domain, tagged runs, registry aliases.

A new model version becomes @challenger; it becomes @champion only when it beats the champion on the
same evaluation window (`promote`). Scoring always loads @champion.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from echelon.lake import code_version
from echelon.settings import get_settings

CHAMPION, CHALLENGER = "champion", "challenger"


def configure() -> str:
    """Point MLflow at the configured store (creating the SQLite folder when it is the default)."""
    import mlflow

    settings = get_settings()
    if settings.mlflow_uri.startswith("sqlite:///"):
        Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    return settings.mlflow_uri


def experiment(domain: str) -> str:
    """Get or create the domain's experiment (artifacts under the configured artifact root)."""
    import mlflow

    configure()
    name = f"echelon-{domain}"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = get_settings().mlflow_artifacts
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=f"{location}/{domain}")
    except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel task
        return mlflow.get_experiment_by_name(name).experiment_id


@contextmanager
def run(domain: str, ds: str, run_name: str, **tags):
    """An MLflow run tagged with the partition date, the Airflow run id and the code version."""
    import mlflow

    experiment_id = experiment(domain)
    all_tags = {"ds": ds, "domain": domain, "code_version": code_version(),
                **get_settings().airflow_context,
                **{k: str(v) for k, v in tags.items()}}
    close_killed_tries(experiment_id, all_tags)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as active:
        yield active


def close_killed_tries(experiment_id: str, tags: dict) -> list[str]:
    """Mark KILLED the runs an earlier try of this same Airflow task left RUNNING.

    A task killed mid-run (SIGKILL, a lost worker) never ends its MLflow run, which would otherwise show as
    running forever in the UI. Airflow runs one try of a task instance at a time, so when try n starts, a
    RUNNING run tagged with the same dag run and task but another try is dead. Outside Airflow: nothing."""
    from mlflow import MlflowClient

    if tags["airflow_run_id"] == "manual":
        return []
    client = MlflowClient()
    # Filtered in Python: few runs are RUNNING, and run ids need no quoting inside MLflow's filter grammar.
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    killed = [r.info.run_id for r in running
              # a mapped task's instances share a task id: the model tag tells them apart
              if all(r.data.tags.get(k) == tags.get(k) for k in ("airflow_run_id", "airflow_task_id", "model"))
              and r.data.tags.get("airflow_try_number") != tags["airflow_try_number"]]
    for run_id in killed:
        client.set_terminated(run_id, status="KILLED")
    return killed


def alias_version(model_name: str, alias: str):
    """The model version behind an alias, or None when the alias is not set."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure()
    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def set_alias(model_name: str, alias: str, version: str | int) -> None:
    from mlflow import MlflowClient

    configure()
    MlflowClient().set_registered_model_alias(model_name, alias, str(version))


def promote(model_name: str, challenger_version: str | int, challenger_score: float,
            champion_score: float | None, lower_is_better: bool = True) -> bool:
    """Move @champion to the challenger when it beats the champion's score on the same window
    (or when there is no champion yet). Returns whether it moved."""
    from mlflow import MlflowClient

    wins = champion_score is None or (challenger_score < champion_score if lower_is_better
                                      else challenger_score > champion_score)
    client = MlflowClient()
    note = (f"challenger {challenger_score:.5f} vs champion "
            f"{'none' if champion_score is None else f'{champion_score:.5f}'}")
    client.set_model_version_tag(model_name, str(challenger_version), "promotion",
                                 ("promoted: " if wins else "kept champion: ") + note)
    if wins:
        set_alias(model_name, CHAMPION, challenger_version)
    return wins
