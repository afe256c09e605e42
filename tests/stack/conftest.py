"""One production-shaped stack (echelon.stack) per test module: Airflow and MLflow on a dedicated Postgres
database pair created and dropped here, a Spark standalone master and worker, all on loopback, on a tiny
world. Everything the tests look at (screenshots, service logs) is copied to <ECHELON_VAR>/reports/stack."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from echelon.schedule import data_partition
from echelon.stack import latest_nightly_tick

BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "reports" / "stack"   # kept after the run


def stack_env(var: Path) -> dict:
    env = {**os.environ, "ECHELON_VAR": str(var), "ECHELON_DEMAND_CANDIDATES": "seasonal_naive,lightgbm",
           # retrain every date, so that parallel backfill runs write to MLflow at the same time
           "ECHELON_DEMAND_RETRAIN": "daily", "ECHELON_TASK_RETRIES": "0", "ECHELON_SPARK_SHUFFLE_PARTITIONS": "2",
           "ECHELON_DEMAND_MODEL_PARAMS": json.dumps({"lightgbm": {"num_boost_round": 40, "max_origins_per_series": 60}}),
           "ECHELON_AIRFLOW_ADMIN_PASSWORD": os.environ.get("ECHELON_AIRFLOW_ADMIN_PASSWORD") or os.urandom(12).hex()}
    for key in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME", "SPARK_MASTER"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="session")
def stack_postgres() -> str:
    """The admin URL of the Postgres the stacks create their databases on (skips when unreachable)."""
    from echelon.stack import DEFAULT_POSTGRES, StackError, _connect

    url = os.environ.get("ECHELON_STACK_POSTGRES_URL", DEFAULT_POSTGRES)
    try:
        _connect(url).close()
    except StackError as exc:
        pytest.skip(f"no Postgres for the stack: {exc}")
    return url


@pytest.fixture(scope="module")
def stack(stack_postgres):
    from echelon.stack import Stack

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("java is not installed: the Spark standalone master/worker needs a JVM")
    # a folder of its own, outside pytest's numbered temp folders: during a 20-minute stack run on a shared
    # machine, other sessions' pytest runs were seen to remove those (and with them this stack's state)
    var = Path(tempfile.mkdtemp(prefix="echelon-stack-")) / "var"
    env = stack_env(var)
    ds = data_partition(latest_nightly_tick())
    # the world is generated on local Spark while the stack comes up (both are mostly waiting on JVMs)
    var.mkdir(parents=True)
    world_log = open(var / "world.log", "w")
    world = subprocess.Popen([str(BIN / "echelon"), "world", "--items", "10", "--locations", "2", "--start",
                              "2025-03-01", "--end", ds, "--seed", "7", "--master", "local[2]"],
                             env={**env, "ECHELON_SPARK_DRIVER_MEMORY": "1g"}, stdout=world_log,
                             stderr=subprocess.STDOUT)
    instance = Stack(var, base_env=env, roles=("api-server", "dag-processor", "scheduler"))
    try:
        instance.start()
        assert world.wait(timeout=600) == 0, (var / "world.log").read_text()[-3000:]
        # this test process talks to MLflow too (MlflowClient): with the tasks' login, from their file
        from echelon.tracking import load_credentials

        load_credentials(instance.env["ECHELON_MLFLOW_CREDENTIALS"])
        instance.ds = ds
        yield instance
    finally:
        if world.poll() is None:
            world.kill()
        instance.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if instance.logs.exists():
            shutil.copytree(instance.logs, ARTIFACTS / "logs", dirs_exist_ok=True)
        shutil.rmtree(var.parent, ignore_errors=True)
