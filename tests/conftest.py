"""Shared fixtures: every test session gets its own var/ (lake, reports, MLflow, Airflow) in a temp folder,
so tests never touch a developer's state; one local Spark session serves the whole run."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

# Two BLAS threads per numpy/scipy call fight over a 2-core machine's cores (measured 3.5x slower on the
# callouts simulation); set before numpy loads, and inherited by the subprocesses the tests start.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def isolated_var(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    saved = {k: os.environ.get(k) for k in ("ECHELON_VAR", "ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI",
                                            "AIRFLOW_HOME", "SPARK_MASTER")}
    for key in saved:
        os.environ.pop(key, None)
    os.environ["ECHELON_VAR"] = str(var)
    os.environ.setdefault("ECHELON_SPARK_SHUFFLE_PARTITIONS", "4")
    os.environ["MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK"] = "true"
    yield var
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def lake_dir(tmp_path, monkeypatch):
    """A fresh, empty lake for one test."""
    monkeypatch.setenv("ECHELON_LAKE", str(tmp_path / "lake"))
    return tmp_path / "lake"


@pytest.fixture(scope="session")
def spark(isolated_var):
    from echelon.spark import get_spark

    session = get_spark("echelon-tests", master="local[2]")
    yield session
    session.stop()


def pytest_sessionfinish(session, exitstatus):
    # py4j's finalisers log at interpreter exit, after pytest has closed the streams its log capture
    # wrote to: silence them so the run does not end in "--- Logging error ---" tracebacks.
    logging.getLogger("py4j").setLevel(logging.CRITICAL)  # its children (py4j.clientserver) inherit this
    logging.raiseExceptions = False


# `make test` runs two xdist workers, each taking whole modules (they share module-scoped worlds, Airflow homes
# and the stack) in collection order. Most of the suite's time is in a few modules that wait on schedulers
# and JVMs; starting them first lets the two workers finish together (longest processing time first).
SLOWEST_MODULES = ("tests/stack/test_stack.py", "tests/dag/test_demand_e2e.py")


def pytest_collection_modifyitems(config, items):
    def module(item) -> str:
        return item.nodeid.split("::")[0]

    slow = {module(item) for item in items if item.get_closest_marker("slow")}

    def rank(item) -> int:
        if module(item) in SLOWEST_MODULES:
            return SLOWEST_MODULES.index(module(item))
        return len(SLOWEST_MODULES) + (0 if module(item) in slow else 1)

    items.sort(key=rank)   # stable, and by module: each module's tests keep their order and stay together


@pytest.fixture(scope="session")
def store_item_csv():
    path = SHARED_DATA / "store_item" / "retail_sales_sample.csv"
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (it lives in ../shared/data beside the project)")
    return path
