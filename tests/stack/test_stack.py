"""The production-shaped stack end to end, on real processes (see conftest.py): authentication, the
scheduler's own nightly run of demand_nightly on Postgres and a Spark cluster, a backfill whose runs
overlap and that survives a crash of the scheduler (with its running tasks), concurrent MLflow writers with
nothing lost, a run triggered for a date whose task is SIGKILLed mid-write and re-run, and the UIs in
headless Chromium.

The tests share one stack and run in file order: each builds on the runs of the one before."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from echelon.schedule import nightly_run_date
from echelon.stack import StackError, http_get
from echelon.stack import parse_time as parse

BIN = Path(sys.executable).parent
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "reports" / "stack"   # screenshots kept after the run

pytestmark = pytest.mark.slow
DAG = "demand_nightly"
# train_candidate is mapped (one instance per candidate, all with this task id)
TASKS = {"partition", "ingest", "features", "candidates", "train_candidate", "choose_challenger",
         "evaluate_and_promote", "score", "report", "data_docs"}


def day(ds: str, delta: int) -> str:
    return (dt.date.fromisoformat(ds) + dt.timedelta(days=delta)).isoformat()


def wait_runs(stack, wanted: set[str], run_type: str, timeout: float) -> dict[str, dict]:
    """The runs of `run_type` at logical dates `wanted`, once finished."""
    try:
        return stack.wait_runs(DAG, wanted, run_type, timeout)
    except StackError as exc:
        pytest.fail(str(exc))


def task_instances(stack, run_id: str) -> dict[str, dict]:
    return {t["task_id"]: t for t in stack.api("GET", f"dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]}


def forecasts(stack, ds: str) -> Path:
    return stack.var / "lake" / "published" / "demand" / "forecasts" / f"ds={ds}"


def published_once(part: Path, keys: list[str]) -> pd.DataFrame:
    """The partition's rows, after checking they are the manifest's and no key appears twice."""
    manifest = json.loads((part / "_manifest.json").read_text())
    frame = pd.read_parquet(part)
    assert manifest["rows"] == len(frame), part
    assert not frame.duplicated(keys).any(), part
    return frame


def check_published_once(stack, ds: str) -> None:
    assert len(published_once(forecasts(stack, ds), ["item_id", "location_id", "target_date"])) == 10 * 2 * 28, ds
    leftovers = [p.name for p in (stack.var / "lake" / "_staging").glob(f"*forecasts.{ds}.*")]
    assert leftovers == [], f"staging left behind for {ds}: {leftovers}"


# -- security ------------------------------------------------------------------------------------------
def test_api_requires_authentication_and_services_bind_loopback(stack):
    assert http_get(f"{stack.airflow_url}/api/v2/dags")[0] == 401
    status, _ = http_get(f"{stack.airflow_url}/api/v2/dags", {"Authorization": "Bearer not-a-token"})
    assert status in (401, 403), status   # refused either way
    wrong = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                            "Content-Type: application/json", "-d",
                            json.dumps({"username": stack.admin_user, "password": "wrong"}),
                            f"{stack.airflow_url}/auth/token"], capture_output=True, text=True)
    assert wrong.stdout in ("401", "403"), wrong.stdout
    assert stack.api("GET", f"dags/{DAG}")["dag_id"] == DAG      # the env's password works
    passwords = Path(stack.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert passwords.stat().st_mode & 0o077 == 0, "the password file is readable by others"

    import psutil

    pids = set()
    for process in stack.processes.values():
        root = psutil.Process(process.pid)
        pids |= {root.pid, *(c.pid for c in root.children(recursive=True))}
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert {c.laddr.port for c in listening} >= {stack.ports["airflow"], stack.ports["mlflow"], stack.ports["spark"]}
    exposed = [(psutil.Process(c.pid).name(), c.laddr) for c in listening
               if c.laddr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert exposed == [], f"listening beyond loopback: {exposed}"


# -- the nightly run, through the scheduler --------------------------------------------------------------
def test_scheduler_runs_the_nightly_dag_on_the_cluster(stack):
    stack.api("PATCH", f"dags/{DAG}", {"is_paused": False})  # catchup=False: the latest 02:00 tick runs now
    logical = nightly_run_date(stack.ds).isoformat()
    run = wait_runs(stack, {logical}, "scheduled", timeout=600)[logical]
    tasks = task_instances(stack, run["dag_run_id"])
    assert run["state"] == "success", {t: i["state"] for t, i in tasks.items()}
    assert set(tasks) == TASKS and {t["state"] for t in tasks.values()} == {"success"}
    check_published_once(stack, stack.ds)
    # the Spark jobs ran on the standalone master, not on a local session
    apps = stack.spark_state().get("completedapps", []) + stack.spark_state().get("activeapps", [])
    assert len(apps) >= 3, apps


# -- a backfill with two runs at once, through a scheduler crash -------------------------------------------
BEFORE_TRAINING = {"ingest", "features"}   # tasks that only publish to the lake (no MLflow runs yet)


def not_started(state: str | None) -> bool:
    return state in (None, "scheduled", "queued")


def crash_scheduler_mid_backfill(stack, wanted: set[str], timeout: float = 600) -> dict[str, set[str]]:
    """Once a backfill run has a task of BEFORE_TRAINING running and no run has started training, crash the
    scheduler with every task it runs (SIGKILL, as a dead host would) and start a new one from the same
    settings. Returns the tasks that were killed, by run id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = [r for logical, r in stack.dag_runs(DAG, "backfill").items() if logical in wanted]
        states = {r["dag_run_id"]: {t: i["state"] for t, i in task_instances(stack, r["dag_run_id"]).items()}
                  for r in runs}
        running = {run: {t for t, state in tasks.items() if state == "running"} for run, tasks in states.items()}
        training = any(not not_started(state) for tasks in states.values()
                       for t, state in tasks.items() if t not in BEFORE_TRAINING | {"partition"})
        if training:
            pytest.fail(f"the backfill reached training before the scheduler could be crashed: {states}")
        if any(tasks & BEFORE_TRAINING for tasks in running.values()):
            stack.restart("scheduler", kill=True)
            # killed: still `running` in the database (a task that ended just before the kill reported so)
            after = {run: {t for t, i in task_instances(stack, run).items() if i["state"] == "running"}
                     for run in states}
            return {run: tasks for run, tasks in after.items() if tasks}
        time.sleep(1)
    pytest.fail(f"no backfill task ran within {timeout:.0f}s\n{stack.tail('scheduler')}")


