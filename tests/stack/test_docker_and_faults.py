"""Cheap checks of the production shape that need no running stack: the compose files are valid and
safe (no Docker engine runs here, so they are checked as YAML), the stack script fails clearly when
Postgres is unreachable, and a crash of a service reaches every process it started."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from echelon.stack import Stack, free_port, redact, write_secret

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY)$")


def compose(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def test_compose_has_the_topology_with_health_checks_and_named_volumes():
    main = compose("compose.yaml")
    services = main["services"]
    assert {"postgres", "mlflow", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "spark-master", "spark-worker"} <= set(services)
    for name, service in services.items():
        if name not in ("airflow-init", "preflight"):   # one-shot services: they exit when done
            assert "healthcheck" in service, f"{name} has no health check"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in main["volumes"], f"{name}: volume {source} is not declared"
    assert "postgresql+psycopg2://" in services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "/mlflow" in services["mlflow"]["environment"]["MLFLOW_BACKEND"]
    assert services["airflow-scheduler"]["environment"]["SPARK_MASTER"].endswith("spark-master:7077}")
    celery = compose("compose.celery.yaml")["services"]
    assert {"redis", "airflow-worker"} <= set(celery)
    assert celery["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_no_secret_has_a_default_and_every_variable_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    for name in ("compose.yaml", "compose.celery.yaml"):
        text = (DOCKER / name).read_text()
        for var, modifier in re.findall(r"\$\{([A-Z0-9_]+)(:[-?][^}]*)?\}", text):
            assert re.search(rf"^# {var}=", example, re.M), f"{name}: ${{{var}}} is not documented in .env.example"
            if SECRET_NAME.search(var):
                assert modifier.startswith(":?"), f"{name}: the secret {var} must be required, not defaulted"
        # no literal secret values: every secret-named setting is a reference to the environment
        for key, value in re.findall(r"^\s*([A-Z0-9_]+):\s*(\S.*)$", text, re.M):
            if SECRET_NAME.search(key):
                assert "${" in value, f"{name}: {key} has a literal value"
        for port in re.findall(r'"(\S+:\d+)"\]', text):
            assert port.startswith("127.0.0.1:"), f"{name}: port {port} is published beyond loopback"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^USER echelon$", dockerfile, re.M), "the image must run as a non-root user"
    assert not SECRET_NAME.search(" ".join(re.findall(r"^ENV .*", dockerfile, re.M))), "a secret is baked into the image"


def test_redact_hides_passwords():
    assert redact("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("postgresql://postgres@127.0.0.1:5432/postgres") == "postgresql://postgres@127.0.0.1:5432/postgres"


def test_unreachable_postgres_gives_a_clear_message(tmp_path):
    url = f"postgresql://echelon:s3cret@127.0.0.1:{free_port()}/postgres"   # nothing listens there
    out = subprocess.run([sys.executable, "-m", "echelon.stack", "--postgres-url", url, "--var", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Postgres is unreachable at postgresql://echelon:***@127.0.0.1" in out.stderr
    assert "Traceback" not in out.stderr and "s3cret" not in out.stderr + out.stdout
    assert not list(tmp_path.rglob("*.log")), "no service was started"


def test_kill_tree_reaches_descendants_in_other_process_groups():
    import psutil

    from echelon.stack import kill_tree

    # like a scheduler whose task runner moved to its own process group (Airflow's supervisor does that)
    root = subprocess.Popen(["bash", "-c", "setsid sleep 300 & sleep 300 & wait"], start_new_session=True)
    deadline = time.time() + 30
    while len(psutil.Process(root.pid).children()) < 2:
        assert time.time() < deadline, "the test's processes did not start"
        time.sleep(0.05)
    children = psutil.Process(root.pid).children()
    assert len({os.getpgid(c.pid) for c in children}) == 2      # one of them left the root's group
    killed = kill_tree(root.pid)
    assert set(killed) == {root.pid, *(c.pid for c in children)}
    root.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], alive


# ---- issue 18: secrets -----------------------------------------------------------------------------

def preflight(values: dict) -> subprocess.CompletedProcess:
    """compose.yaml's preflight command as its container would run it ($$ is compose's escaped $)."""
    service = compose("compose.yaml")["services"]["preflight"]
    script = service["command"][0].replace("$$", "$")
    return subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], **values},
                          capture_output=True, text=True, timeout=30)


def test_compose_refuses_the_change_me_placeholder():
    services = compose("compose.yaml")["services"]
    names = list(services["preflight"]["environment"])
    assert services["postgres"]["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}
    assert services["spark-master"]["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}
    good = {name: f"s3cret-{k}" for k, name in enumerate(names)}
    assert preflight(good).returncode == 0
    refused = preflight({**good, "AIRFLOW_FERNET_KEY": "change-me"})
    assert refused.returncode == 1
    assert "AIRFLOW_FERNET_KEY is still the placeholder change-me" in refused.stdout


def test_secret_files_are_created_0600_and_the_stack_prints_no_password(tmp_path):
    import stat

    path = write_secret(tmp_path / "deep" / "secret.json", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_secret(path, "y")                       # an existing file is narrowed again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "y"
    stack = Stack(tmp_path / "var", postgres_url="postgresql://postgres:hunter2@127.0.0.1:5432/postgres",
                  base_env={"PATH": os.environ["PATH"], "ECHELON_AIRFLOW_ADMIN_PASSWORD": "adm1n-pw"})
    stack._write_configs()
    text = stack.describe()
    assert "hunter2" not in text and "adm1n-pw" not in text and "postgres:***@127.0.0.1" in text
    conf = Path(stack.env["SPARK_CONF_DIR"]) / "spark-defaults.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "spark.authenticate true" in conf.read_text() and stack.spark_secret in conf.read_text()


@pytest.mark.parametrize("batch_id", ["../..", "a/b", "..", "", "x" * 200, "a..b", ".hidden"])
def test_batch_ids_are_strict(batch_id):
    from echelon.models.damage.steps import batch_info

    with pytest.raises(ValueError, match="batch_id .* is not a valid id"):
        batch_info("2026-11-20", batch_id or " ", "manifest.csv")
    assert batch_info("2026-11-20", "batch-2026-11-20.001", "m.csv")["batch_id"] == "batch-2026-11-20.001"
