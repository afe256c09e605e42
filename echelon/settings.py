"""One place for configuration: environment variables with embedded defaults.

Defaults keep everything inside the project folder (local Spark, SQLite for Airflow and MLflow, a lake
folder under var/) so a newcomer needs nothing running. Production points the same variables at a Spark
cluster, Postgres and object storage. Secrets come only from the environment (see .env.example).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path               # ECHELON_HOME: the project folder
    var: Path                # ECHELON_VAR: runtime state (lake, reports, airflow, mlflow)
    lake: Path               # ECHELON_LAKE: root of the parquet lake
    reports: Path            # ECHELON_REPORTS: run reports and GX Data Docs
    mlflow_uri: str          # MLFLOW_TRACKING_URI
    mlflow_artifacts: str    # ECHELON_MLFLOW_ARTIFACTS: artifact root for new experiments
    spark_master: str        # SPARK_MASTER: local[*], spark://host:7077, yarn, k8s://...
    spark_shuffle_partitions: int
    seed: int                # ECHELON_SEED: default seed for generators and models
    demand_train_parallel: int  # ECHELON_DEMAND_TRAIN_PARALLEL: candidate training tasks at once
    threads: int             # ECHELON_THREADS: cores a model may use (LightGBM); default all of them

    @property
    def gx_root(self) -> Path:
        return self.reports / "gx"


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (or `env`) now, not at import, so tests and tasks can point it elsewhere."""
    env = os.environ if env is None else env
    home = Path(env.get("ECHELON_HOME", PROJECT_ROOT)).resolve()
    var = Path(env.get("ECHELON_VAR", home / "var")).resolve()
    mlflow_uri = env.get("MLFLOW_TRACKING_URI", f"sqlite:///{var / 'mlflow' / 'mlflow.db'}")
    # Several processes writing the embedded SQLite MLflow store at once can fail with "database is
    # locked": one candidate at a time there; two (one per core) against an MLflow server.
    train_parallel = 1 if mlflow_uri.startswith("sqlite") else 2
    return Settings(
        home=home,
        var=var,
        lake=Path(env.get("ECHELON_LAKE", var / "lake")).resolve(),
        reports=Path(env.get("ECHELON_REPORTS", var / "reports")).resolve(),
        mlflow_uri=mlflow_uri,
        mlflow_artifacts=env.get("ECHELON_MLFLOW_ARTIFACTS", str(var / "mlflow" / "artifacts")),
        spark_master=env.get("SPARK_MASTER", "local[*]"),
        spark_shuffle_partitions=int(env.get("ECHELON_SPARK_SHUFFLE_PARTITIONS", "8")),
        seed=int(env.get("ECHELON_SEED", "42")),
        demand_train_parallel=int(env.get("ECHELON_DEMAND_TRAIN_PARALLEL", train_parallel)),
        threads=int(env.get("ECHELON_THREADS", os.cpu_count() or 1)),
    )
