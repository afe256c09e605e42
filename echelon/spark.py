"""The Spark session every job uses: local[*] by default, any cluster through SPARK_MASTER."""
from __future__ import annotations

import os
import sys

from echelon.settings import PROJECT_ROOT, get_settings


def get_spark(app_name: str = "echelon", master: str | None = None):
    """Return the active session or build one. Executors run this interpreter, so the project's
    packages (installed in the same environment) import on every worker."""
    from pyspark.sql import SparkSession

    settings = get_settings()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or settings.spark_master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("ECHELON_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.ansi.enabled", "false")
        # Whole-stage codegen can emit methods over the JVM's 8 kB JIT limit, which then run interpreted
        # (measured 4.5x slower on the world generator): let the JIT compile them.
        .config("spark.driver.extraJavaOptions", "-XX:-DontCompileHugeMethods")
        .config("spark.executor.extraJavaOptions", "-XX:-DontCompileHugeMethods")
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
