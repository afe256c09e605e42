"""An Airflow task killed mid-run never ends its MLflow run; the next try of the same task marks it KILLED.

Uses the session's SQLite MLflow store (tests/conftest.py) and the AIRFLOW_CTX_* variables that Airflow sets
in every task process."""

import pytest


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
