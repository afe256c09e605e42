"""Cheap checks of the production shape that need no running stack: the compose files are valid and
safe (no Docker engine runs here, so they are checked as YAML), the stack script fails clearly when
Postgres is unreachable, and a crash of a service reaches every process it started."""
from __future__ import annotations

import os
import re
import stat
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
        if name not in ("airflow-init", "preflight", "mlflow-users"):   # one-shot services: they exit when done
            assert "healthcheck" in service, f"{name} has no health check"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in main["volumes"], f"{name}: volume {source} is not declared"
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"] == \
        "python -m echelon.stack_secrets conn airflow"
    assert "echelon.stack_secrets conn mlflow" in services["mlflow"]["command"]
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
    while len({os.getpgid(c.pid) for c in children}) < 2:       # setsid may not have run yet on a loaded machine
        assert time.time() < deadline, "setsid did not move the child to a group of its own"
        time.sleep(0.05)
    assert len({os.getpgid(c.pid) for c in children}) == 2      # one of them left the root's group
    killed = kill_tree(root.pid)
    assert set(killed) == {root.pid, *(c.pid for c in children)}
    root.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], alive


# ---- issue 18: secrets -----------------------------------------------------------------------------

def secrets_cli(*args: str, secrets_dir: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "echelon.stack_secrets", *args], capture_output=True, text=True,
                          env={**os.environ, "ECHELON_SECRETS": str(secrets_dir), **(extra_env or {})}, timeout=120)


