"""Every DAG imports cleanly, carries tags, retries and timeouts, and does no heavy work at import."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = ["pyspark", "mlflow", "torch", "lightgbm", "gluonts", "great_expectations", "pandas", "ortools"]


@pytest.fixture(scope="module")
def dagbag():
    from echelon.airflow_env import airflow_env

    with pytest.MonkeyPatch.context() as patch:
        for key, value in airflow_env().items():
            if key.startswith("AIRFLOW"):
                patch.setenv(key, value)
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "demand_nightly" in dagbag.dags


def test_every_dag_has_tags_retries_and_timeouts(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert not dag.catchup, f"{dag_id} would catch up on every missed interval at first unpause"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no timeout"


def test_demand_nightly_shape(dagbag):
    dag = dagbag.dags["demand_nightly"]
    order = ["partition", "ingest", "features", "candidates", "train_candidate", "choose_challenger",
             "evaluate_and_promote", "score"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} must precede {downstream}"
    # one mapped task per candidate, capped (SQLite MLflow: one at a time), and a reduce that runs
    # when the mapped task is skipped (no retraining that day)
    mapped = dag.get_task("train_candidate")
    assert mapped.is_mapped and mapped.max_active_tis_per_dag >= 1
    assert dag.get_task("choose_challenger").trigger_rule == "none_failed"
    assert [o.uri for o in dag.get_task("score").outlets] == ["echelon://published/demand/forecasts"]


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_dag_files_import_no_heavy_modules(dag_file):
    """The dag-processor parses DAG files every few seconds: heavy imports belong inside tasks."""
    code = (f"import runpy, sys, json; runpy.run_path({str(DAGS / dag_file)!r}); "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_partition_is_the_day_before_the_logical_date():
    import datetime as dt

    from echelon.schedule import data_partition, nightly_run_date

    run = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone.utc)
    assert data_partition(run) == "2026-11-20"
    assert nightly_run_date("2026-11-20") == run
    assert data_partition(nightly_run_date("2024-02-29")) == "2024-02-29"


def test_an_asset_triggered_run_takes_its_dates_from_the_events():
    import datetime as dt
    from types import SimpleNamespace

    import pytest

    from echelon.schedule import outlet_extra, run_partitions

    def Event(extra, minute=0):
        return SimpleNamespace(extra=extra, timestamp=dt.datetime(2026, 11, 21, 2, minute, tzinfo=dt.timezone.utc))

    run = dt.datetime(2026, 11, 21, 3, 0, tzinfo=dt.timezone.utc)
    events = {"forecasts": [Event(outlet_extra(["2026-11-19"], rows=5), minute=30),
                            Event(outlet_extra(["2026-11-17", "2026-11-18"]), minute=10)]}
    assert run_partitions(run, events) == ["2026-11-20"]          # a logical date (manual, backfill) wins
    # no logical date: the date of the newest event only (a backlog or coalesced events are superseded)
    assert run_partitions(None, events) == ["2026-11-19"]
    backlog = {"forecasts": [Event(outlet_extra([f"2026-10-{d:02d}"]), minute=d) for d in (3, 1, 2)]}
    assert run_partitions(None, backlog) == ["2026-10-03"]       # the first run after an unpause: the latest
    late = {"forecasts": [Event(outlet_extra(["2026-11-19"]), minute=5), Event(outlet_extra(["2026-11-16"]), minute=9)]}
    assert run_partitions(None, late) == ["2026-11-16"]          # newest published, not the newest date
    # a demand backfill's events re-plan nothing through the Asset (placement's own backfill does)
    replayed = {"forecasts": [Event(outlet_extra(["2026-11-01"], backfill=True), minute=50),
                              Event(outlet_extra(["2026-11-19"]), minute=1)]}
    assert run_partitions(None, replayed) == ["2026-11-19"]
    assert run_partitions(None, {"forecasts": [Event(outlet_extra(["2026-11-01"], backfill=True))]}) == []
    with pytest.raises(ValueError, match="carry no 'ds'"):
        run_partitions(None, {"forecasts": [Event({"rows": 5})]})
    with pytest.raises(ValueError, match="no logical date"):
        run_partitions(None, {})
