"""The environment Airflow runs with, derived from the project settings: one definition shared by the
Makefile (through `echelon airflow ...`), the tests and the docker image."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from echelon.settings import PROJECT_ROOT, get_settings

# Embedded Airflow keeps its metadata in one SQLite file that the scheduler, dag-processor, api-server and CLI
# all write. Python's sqlite3 gives up on a lock after 5 s, which a busy scheduler on two cores can exceed
# (CI saw `airflow backfill create` fail with "database is locked"); wait up to a minute instead. Airflow
# imports this dict through AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS (it already uses WAL journaling).
SQLITE_CONNECT_ARGS = {"timeout": 60}


def airflow_env(base: dict | None = None) -> dict:
    """Environment variables for Airflow: embedded defaults (SQLite, LocalExecutor, home under var/),
    any AIRFLOW__* already set (production: Postgres, Celery) wins."""
    env = dict(os.environ if base is None else base)
    settings = get_settings(env)
    home = Path(env.get("AIRFLOW_HOME", settings.var / "airflow"))
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__API__PORT": env.get("ECHELON_AIRFLOW_PORT", "8080"),
        # Embedded Airflow serves this machine only (Airflow's own default is 0.0.0.0); containers set their own.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_passwords.json"),
        # Every task process sees the same project settings as the command that started Airflow.
        "ECHELON_HOME": str(settings.home), "ECHELON_VAR": str(settings.var),
        "ECHELON_LAKE": str(settings.lake), "ECHELON_REPORTS": str(settings.reports),
        "MLFLOW_TRACKING_URI": settings.mlflow_uri, "SPARK_MASTER": settings.spark_master,
        "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
        "no_proxy": "*",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", f"{__name__}.SQLITE_CONNECT_ARGS")
    env.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                   f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/execution/")
    # The scheduler's task supervisors and the api-server must sign and check the same tokens: a secret
    # generated once per Airflow home, never committed (production sets AIRFLOW__API_AUTH__JWT_SECRET).
    if "AIRFLOW__API_AUTH__JWT_SECRET" not in env:
        secret_file = home / ".jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        env["AIRFLOW__API_AUTH__JWT_SECRET"] = secret_file.read_text().strip()
    return env


def airflow(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the `airflow` command of this environment with the project's Airflow settings."""
    executable = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(executable), *args], env=airflow_env(kwargs.pop("env", None)),
                          check=check, **kwargs)


def main(argv: list[str]) -> int:
    """`echelon airflow ARGS...`: the airflow CLI with the project's settings."""
    return airflow(*argv, check=False).returncode
