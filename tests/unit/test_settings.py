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
