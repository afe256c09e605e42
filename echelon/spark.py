"""The Spark session every job uses: local[*] by default, any cluster through SPARK_MASTER."""
from __future__ import annotations

import os
import re
import socket
import sys

from echelon.settings import PROJECT_ROOT, get_settings

MASTER_FORMS = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[.+\]|yarn|spark://.+|k8s://.+|mesos://.+")


class SparkMasterError(RuntimeError):
    """A Spark master URL that is malformed or that nothing answers at; the message names the URL."""


def check_master(master: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URL, on a malformed master or a standalone master nobody listens at.

    Left alone, Spark retries an unreachable `spark://` master for a minute or more and then fails with a
    stack trace that hides the address. Only `spark://host:port[,host:port...]` (standalone, with its HA
    list) is probed: one TCP connect per address, up to `timeout` seconds each; any answering one is enough."""
    if not MASTER_FORMS.fullmatch(master):
        raise SparkMasterError(f"Spark master URL {master!r} is not one Spark understands (local[N], "
                               "spark://host:port, yarn, k8s://https://host:port): check SPARK_MASTER or --master")
    if not master.startswith("spark://"):
        return
    problems = []
    for address in master[len("spark://"):].split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise SparkMasterError(f"Spark master URL {master!r} needs host:port after spark:// (got {address!r}): "
                                   "check SPARK_MASTER or --master")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as exc:
            problems.append(f"{address}: {exc.strerror or type(exc).__name__}")
    raise SparkMasterError(f"no Spark master answers at {master} ({'; '.join(problems)}): start the master or fix "
                           "SPARK_MASTER / --master")


# A Spark application's JVMs (the driver, which in local mode also runs the tasks, and its executors) live for
# one Airflow task. Whole-stage codegen can emit methods over the JIT's 8 kB limit, which then run interpreted
# (measured 4.5x slower on the world generator): compile them, but with the quick C1 compiler and the serial
# collector only. C2 and parallel GC threads spend a short-lived JVM's time compiling and collecting on a 2-core
# machine (measured side by side under load ~10: a gate's first validation 40 s -> 14 s, Spark start 31 -> 16 s,
# a 1.3M-row feature job 355 -> 244 s; benchmarks/results/spark_jvm.md).
JAVA_OPTIONS = "-XX:-DontCompileHugeMethods -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def get_spark(app_name: str = "echelon", master: str | None = None):
    """Return the active session or build one. Executors run this interpreter, so the project's
    packages (installed in the same environment) import on every worker."""
    from pyspark.sql import SparkSession

    settings = get_settings()
    master = master or settings.spark_master
    check_master(master)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    java_options = settings.spark_java_options(JAVA_OPTIONS)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", java_options)
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def load_sql(name: str, **params) -> str:
    """Load sql/<name>.sql (e.g. "demand/calendar") and fill {placeholders}."""
    path = PROJECT_ROOT / "sql" / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"no SQL transform named {name!r} (looked for {path})")
    text = path.read_text()
    return text.format(**params) if params else text
