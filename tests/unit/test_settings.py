"""Settings come from the environment (or a given mapping) with embedded defaults under var/."""
from echelon.airflow_env import airflow_env
from echelon.settings import PROJECT_ROOT, get_settings


def test_defaults_live_under_var(tmp_path):
    settings = get_settings({"ECHELON_HOME": str(tmp_path)})
    assert settings.var == tmp_path / "var" and settings.lake == tmp_path / "var" / "lake"
    assert settings.mlflow_uri == f"sqlite:///{tmp_path / 'var' / 'mlflow' / 'mlflow.db'}"
    assert settings.spark_master == "local[*]"


def test_environment_overrides(tmp_path):
    settings = get_settings({"ECHELON_VAR": str(tmp_path), "SPARK_MASTER": "spark://127.0.0.1:7077",
                             "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert settings.lake == tmp_path / "lake"
    assert (settings.spark_master, settings.mlflow_uri) == ("spark://127.0.0.1:7077", "http://127.0.0.1:5000")


def test_candidate_training_runs_one_at_a_time_on_the_sqlite_mlflow_store(tmp_path):
    assert get_settings({"ECHELON_VAR": str(tmp_path)}).demand_train_parallel == 1
    assert get_settings({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}).demand_train_parallel == 2
    assert get_settings({"ECHELON_DEMAND_TRAIN_PARALLEL": "3"}).demand_train_parallel == 3


def test_airflow_env_follows_the_given_settings_and_keeps_explicit_airflow_values(tmp_path):
    env = airflow_env({"ECHELON_VAR": str(tmp_path), "PATH": "/usr/bin"})
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
    assert env["ECHELON_LAKE"] == str(tmp_path / "lake")
    production = airflow_env({"ECHELON_VAR": str(tmp_path), "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"})
    assert production["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_embedded_airflow_binds_loopback_unless_told_otherwise(tmp_path):
    from echelon.airflow_env import airflow_env

    base = {"ECHELON_VAR": str(tmp_path)}
    assert airflow_env(base)["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert airflow_env({**base, "AIRFLOW__API__HOST": "0.0.0.0"})["AIRFLOW__API__HOST"] == "0.0.0.0"


def test_embedded_airflow_waits_for_a_busy_metadata_database(tmp_path):
    # Airflow's own engine, under airflow_env: a write that meets another process's write lock for 7 s waits
    # for it instead of failing with "database is locked" after sqlite3's default 5 s
    import subprocess
    import sys

    script = """
import sqlite3, threading
from airflow import settings
from sqlalchemy import text
with settings.engine.begin() as conn:
    conn.execute(text("create table t (x int)"))
holder = sqlite3.connect(settings.SQL_ALCHEMY_CONN.removeprefix("sqlite:///"), isolation_level=None,
                         check_same_thread=False)
holder.execute("BEGIN IMMEDIATE")
holder.execute("insert into t values (1)")
threading.Timer(7, holder.execute, ["COMMIT"]).start()
with settings.engine.begin() as conn:
    conn.execute(text("insert into t values (2)"))
    print(conn.execute(text("select count(*) from t")).scalar())
"""
    env = airflow_env({"ECHELON_VAR": str(tmp_path), "PATH": "/usr/bin"})
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == "echelon.airflow_env.SQLITE_CONNECT_ARGS"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "2"
    postgres = airflow_env({"ECHELON_VAR": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://x/y"})
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS" not in postgres
