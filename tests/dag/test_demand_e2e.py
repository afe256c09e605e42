"""The demand_nightly DAG end to end through Airflow on a tiny generated world:
`airflow dags test` (dag.test, in-process), a same-date re-run (identical published rows), and a backfill
created with Airflow's own `backfill create` and executed by a real scheduler and dag-processor."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echelon.schedule import nightly_run_date
from echelon.stack import stop_services

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DS = "2026-11-20"            # a Friday: the first run trains (no champion yet)
BACKFILL = ("2026-11-17", "2026-11-18")   # Tuesday, Wednesday: weekly cadence, no retraining


def world_home(folder: Path, candidates: str, params: dict, *world: str):
    """A fresh ECHELON_VAR with a generated world up to DS and a migrated Airflow DB; the env to run in."""
    var = folder / "var"
    env = {**os.environ, "ECHELON_VAR": str(var), "ECHELON_DEMAND_CANDIDATES": candidates,
           "ECHELON_DEMAND_RETRAIN": "sunday", "ECHELON_TASK_RETRIES": "0",
           "ECHELON_DEMAND_MODEL_PARAMS": json.dumps(params)}
    for key in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        env.pop(key, None)
    run(env, "world", *world, "--end", DS, "--seed", "7")
    run(env, "airflow", "db", "migrate")
    return var, env


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return world_home(tmp_path_factory.mktemp("e2e"), "seasonal_naive,lightgbm",
                      {"lightgbm": {"num_boost_round": 40, "max_origins_per_series": 60}},
                      "--items", "10", "--locations", "2", "--start", "2025-03-01")


def run(env, *args, timeout=900):
    out = subprocess.run([str(BIN / "echelon"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"echelon {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def forecasts_partition(var, ds):
    return var / "lake" / "published" / "demand" / "forecasts" / f"ds={ds}"


def test_dag_test_publishes_forecasts_report_and_champion(home):
    var, env = home
    run(env, "airflow", "dags", "test", "demand_nightly", nightly_run_date(DS).isoformat())
    part = forecasts_partition(var, DS)
    manifest = json.loads((part / "_manifest.json").read_text())
    frame = pd.read_parquet(part)
    series = frame[["item_id", "location_id"]].drop_duplicates()
    assert manifest["rows"] == len(frame) == len(series) * 28
    quantiles = frame[[f"q_0.{k}" for k in range(1, 10)]].to_numpy()
    assert (quantiles >= 0).all() and (quantiles[:, 1:] >= quantiles[:, :-1]).all()
    assert str(pd.Timestamp(frame["target_date"].min()).date()) == "2026-11-21"
    assert frame["model_version"].str.startswith("demand_forecaster/").all()
    report = (var / "reports" / "demand" / f"ds={DS}" / "index.html").read_text()
    assert "Backtest" in report and "lightgbm" in report and "seasonal_naive" in report
    assert (var / "reports" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()
    promotion = json.loads((var / "reports" / "demand" / f"ds={DS}" / "promotion.json").read_text())
    assert promotion["promoted"] and promotion["champion_before"] is None
    # each candidate trained in its own mapped task instance, with its own finished MLflow run
    runs = training_runs(var)
    assert sorted(r.info.run_name for r in runs) == ["train-lightgbm", "train-seasonal_naive"]
    assert {(r.data.tags["airflow_task_id"], r.info.status) for r in runs} == {("train_candidate", "FINISHED")}
    assert len({r.data.tags["airflow_run_id"] for r in runs}) == 1


def mlflow_client(var):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{var / 'mlflow' / 'mlflow.db'}")


def training_runs(var):
    client = mlflow_client(var)
    experiment = client.get_experiment_by_name("echelon-demand")
    return client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")


MQ_EPOCHS = 2
MQ_SMALL = {"epochs": MQ_EPOCHS, "patience": MQ_EPOCHS, "batches_per_epoch": 3, "batch_size": 8, "channels": 8,
            "hidden": 16, "dilations": [1, 2, 4]}


def test_dag_trains_scores_and_registers_the_mq_forecasters(tmp_path):
    """MQ-CNN and MQ-Transformer as the only nightly candidates (tiny nets, 2 epochs): each trains in its
    mapped task with its own MLflow run, per-epoch learning curves as metric histories and a registered
    version; the winner becomes champion and the scoring step publishes its forecasts."""
    from echelon.models.demand.score import MODEL_NAME

    var, env = world_home(tmp_path, "mqcnn,mqtransformer", {"mqcnn": MQ_SMALL, "mqtransformer": MQ_SMALL},
                          "--items", "4", "--locations", "2", "--start", "2026-06-01")
    run(env, "airflow", "dags", "test", "demand_nightly", nightly_run_date(DS).isoformat())
    client = mlflow_client(var)
    runs = {r.info.run_name: r for r in training_runs(var)}
    assert sorted(runs) == ["train-mqcnn", "train-mqtransformer"]
    versions = {v.tags["model_type"]: v for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    assert sorted(versions) == ["mqcnn", "mqtransformer"]
    for name in ("mqcnn", "mqtransformer"):
        found = runs[f"train-{name}"]
        assert (found.data.tags["airflow_task_id"], found.info.status) == ("train_candidate", "FINISHED")
        assert np.isfinite(found.data.metrics["wql"]) and found.data.metrics["wql"] > 0, found.data.metrics
        for curve in ("train_loss", "val_loss", "learning_rate"):
            history = client.get_metric_history(found.info.run_id, curve)
            assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(MQ_EPOCHS)), curve
            assert all(m.value > 0 for m in history), curve
        assert versions[name].run_id == found.info.run_id
        assert versions[name].tags["wql"] == f"{found.data.metrics['wql']:.6f}"
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.tags["model_type"] in ("mqcnn", "mqtransformer")
    frame = pd.read_parquet(forecasts_partition(var, DS))
    assert len(frame) == 8 * 28 and frame["model_version"].eq(f"{MODEL_NAME}/{champion.version}").all()
    quantiles = frame[[f"q_0.{k}" for k in range(1, 10)]].to_numpy()
    assert np.isfinite(quantiles).all() and (quantiles[:, 1:] >= quantiles[:, :-1]).all()


def test_rerunning_a_date_gives_identical_rows(home):
    var, env = home
    tables = ["raw/demand/sales", "features/demand/sales_features", "published/demand/forecasts"]
    before = {t: json.loads((var / "lake" / t / f"ds={DS}" / "_manifest.json").read_text()) for t in tables}
    run(env, "airflow", "dags", "test", "demand_nightly", nightly_run_date(DS).isoformat())
    for table in tables:
        after = json.loads((var / "lake" / table / f"ds={DS}" / "_manifest.json").read_text())
        assert (after["rows"], after["checksum"]) == (before[table]["rows"], before[table]["checksum"]), table
    # a Friday with a champion: no retraining, the mapped training task is skipped and the run still scores
    assert len(training_runs(var)) == 2


@pytest.fixture(scope="module")
def services(home):
    """A real api-server, dag-processor and scheduler on the test's Airflow home (torn down with the module)."""
    var, _ = home
    env = {**home[1], "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5", "ECHELON_AIRFLOW_PORT": str(free_port())}
    from echelon.airflow_env import airflow_env

    env = airflow_env(env)
    logs = var / "airflow-procs"
    logs.mkdir(exist_ok=True)
    procs = [subprocess.Popen([str(BIN / "airflow"), role], env=env, stdout=open(logs / f"{role}.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
             for role in ("api-server", "dag-processor", "scheduler")]  # tasks report to the api-server
    try:
        deadline = time.time() + 120
        while not {"demand_nightly", "capacity_weekly"} <= set(run(env, "airflow", "dags", "list", "-o", "plain").split()):
            assert time.time() < deadline, "the dag-processor never parsed demand_nightly and capacity_weekly"
            time.sleep(3)
        yield env, logs
    finally:
        stop_services(procs)


def test_backfill_runs_through_a_real_scheduler(home, services):
    var, _ = home
    env, logs = services
    run(env, "backfill", "--dag", "demand_nightly", "--from", BACKFILL[0], "--to", BACKFILL[1])
    # a second backfill while this one is active: Airflow refuses it, and echelon ends with one line saying what to do
    again = subprocess.run([str(BIN / "echelon"), "backfill", "--dag", "demand_nightly", "--from", BACKFILL[0],
                            "--to", BACKFILL[1]], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "Another backfill is running" in again.stdout + again.stderr, again.stderr[-3000:]
    assert again.stderr.strip().splitlines()[-1].startswith("echelon backfill: BackfillError: airflow backfill create exited")
    wanted = {nightly_run_date(ds).isoformat() for ds in BACKFILL}
    deadline = time.time() + 900
    while True:
        listing = run(env, "airflow", "dags", "list-runs", "demand_nightly", "-o", "json")
        runs = json.loads(next(line for line in reversed(listing.splitlines()) if line.startswith("[")))
        states = {r["logical_date"].replace("Z", "+00:00"): r["state"] for r in runs
                  if r["run_id"].startswith("backfill__")}
        done = {k: v for k, v in states.items() if k in wanted and v in ("success", "failed")}
        if len(done) == len(wanted):
            break
        assert time.time() < deadline, f"backfill did not finish: {states}"
        time.sleep(10)
    assert set(done.values()) == {"success"}, f"backfill runs: {done}\n" + (logs / "scheduler.log").read_text()[-4000:]
    assert len(runs) >= 3, "the backfill added its runs beside the earlier dags-test runs"
    for ds in BACKFILL:
        frame = pd.read_parquet(forecasts_partition(var, ds))
        assert str(pd.Timestamp(frame["target_date"].min()).date()) == str(pd.Timestamp(ds) + pd.Timedelta(days=1))[:10]
    # the backfill left the partition it did not cover untouched
    assert (forecasts_partition(var, DS) / "_manifest.json").exists()


def test_a_weekly_backfill_plans_one_round_per_week_one_at_a_time(services):
    """capacity_weekly over October's data dates: its four Sunday rounds (cleared Mondays 04:00), at the
    DAG's own limit of one run at a time; asking for two at once is refused before anything is created."""
    env, _ = services
    plan = run(env, "backfill", "--dag", "capacity_weekly", "--from", "2026-10-01", "--to", "2026-10-31", "--dry-run")
    assert "max_active_runs = 1" in plan, plan
    mondays = ["2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"]
    planned = sorted(set(re.findall(r"2026-1[01]-\d\d(?=[ T]04:00)", plan)))
    assert planned == mondays, plan
    out = subprocess.run([str(BIN / "echelon"), "backfill", "--dag", "capacity_weekly", "--from", "2026-10-01",
                          "--to", "2026-10-31", "--max-active-runs", "2"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "capacity_weekly allows 1 active run(s)" in out.stderr, out.stderr[-2000:]
    listing = run(env, "airflow", "dags", "list-runs", "capacity_weekly", "-o", "json")
    assert "2026-10" not in listing, "a refused or dry-run backfill created runs"


def placement_runs(env) -> list[dict]:
    listing = run(env, "airflow", "dags", "list-runs", "placement_nightly", "-o", "json")
    return json.loads(next((line for line in reversed(listing.splitlines()) if line.startswith("[")), "[]"))


def wait_for_placement_runs(env, logs, finished, timeout=1200) -> list[dict]:
    """Poll the placement runs until `finished(runs)` holds and no run is queued or running (explicit
    waits: nothing of a test goes on running beside the module's later tests)."""
    deadline = time.time() + timeout
    while True:
        runs = placement_runs(env)
        if finished(runs) and not [r for r in runs if r["state"] in ("queued", "running")]:
            return runs
        assert time.time() < deadline, f"placement runs: {runs}\n" + (logs / "scheduler.log").read_text()[-4000:]
        time.sleep(10)


def test_forecasts_trigger_placement_with_their_data_date(home, services):
    """placement_nightly is scheduled on demand's forecasts Asset. A demand run executed by the real
    scheduler publishes forecasts; its Asset event carries the data date in `extra`, and the scheduler
    starts an Asset-triggered placement run (no logical date) whose `partitions` task resolves that date
    only. Airflow hands that first run after the unpause every forecasts event since placement's previous
    Asset-triggered run (here the earlier `dags test` runs and the demand backfill, published while
    placement was paused): it plans the latest date, not the backlog. The test waits until the placement
    run has finished, so that no run is left behind."""
    import sqlite3

    var, _ = home
    env, logs = services
    day = "2026-11-16"   # not run yet in this module
    run(env, "airflow", "dags", "unpause", "placement_nightly")   # paused consumers get no Asset runs
    run(env, "airflow", "dags", "unpause", "demand_nightly")
    try:
        run(env, "airflow", "dags", "trigger", "demand_nightly", "-l", nightly_run_date(day).isoformat())
        runs = wait_for_placement_runs(env, logs, lambda runs: any(
            r["run_id"].startswith("asset_triggered__") and r["state"] in ("success", "failed") for r in runs))
    finally:   # nothing of this test goes on running beside the module's later tests
        run(env, "airflow", "dags", "pause", "placement_nightly")
        run(env, "airflow", "dags", "pause", "demand_nightly")
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db, timeout=60) as con:   # waits out the scheduler's write locks
        extras = [json.loads(e) for (e,) in con.execute(
            "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = ?",
            ("echelon://published/demand/forecasts",))]
        resolved = con.execute(
            "select r.logical_date, x.value from xcom x join dag_run r on r.dag_id = x.dag_id and "
            "r.run_id = x.run_id where r.dag_id = 'placement_nightly' and r.run_type = 'asset_triggered' "
            "and x.task_id = 'partitions'").fetchall()
    assert any(extra.get("ds") == day for extra in extras), extras
    assert len({extra["ds"] for extra in extras}) > 1, "a backlog of earlier dates was published while paused"
    (logical_date, value), = resolved
    days = json.loads(value)
    days = json.loads(days) if isinstance(days, str) else days
    assert logical_date is None and days == [day], resolved
    asset_runs = [r for r in runs if r["run_id"].startswith("asset_triggered__")]
    assert [r["state"] for r in asset_runs] == ["success"], runs
    assert (var / "lake" / "published" / "placement" / "placement_plan" / f"ds={day}" / "_manifest.json").exists()


def test_a_placement_backfill_runs_one_run_per_date_through_the_scheduler(home, services):
    """An analyst's backfill of placement_nightly over data dates (Airflow refuses `backfill create` for its
    Asset schedule): echelon makes one run per date with its logical date, the real scheduler executes them,
    and each plans its own date (the forecasts of BACKFILL, published by the demand backfill above)."""
    var, _ = home
    env, logs = services
    wanted = {nightly_run_date(ds).isoformat() for ds in BACKFILL}
    try:
        plan = run(env, "backfill", "--dag", "placement_nightly", "--from", BACKFILL[0], "--to", BACKFILL[1], "--dry-run")
        assert plan.count(": trigger") == len(BACKFILL), plan
        assert not {r["logical_date"] for r in placement_runs(env) if r["logical_date"]} & wanted, "dry run created runs"
        run(env, "backfill", "--dag", "placement_nightly", "--from", BACKFILL[0], "--to", BACKFILL[1])

        def dated(runs):
            return {r["logical_date"].replace("Z", "+00:00"): r["state"] for r in runs if r["logical_date"]}

        runs = wait_for_placement_runs(env, logs, lambda runs: wanted <= {
            k for k, v in dated(runs).items() if v in ("success", "failed")})
    finally:
        run(env, "airflow", "dags", "pause", "placement_nightly")
    assert {k: v for k, v in dated(runs).items() if k in wanted} == {k: "success" for k in wanted}, runs
    for ds in BACKFILL:
        manifest = var / "lake" / "published" / "placement" / "placement_plan" / f"ds={ds}" / "_manifest.json"
        assert manifest.exists(), ds
