"""Issue 18: the stack's Spark master and worker accept only applications that know the stack's shared
secret (spark.authenticate). Starts only the Spark half of echelon.stack.Stack (no Postgres needed)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from echelon.stack import Stack, stop_services

pytestmark = pytest.mark.slow   # two JVM daemons and two driver JVMs

JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("auth-check").getOrCreate()
print("ROWS", spark.range(10).repartition(2).count(), flush=True)
spark.stop()
"""


def driver(stack: Stack, conf_dir: str) -> subprocess.CompletedProcess:
    env = {**stack.env, "SPARK_CONF_DIR": conf_dir}
    return subprocess.run([sys.executable, "-c", JOB.replace('.appName("auth-check")',
                                                             f'.master("{stack.spark_url}").appName("auth-check")')],
                          env=env, capture_output=True, text=True, timeout=300)


def test_spark_accepts_only_drivers_with_the_secret(tmp_path):
    stack = Stack(tmp_path / "var", base_env={k: v for k, v in os.environ.items() if k != "SPARK_MASTER"})
    stack._write_configs()
    try:
        stack._start_spark()
        stack._wait("a Spark worker to register", lambda: stack.spark_state().get("aliveworkers", 0) >= 1,
                    roles=("spark-master", "spark-worker"))
        good = driver(stack, stack.env["SPARK_CONF_DIR"])
        assert "ROWS 10" in good.stdout, good.stderr[-3000:]
        stranger = tmp_path / "no-secret"
        stranger.mkdir()
        (stranger / "spark-defaults.conf").write_text("spark.cores.max 1\nspark.network.timeout 20s\n")
        refused = driver(stack, str(stranger))
        assert "ROWS" not in refused.stdout and refused.returncode != 0
        master_log = (stack.logs / "spark-master.log").read_text(errors="replace")
        assert "SASL" in master_log or "authentication" in master_log.lower(), master_log[-3000:]
    finally:
        stop_services(stack.processes.values())
