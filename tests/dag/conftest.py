"""What the domains' in-process DAG tests share: Airflow pointed at the session's home, the metadata
database migrated, and the DAG parsed from its file, ready for dag.test()."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
_migrated: set[str] = set()   # Airflow homes whose metadata database this session already migrated


def _dag_for_test(patch: pytest.MonkeyPatch, dag_file: str, dag_id: str):
    """Airflow's settings and no task retries go into `patch`'s environment (undone with it, so later
    modules parse the DAGs with their real retries); then migrate (once per home: a no-op migrate still
    costs an Airflow start) and parse."""
    from echelon.airflow_env import airflow_env

    for key, value in airflow_env().items():
        if key.startswith("AIRFLOW"):
            patch.setenv(key, value)
    patch.setenv("ECHELON_TASK_RETRIES", "0")
    if os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] not in _migrated:
        out = subprocess.run([str(Path(sys.executable).parent / "echelon"), "airflow", "db", "migrate"],
                             capture_output=True, text=True, timeout=300, env=os.environ)
        assert out.returncode == 0, out.stderr[-3000:]
        _migrated.add(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / dag_file)).dags[dag_id]


@pytest.fixture(scope="session")
def dag_for_test():
    return _dag_for_test