def test_compose_mounts_secrets_as_files_and_no_environment_holds_one():
    """Every secret is a Docker secret (a file under /run/secrets): no service's environment holds a secret
    value (Airflow gets them through `_CMD` settings, Postgres through `_FILE`), every file a service reads
    is declared and mounted in that service, and every secret is one the generator writes."""
    from echelon.stack_secrets import SECRETS

    base = compose("compose.yaml")["services"]   # `<<: *echelon` merges are resolved by the YAML loader
    declared = set(compose("compose.yaml")["secrets"])
    assert declared == set(SECRETS)
    for name in ("compose.yaml", "compose.celery.yaml"):
        for service_name, service in compose(name)["services"].items():
            merged = {**base.get(service_name, {}), **service}   # an overlay's keys replace the base's
            env = merged.get("environment") or {}
            for key, value in env.items():
                assert not SECRET_NAME.search(key), f"{name}: {service_name} has the secret {key} in its environment"
                assert "${" not in str(value) or not SECRET_NAME.search(str(value)), (service_name, key)
            # the entrypoint reads spark_secret only where it is mounted (`[ ! -e ... ] ||`)
            text = yaml.safe_dump({k: v for k, v in merged.items() if k != "entrypoint"})
            mounted = set(merged.get("secrets") or [])
            for used in set(re.findall(r"/run/secrets/([a-z_]+)", text)):
                assert used in declared, f"{name}: {service_name} reads undeclared secret {used}"
                assert used in mounted or service_name in ("airflow-worker",), \
                    f"{name}: {service_name} reads /run/secrets/{used} without mounting it"
    airflow_env = compose("compose.yaml")["x-echelon"]["environment"]
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
                "AIRFLOW__API__SECRET_KEY_CMD", "AIRFLOW__CORE__FERNET_KEY_CMD"):
        assert key in airflow_env, key
        assert key.removesuffix("_CMD") not in airflow_env
    assert airflow_env["ECHELON_MLFLOW_CREDENTIALS"] == "/run/secrets/mlflow_tasks_credentials"
    services = compose("compose.yaml")["services"]
    assert "--app-name basic-auth" in services["mlflow"]["command"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "spark-conf" in " ".join(compose("compose.yaml")["x-echelon"]["entrypoint"])
    assert {"spark_secret"} <= set(services["spark-master"]["secrets"]) and \
        {"spark_secret", "mlflow_tasks_credentials"} <= set(services["spark-worker"]["secrets"])
    celery = compose("compose.celery.yaml")["services"]["airflow-worker"]["environment"]
    assert "AIRFLOW__CELERY__BROKER_URL_CMD" in celery and "AIRFLOW__CELERY__BROKER_URL" not in celery
    assert "docker/secrets/" in (ROOT / ".gitignore").read_text()


def test_compose_preflight_refuses_a_missing_empty_or_placeholder_secret(tmp_path):
    services = compose("compose.yaml")["services"]
    assert services["preflight"]["command"] == ["python", "-m", "echelon.stack_secrets", "check"]
    assert services["postgres"]["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}
    assert services["spark-master"]["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}
    made = secrets_cli("generate", str(tmp_path), secrets_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    assert {p.name for p in tmp_path.iterdir()} == set(services["preflight"]["secrets"])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())
    before = (tmp_path / "spark_secret").read_text()
    assert secrets_cli("generate", str(tmp_path), secrets_dir=tmp_path).returncode == 0
    assert (tmp_path / "spark_secret").read_text() == before, "generate must keep existing secrets"
    assert secrets_cli("check", secrets_dir=tmp_path).returncode == 0
    (tmp_path / "airflow_fernet_key").write_text("change-me\n")
    refused = secrets_cli("check", secrets_dir=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"secret {tmp_path}/airflow_fernet_key: is still the placeholder change-me" in refused.stderr
    (tmp_path / "airflow_fernet_key").write_text("")
    assert "airflow_fernet_key: is empty" in secrets_cli("check", secrets_dir=tmp_path).stderr
    (tmp_path / "airflow_fernet_key").unlink()
    missing = secrets_cli("check", secrets_dir=tmp_path)
    assert missing.returncode == 2 and "airflow_fernet_key: cannot be read" in missing.stderr


def test_airflow_reads_its_secrets_through_the_cmd_settings_of_compose(tmp_path):
    """The `_CMD` settings exactly as compose sets them, resolved by Airflow itself: the values come from
    the secret files, and the environment a task would inherit holds only the commands."""
    secrets_dir = tmp_path / "secrets"
    assert secrets_cli("generate", str(secrets_dir), secrets_dir=secrets_dir).returncode == 0
    spec = compose("compose.yaml")["x-echelon"]["environment"]
    env = {k: v.replace("/run/secrets", str(secrets_dir)) for k, v in spec.items() if k.endswith("_CMD")}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}, **env,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",   # the image's `python`
           "ECHELON_SECRETS": str(secrets_dir), "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW_DB_USER": "airflow"}
    script = ("import json\nfrom airflow.configuration import conf\n"
              "print('VALUES', json.dumps([conf.get('database', 'sql_alchemy_conn'), conf.get('core', 'fernet_key'),"
              " conf.get('api_auth', 'jwt_secret')]))")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    (line,) = [line for line in done.stdout.splitlines() if line.startswith("VALUES ")]
    url, fernet, jwt = json.loads(line.removeprefix("VALUES "))
    password = (secrets_dir / "airflow_db_password").read_text().strip()
    assert url.startswith("postgresql+psycopg2://airflow:") and url.endswith("@postgres:5432/airflow")
    from urllib.parse import unquote

    assert unquote(url.split(":")[2].split("@")[0]) == password
    assert fernet == (secrets_dir / "airflow_fernet_key").read_text().strip()
    assert jwt == (secrets_dir / "airflow_jwt_secret").read_text().strip()
    assert all(password not in v and fernet not in v for v in env.values())


def test_spark_conf_from_the_secret_file_is_0600_and_authenticates(tmp_path):
    secrets_dir = tmp_path / "secrets"
    assert secrets_cli("generate", str(secrets_dir), secrets_dir=secrets_dir).returncode == 0
    done = secrets_cli("spark-conf", str(tmp_path / "conf"), secrets_dir=secrets_dir)
    assert done.returncode == 0, done.stderr
    conf = tmp_path / "conf" / "spark-defaults.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    secret = (secrets_dir / "spark_secret").read_text().strip()
    assert conf.read_text() == f"spark.authenticate true\nspark.authenticate.secret {secret}\n"


def test_secret_files_are_created_0600_and_the_stack_prints_no_password(tmp_path):
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


def test_chaos_refuses_an_unknown_fault_before_starting_anything():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--faults", "postgres,meteor"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("chaos: unknown fault(s) ['meteor']; known: "
                                   "['corrupt', 'disk_full', 'mlflow', 'postgres', 'spark_worker']")
