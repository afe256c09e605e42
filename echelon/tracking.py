"""MLflow conventions shared by every domain: one experiment per domain, tagged runs, registry aliases.

A new model version becomes @challenger; it becomes @champion only when it beats the champion on the
same evaluation window (`promote`). Scoring always loads @champion.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from echelon.lake import code_version
from echelon.settings import get_settings

CHAMPION, CHALLENGER = "champion", "challenger"


class TrackingError(RuntimeError):
    """The model registry could not answer (server down, store unreadable, refused): never "no champion"."""


def configure() -> str:
    """Point MLflow at the configured store (creating the SQLite folder when it is the default)."""
    import mlflow

    settings = get_settings()
    if settings.mlflow_uri.startswith("sqlite:///"):
        Path(settings.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    load_credentials()
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    return settings.mlflow_uri


CREDENTIALS_ENV = "ECHELON_MLFLOW_CREDENTIALS"


def load_credentials(path: str | None = None) -> str | None:
    """The tasks' MLflow login from a secrets file, for a tracking server behind authentication.

    ECHELON_MLFLOW_CREDENTIALS names a file readable by its owner only (0600), in MLflow's own credentials
    format (`[mlflow]`, `mlflow_tracking_username = ...`, `mlflow_tracking_password = ...`). Only the file's
    path travels in the environment of services and tasks; a process that talks to MLflow reads the file
    here, and the login lives in that process alone (MLflow's client reads it from this process's
    environment). Returns the user name, or None when no file is configured. A file that is missing,
    readable by others or without both values raises TrackingError naming it."""
    import configparser
    import stat

    from mlflow.environment_variables import MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_USERNAME

    path = path or get_settings().env.get(CREDENTIALS_ENV)
    if not path:
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(Path(path).read_text())
    except (OSError, UnicodeDecodeError, configparser.Error) as error:
        raise TrackingError(f"{CREDENTIALS_ENV}={path}: cannot read the MLflow credentials ({error})") from None
    if mode & 0o077:
        raise TrackingError(f"{CREDENTIALS_ENV}={path}: mode {mode:04o} lets others read the MLflow password; "
                            "chmod 600 it")
    section = parser["mlflow"] if parser.has_section("mlflow") else {}
    user, password = section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")
    if not user or not password:
        raise TrackingError(f"{CREDENTIALS_ENV}={path}: needs [mlflow] mlflow_tracking_username and "
                            "mlflow_tracking_password")
    MLFLOW_TRACKING_USERNAME.set(user)     # this process's environment, where MLflow's client reads it
    MLFLOW_TRACKING_PASSWORD.set(password)
    return user


def credentials_text(user: str, password: str) -> str:
    """A credentials file's content, for load_credentials (write it with echelon.stack.write_secret)."""
    return f"[mlflow]\nmlflow_tracking_username = {user}\nmlflow_tracking_password = {password}\n"


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
    """The model version behind an alias, or None when the registry says the model or alias does not exist.

    Fails closed: any other failure (a tracking server that is down or refuses, a store that cannot be
    read) raises TrackingError, so a task fails and retries instead of deciding on a registry it could not
    ask (a failed lookup read as "no champion" would retrain on a scoring night or promote untested).
    MLflow answers a missing alias with INVALID_PARAMETER_VALUE, the code of other refusals too: that
    answer counts as absence only once the registered model, read again, has no such alias."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = configure()
    where = f"MLflow registry {redact(uri)}: looking up {model_name}@{alias} failed"
    try:
        client = MlflowClient()
        try:
            return client.get_model_version_by_alias(model_name, alias)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            if error.error_code == "INVALID_PARAMETER_VALUE" and alias not in client.get_registered_model(model_name).aliases:
                return None
            if error.error_code == "PERMISSION_DENIED" and not _visible(client, model_name):
                return None
            raise TrackingError(f"{where} ({error.error_code}): {_first_line(error)}") from error
    except TrackingError:
        raise
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":   # deleted between the two questions
            return None
        raise TrackingError(f"{where} ({error.error_code}): {_first_line(error)}") from error
    except Exception as error:  # noqa: BLE001  (connection errors, SQLAlchemy errors: any failure to ask)
        raise TrackingError(f"{where}: {type(error).__name__}: {_first_line(error)}") from error


def _visible(client, model_name: str) -> bool:
    """Whether a search lists the registered model. Behind MLflow's basic-auth app a user is refused (403)
    any question about a model that does not exist; the stack gives every user READ on every model
    (default_permission), so a model the search does not list is one that does not exist."""
    quoted = model_name.replace("'", "\\'")
    return bool(client.search_registered_models(filter_string=f"name = '{quoted}'", max_results=1))


def _first_line(error: Exception) -> str:
    return redact((str(error).strip().splitlines() or [""])[0][:300])


def redact(uri: str) -> str:
    """A tracking URI without its password (http://user:secret@host -> http://user:***@host)."""
    return re.sub(r"(//[^/:@]+:)[^@/]+@", r"\1***@", uri)


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
