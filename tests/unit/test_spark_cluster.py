"""The world generator on a real Spark standalone cluster (master + one worker on loopback) gives
exactly the rows it gives on local[*].

Both runs are fresh `python -m echelon.jobs.demand.world` processes: a SparkSession is a per-process
singleton, and this keeps the test session's own local Spark untouched."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from echelon.jobs.demand import world

pytestmark = pytest.mark.slow

END = "2025-12-31"
WORLD_ARGS = ["--items", "6", "--locations", "2", "--start", "2025-10-01", "--end", END, "--seed", "9"]
TABLES = (world.SOURCE_SALES, world.SOURCE_PLAN, world.ITEMS, world.EVENTS, world.REGIONS, world.FACILITIES,
          world.DELIVERY_LANES, world.TRANSFER_LANES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, what: str, logs: list[Path], timeout: float = 120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def _master_state(ui_port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


@pytest.fixture
def standalone_cluster(tmp_path):
    """A Spark standalone master and worker (1 core, 1 GiB) on 127.0.0.1; yields (url, ui_port)."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("java is not installed: a Spark standalone master/worker needs a JVM")
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not spark_class.exists():
        pytest.skip(f"pyspark ships no spark-class here ({spark_class})")
    port, ui_port, worker_port, worker_ui = (_free_port() for _ in range(4))
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    processes, logs = [], []

    def start(name: str, *args: str) -> None:
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with open(log, "wb") as out:
            processes.append(subprocess.Popen([str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT,
                                              env=env, cwd=tmp_path))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", str(ui_port))
        url = f"spark://127.0.0.1:{port}"
        _wait_for(lambda: _master_state(ui_port), "the master's web UI", logs)
        start("worker", "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
              "--port", str(worker_port), "--webui-port", str(worker_ui), "--cores", "1", "--memory", "1g",
              "--work-dir", str(tmp_path / "work"))
        _wait_for(lambda: (_master_state(ui_port) or {}).get("aliveworkers", 0) >= 1,
                  "the worker to register with the master", logs)
        yield url, ui_port
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _generate(master: str, lake: Path) -> str:
    env = {**os.environ, "ECHELON_LAKE": str(lake), "SPARK_LOCAL_IP": "127.0.0.1",
           "ECHELON_SPARK_DRIVER_MEMORY": "1g"}
    env.pop("SPARK_MASTER", None)
    done = subprocess.run([sys.executable, "-m", "echelon.jobs.demand.world", *WORLD_ARGS, "--master", master],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"world generation on {master} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _table(lake: Path, table) -> tuple[dict, pd.DataFrame]:
    partition = table.partition(END, lake)
    manifest = json.loads((partition / "_manifest.json").read_text())
    frame = pd.read_parquet(partition)
    return manifest, frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_world_on_a_standalone_cluster_matches_local(standalone_cluster, tmp_path):
    url, ui_port = standalone_cluster
    cluster_out = _generate(url, tmp_path / "cluster_lake")
    assert f"master {url}" in cluster_out
    state = _master_state(ui_port)
    assert any(app.get("name") == "echelon-world" for app in state.get("completedapps", [])), state

    _generate("local[2]", tmp_path / "local_lake")
    for table in TABLES:
        on_cluster, cluster_rows = _table(tmp_path / "cluster_lake", table)
        local, local_rows = _table(tmp_path / "local_lake", table)
        assert on_cluster["rows"] == local["rows"] > 0, table
        assert on_cluster["checksum"] == local["checksum"], table
        pd.testing.assert_frame_equal(cluster_rows, local_rows, obj=str(table))