def test_backfill_runs_in_parallel_survives_a_scheduler_crash_and_publishes_each_partition_once(stack):
    dates = [day(stack.ds, -2), day(stack.ds, -1)]
    out = subprocess.run([str(BIN / "echelon"), "backfill", "--dag", DAG, "--from", dates[0], "--to", dates[1],
                          "--max-active-runs", "2"], env=stack.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    wanted = {nightly_run_date(d).isoformat() for d in dates}
    old_scheduler = stack.processes["scheduler"].pid
    killed = crash_scheduler_mid_backfill(stack, wanted)
    assert stack.processes["scheduler"].pid != old_scheduler and killed, killed

    runs = wait_runs(stack, wanted, "backfill", timeout=1500)   # the crash costs ~1 min and the tasks' re-run
    assert {r["state"] for r in runs.values()} == {"success"}, runs
    starts = [parse(r["start_date"]) for r in runs.values()]
    ends = [parse(r["end_date"]) for r in runs.values()]
    assert max(starts) < min(ends), f"the backfill runs did not overlap: {starts} {ends}"
    for ds, run in zip(sorted(dates), sorted(runs.values(), key=lambda r: r["logical_date"])):
        tries = {t: i["try_number"] for t, i in task_instances(stack, run["dag_run_id"]).items()}
        for task in killed.get(run["dag_run_id"], ()):
            assert tries[task] >= 2, (task, tries)   # killed with the scheduler, run again by the new one
        assert tries["score"] == 1, tries          # published by one attempt
        check_published_once(stack, ds)
        features = stack.var / "lake" / "features" / "demand" / "sales_features" / f"ds={ds}"
        published_once(features, ["item_id", "location_id", "date"])
    # what the killed tasks had staged was swept by the publishes after them (other runs may be publishing)
    debris = [p.name for ds in dates for p in (stack.var / "lake" / "_staging").glob(f"*.{ds}.*")]
    assert debris == [], debris
    # the untouched nightly partition is still the scheduler's
    assert (forecasts(stack, stack.ds) / "_manifest.json").exists()


# -- MLflow: concurrent writers, nothing lost ---------------------------------------------------------
# A writer as the DAG tasks write: through echelon.tracking, whose experiment() survives two processes creating
# the experiment at once (mlflow.set_experiment does not: MLflow 3.x returns the loser the experiment without
# making it active, so its runs land in Default, as a fresh-clone run of this test showed).
WRITER = """
import sys, mlflow
from echelon import tracking
assert tracking.configure() == sys.argv[1]
for i in range(int(sys.argv[3])):
    with tracking.run("concurrency", "2026-11-20", f"{sys.argv[2]}-{i}", writer=sys.argv[2]):
        mlflow.log_params({"writer": sys.argv[2], "i": i})
        mlflow.log_metrics({"m": i * 1.0, "n": 2.0 * i})
print("ok")
"""


def test_mlflow_server_takes_concurrent_writers_without_losing_runs(stack, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url, registry_uri=stack.mlflow_url)  # not an inherited MLFLOW_REGISTRY_URI
    # the two parallel backfill runs each trained and registered both candidates: all four are there
    demand = client.get_experiment_by_name("echelon-demand")
    for ds in (day(stack.ds, -2), day(stack.ds, -1)):
        trained = client.search_runs([demand.experiment_id], f"tags.ds = '{ds}' and tags.stage = 'train'")
        assert sorted(r.data.tags["model"] for r in trained) == ["lightgbm", "seasonal_naive"], ds
        assert all(r.info.status == "FINISHED" for r in trained)
    versions = client.search_model_versions("name = 'demand_forecaster'")
    assert sorted(int(v.version) for v in versions) == list(range(1, 7)), "a registered version is missing"

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    per_writer = 15
    writers = [subprocess.Popen([sys.executable, str(script), stack.mlflow_url, name, str(per_writer)],
                                env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("a", "b")]
    results = [w.communicate(timeout=300) for w in writers]
    for writer, (stdout, stderr) in zip(writers, results):
        assert writer.returncode == 0 and "locked" not in stderr, stderr[-2000:]
    experiment = client.get_experiment_by_name("echelon-concurrency")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) == 2 * per_writer
    assert {(r.data.tags["writer"], r.data.params["i"]) for r in runs} == \
        {(w, str(i)) for w in "ab" for i in range(per_writer)}
    assert all(r.info.status == "FINISHED" and r.data.metrics["n"] == 2 * r.data.metrics["m"] for r in runs)


# -- analyst workflows: trigger a run for a date; a task killed mid-write; re-run the failed task ----------
def clear(stack, run: dict, task: str, downstream: bool = False) -> int:
    """Clear a task of a run (the UI's "Clear task", with or without its downstream tasks); returns its
    try number before."""
    before = task_instances(stack, run["dag_run_id"])[task]["try_number"]
    stack.api("POST", f"dags/{DAG}/clearTaskInstances",
              {"dag_run_id": run["dag_run_id"], "task_ids": [task], "include_downstream": downstream,
               "dry_run": False, "only_failed": False})
    return before


def wait_task(stack, run: dict, task: str, after_try: int, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while True:
        ti = task_instances(stack, run["dag_run_id"])[task]
        if ti["try_number"] > after_try and ti["state"] in ("success", "failed"):
            return ti
        assert time.time() < deadline, f"{task} did not finish a new try: {ti}"
        time.sleep(3)


def test_trigger_a_date_kill_a_task_mid_write_and_re_run_it(stack):
    ds = day(stack.ds, -3)                  # before the backfill's dates: nothing published for it yet
    logical = nightly_run_date(ds).isoformat()
    echelon_cli(stack, "airflow", "dags", "trigger", DAG, "--logical-date", logical)   # as the README says
    triggered = wait_started(stack, logical)

    # once the features task stages its rows (its Spark write, then its gate), the task process (the pid in
    # the staging folder's name) is SIGKILLed, as by the OOM killer or a lost machine
    pattern = f"features.demand.sales_features.{ds}.*@*"
    deadline = time.time() + 600
    while not (staged := list((stack.var / "lake" / "_staging").glob(pattern))):
        assert time.time() < deadline, "the triggered run's features task never staged its partition"
        time.sleep(0.05)
    os.kill(int(staged[0].name.rpartition("@")[0].rpartition(".")[2]), signal.SIGKILL)
    part = stack.var / "lake" / "features" / "demand" / "sales_features" / f"ds={ds}"
    assert not part.exists()                                   # nothing partial is visible
    failed = wait_runs(stack, {logical}, "manual", timeout=300)[logical]
    assert failed["state"] == "failed"
    assert task_instances(stack, triggered["dag_run_id"])["features"]["state"] == "failed"  # no retries here

    # the analyst re-runs the failed task and what follows it: the run succeeds, each partition once
    first = clear(stack, triggered, "features", downstream=True)
    assert wait_task(stack, triggered, "features", first)["state"] == "success"
    assert wait_runs(stack, {logical}, "manual", timeout=900)[logical]["state"] == "success"
    published_once(part, ["item_id", "location_id", "date"])
    check_published_once(stack, ds)
    assert list((stack.var / "lake" / "_staging").glob(pattern)) == []   # the dead try's staging was swept


def echelon_cli(stack, *args: str) -> str:
    out = subprocess.run([str(BIN / "echelon"), *args], env=stack.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def wait_started(stack, logical: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while logical not in (found := stack.dag_runs(DAG, "manual")):
        assert time.time() < deadline, f"no triggered run at {logical}"
        time.sleep(2)
    return found[logical]


# -- the UIs, in headless Chromium ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium chromium-driver)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def shoot(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / "screenshots" / path.name)
    return path


def test_airflow_ui_lists_dags_and_shows_the_green_nightly_run(stack, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{stack.airflow_url}/dags")
    # not logged in: the UI sends us to the login form
    page.wait_for_url("**/login**", timeout=60_000)
    page.locator("input[name=username]").fill(stack.admin_user)
    page.locator("input[name=password]").fill(stack.admin_password)
    page.get_by_role("button", name="Sign in").click()
    # the sign-in redirects on its own; navigating before it lands would be interrupted by it
    page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
    page.goto(f"{stack.airflow_url}/dags")
    expect(page.get_by_role("link", name=DAG).first).to_be_visible(timeout=60_000)
    shoot(page, "airflow-dags", tmp_path)
    run_id = wait_runs(stack, {nightly_run_date(stack.ds).isoformat()}, "scheduled", 60).popitem()[1]["dag_run_id"]
    page.goto(f"{stack.airflow_url}/dags/{DAG}/runs/{run_id}")
    # the run's Task Instances table: one row per task, each one green ("Success")
    rows = page.get_by_role("row")
    for task in sorted(TASKS):
        row = rows.filter(has=page.get_by_text(task, exact=True))
        expect(row.first).to_contain_text("Success", timeout=60_000)
    expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
    shoot(page, "airflow-nightly-run", tmp_path)
    page.close()


def test_mlflow_ui_shows_runs_and_the_champion(stack, browser, tmp_path):
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    client = MlflowClient(stack.mlflow_url, registry_uri=stack.mlflow_url)  # not an inherited MLFLOW_REGISTRY_URI
    experiment = client.get_experiment_by_name("echelon-demand")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    champion = client.get_model_version_by_alias("demand_forecaster", "champion").version
    # MLflow's basic-auth app: the browser logs in as the admin (HTTP basic auth)
    page = browser.new_context(http_credentials={"username": "admin", "password": stack.mlflow_admin_password},
                               viewport={"width": 1400, "height": 900}).new_page()
    page.goto(f"{stack.mlflow_url}/#/experiments/{experiment.experiment_id}/runs")
    expect(page.get_by_text(f"{len(runs)} matching runs")).to_be_visible(timeout=60_000)
    assert len(runs) >= 2
    expect(page.get_by_text("train-lightgbm").first).to_be_visible()
    expect(page.get_by_text("evaluate-and-promote").first).to_be_visible()
    shoot(page, "mlflow-runs", tmp_path)
    page.goto(f"{stack.mlflow_url}/#/models/demand_forecaster")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Version {champion}", exact=True))
    expect(row).to_contain_text("champion", timeout=60_000)   # the alias chip "@ champion" on its version
    row.scroll_into_view_if_needed()
    shoot(page, "mlflow-model-champion", tmp_path)
    page.close()


def test_data_docs_and_run_report_open(stack, browser, tmp_path):
    from playwright.sync_api import expect

    site = stack.var / "reports" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto((site / "index.html").as_uri())
    # the index's tables are drawn by scripts from public CDNs, so offline only its frame renders
    expect(page.get_by_role("tab", name="Validation Results")).to_be_visible(timeout=30_000)
    shoot(page, "data-docs-index", tmp_path)
    latest = max((site / "validations" / "demand_forecasts").rglob("*.html"), key=lambda p: p.stat().st_mtime)
    page.goto(latest.as_uri())
    expect(page.get_by_text("Expectation Suite: demand_forecasts")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Status: Succeeded")).to_be_visible()
    expect(page.get_by_text("Values for given compound columns must be unique together").first).to_be_visible()
    shoot(page, "data-docs-forecasts-gate", tmp_path)
    page.goto((stack.var / "reports" / "demand" / f"ds={stack.ds}" / "index.html").as_uri())
    expect(page.get_by_text("Backtest").first).to_be_visible(timeout=30_000)
    shoot(page, "run-report", tmp_path)
    page.close()
