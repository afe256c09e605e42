"""An Airflow task killed mid-run never ends its MLflow run; the next try of the same task marks it KILLED.

Uses a SQLite MLflow store of this module's own (the session's store may already hold the registered models
that the promotion tests create, from other test files on the same worker) and the AIRFLOW_CTX_* variables
that Airflow sets in every task process."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def own_mlflow_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("ECHELON_MLFLOW_ARTIFACTS", str(folder / "artifacts"))
        yield


def _task_env(monkeypatch, try_number: int, task_id: str = "train") -> None:
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__2026-11-20T02:00:00+00:00")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", task_id)
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", str(try_number))


def _left_running(monkeypatch, try_number: int, task_id: str = "train") -> str:
    """A run as a SIGKILLed try leaves it: started, tagged, never ended."""
    from mlflow import MlflowClient

    from echelon import tracking

    _task_env(monkeypatch, try_number, task_id)
    with tracking.run("tracking-test", "2026-11-19", "train-lightgbm") as active:
        run_id = active.info.run_id
    MlflowClient().update_run(run_id, status="RUNNING")     # the end the killed process never reached
    return run_id


def test_a_retry_closes_the_run_its_killed_try_left_running(monkeypatch):
    from mlflow import MlflowClient

    from echelon import tracking

    killed_try = _left_running(monkeypatch, 1)
    other_task = _left_running(monkeypatch, 1, task_id="evaluate_and_promote")
    _task_env(monkeypatch, 2)
    with tracking.run("tracking-test", "2026-11-19", "train-seasonal_naive") as active:
        new_run = active.info.run_id
        client = MlflowClient()
        assert client.get_run(killed_try).info.status == "KILLED"
        assert client.get_run(new_run).info.status == "RUNNING"          # its own run is not touched
    assert client.get_run(new_run).info.status == "FINISHED"
    assert client.get_run(other_task).info.status == "RUNNING"           # another task's run is not this try's


@pytest.mark.parametrize("airflow", [False, True])
def test_nothing_is_closed_outside_airflow_or_within_the_same_try(monkeypatch, airflow):
    from mlflow import MlflowClient

    from echelon import tracking

    running = _left_running(monkeypatch, 3)
    if not airflow:
        for name in ("AIRFLOW_CTX_DAG_RUN_ID", "AIRFLOW_CTX_TASK_ID", "AIRFLOW_CTX_TRY_NUMBER"):
            monkeypatch.delenv(name)
    with tracking.run("tracking-test", "2026-11-19", "train-deepar"):   # same try: a run started earlier in it
        pass
    assert MlflowClient().get_run(running).info.status == "RUNNING"


# ---- issue 18: registry lookups fail closed ---------------------------------------------------------

def _registered(name: str, versions: int = 1, champion: int | None = None):
    """A registered model with `versions` versions (sources are placeholders: nothing is loaded)."""
    from mlflow import MlflowClient

    from echelon import tracking

    tracking.configure()
    client = MlflowClient()
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source="file:///nowhere/model")
    if champion is not None:
        client.set_registered_model_alias(name, tracking.CHAMPION, str(champion))
    return client


def test_only_a_verified_absence_is_no_champion():
    from echelon import tracking

    assert tracking.alias_version("tracking-no-such-model", tracking.CHAMPION) is None
    _registered("tracking-no-alias")
    assert tracking.alias_version("tracking-no-alias", tracking.CHAMPION) is None
    _registered("tracking-with-alias", versions=2, champion=2)
    assert str(tracking.alias_version("tracking-with-alias", tracking.CHAMPION).version) == "2"


@pytest.mark.parametrize("store", ["server down", "corrupt store"])
def test_a_registry_that_cannot_answer_is_an_error_not_no_champion(monkeypatch, tmp_path, store):
    from echelon import tracking

    if store == "server down":   # nothing listens on port 9; no retries so the test is quick
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:s3cret@127.0.0.1:9")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    else:
        corrupt = tmp_path / "mlflow.db"
        corrupt.write_bytes(b"this is not a database" * 100)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{corrupt}")
    with pytest.raises(tracking.TrackingError, match=r"looking up demand-forecaster@champion failed") as failure:
        tracking.alias_version("demand-forecaster", tracking.CHAMPION)
    assert "s3cret" not in str(failure.value)


def _lookups_fail(monkeypatch):
    """Only the alias lookup fails (the registry is otherwise reachable), as a flaky server would."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def refuse(self, name, alias):
        raise MlflowException("503 Service Unavailable")

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", refuse)


def test_retrain_due_errors_out_when_the_lookup_fails(monkeypatch):
    from echelon import tracking
    from echelon.models.demand import train

    monkeypatch.setenv("ECHELON_DEMAND_RETRAIN", "sunday")
    _lookups_fail(monkeypatch)
    with pytest.raises(tracking.TrackingError, match="503 Service Unavailable"):
        train.retrain_due("2026-11-20")        # a Friday: with the champion unknown it must not decide


def test_demand_does_not_promote_when_the_champion_lookup_fails(monkeypatch):
    import json

    from echelon import tracking
    from echelon.models.demand import train
    from echelon.models.demand.report import report_dir

    client = _registered(train.MODEL_NAME, versions=2, champion=1)
    report_dir("2026-11-20").mkdir(parents=True, exist_ok=True)
    (report_dir("2026-11-20") / "challenger.json").write_text(json.dumps({"version": "2"}))
    _lookups_fail(monkeypatch)
    with pytest.raises(tracking.TrackingError):
        train.evaluate_and_promote("2026-11-20")
    monkeypatch.undo()
    assert {k: str(v) for k, v in client.get_registered_model(train.MODEL_NAME).aliases.items()} == {"champion": "1"}


def test_damage_does_not_promote_when_the_champion_lookup_fails(monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from echelon import tracking
    from echelon.models.damage import steps

    client = _registered(steps.MODEL_NAME, versions=2, champion=1)
    client.set_registered_model_alias(steps.MODEL_NAME, tracking.CHALLENGER, "2")
    real = MlflowClient.get_model_version_by_alias

    def champion_fails(self, name, alias):
        if alias == tracking.CHAMPION:
            raise MlflowException("connection reset", error_code="INTERNAL_ERROR")
        return real(self, name, alias)

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", champion_fails)
    with pytest.raises(tracking.TrackingError, match="INTERNAL_ERROR"):
        steps.evaluate_and_promote("2026-11-20")
    monkeypatch.undo()
    aliases = client.get_registered_model(steps.MODEL_NAME).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}
