"""MLflow behind its basic-auth app, as echelon.stack runs it: Postgres and the MLflow server only (no Spark,
no Airflow), so this module takes about a minute. Anonymous requests are refused; the tasks log in from
their 0600 credentials file (ECHELON_MLFLOW_CREDENTIALS, the password never in the environment handed to
tasks); a person logs in to the UI in headless Chromium."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from echelon.stack import http_get

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "reports" / "stack"

WRITER = """
from echelon import tracking
import mlflow
tracking.configure()
with tracking.run("auth", "2026-11-20", "authenticated-writer"):
    mlflow.log_metric("m", 1.0)
print(tracking.alias_version("no_such_model", "champion"))
"""


@pytest.fixture(scope="module")
def mlflow_stack(stack_postgres):
    from echelon.stack import Stack

    var = Path(tempfile.mkdtemp(prefix="echelon-mlflow-auth-")) / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ECHELON_MLFLOW"))}
    instance = Stack(var, postgres_url=stack_postgres, base_env={**env, "ECHELON_VAR": str(var)}, roles=(), spark=False)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(var.parent, ignore_errors=True)


def test_anonymous_requests_are_refused(mlflow_stack):
    url = mlflow_stack.mlflow_url
    assert http_get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1")[0] == 401
    assert http_get(f"{url}/api/2.0/mlflow/registered-models/search")[0] == 401
    import base64

    wrong = base64.b64encode(b"admin:wrong").decode()
    assert http_get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
                    {"Authorization": f"Basic {wrong}"})[0] == 401


def test_tasks_log_in_from_their_credentials_file_only(mlflow_stack):
    env = mlflow_stack.env
    credentials = Path(env["ECHELON_MLFLOW_CREDENTIALS"])
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    user, password = mlflow_stack.mlflow_tasks
    assert password not in " ".join(f"{k}={v}" for k, v in env.items()), "the password is in the tasks' environment"
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    done = subprocess.run([sys.executable, "-c", WRITER], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "None"     # a verified absence, asked with the tasks' login

    # without the file the same task is refused (fails closed: an error, never "no champion")
    no_file = {k: v for k, v in env.items() if k != "ECHELON_MLFLOW_CREDENTIALS"}
    refused = subprocess.run([sys.executable, "-c", WRITER], env=no_file, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and ("401" in refused.stderr or "Unauthorized" in refused.stderr), refused.stderr[-2000:]


def test_a_credentials_file_readable_by_others_is_refused(mlflow_stack, tmp_path):
    from echelon import tracking

    loose = tmp_path / "loose.credentials"
    loose.write_text(tracking.credentials_text("echelon-tasks", "x"))
    loose.chmod(0o644)
    with pytest.raises(tracking.TrackingError, match="mode 0644 lets others read"):
        tracking.load_credentials(str(loose))
    empty = tmp_path / "empty.credentials"
    empty.write_text("[mlflow]\n")
    empty.chmod(0o600)
    with pytest.raises(tracking.TrackingError, match="needs \\[mlflow\\] mlflow_tracking_username"):
        tracking.load_credentials(str(empty))
    with pytest.raises(tracking.TrackingError, match="cannot read the MLflow credentials"):
        tracking.load_credentials(str(tmp_path / "missing"))


def test_the_ui_asks_for_a_login_and_shows_experiments_after_it(mlflow_stack, tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed")
    playwright = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            from playwright.sync_api import Error as PlaywrightError

            anonymous = browser.new_context()
            assert anonymous.request.get(f"{mlflow_stack.mlflow_url}/").status == 401
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):   # no login, no page
                anonymous.new_page().goto(f"{mlflow_stack.mlflow_url}/")
            context = browser.new_context(viewport={"width": 1400, "height": 900}, http_credentials={
                "username": "admin", "password": mlflow_stack.mlflow_admin_password})
            page = context.new_page()
            response = page.goto(f"{mlflow_stack.mlflow_url}/#/experiments")
            assert response.status == 200
            # the tasks' experiment (previous test) is listed for the admin
            expect(page.get_by_text("echelon-auth").first).to_be_visible(timeout=90_000)
            path = tmp_path / "mlflow-login.png"
            page.screenshot(path=str(path), full_page=True)
            (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, ARTIFACTS / "screenshots" / path.name)
        finally:
            browser.close()
