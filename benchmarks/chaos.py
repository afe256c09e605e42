"""Issue 18's fault matrix, run: faults injected into the demand night on the production-shaped stack
(echelon.stack: MLflow behind basic auth on Postgres, a Spark standalone master + worker with
spark.authenticate), with a Postgres of its own (initdb in a temporary folder) so that taking the database
down harms no one else. `make chaos`; writes the "Fault matrix" section of benchmarks/results/reliability.md.

The demand steps run as the DAG's tasks run them (`echelon demand <step> --ds D`, the environment of the
stack's tasks). Airflow's own roles are left out to fit a 2-core machine: what a fault does to a task is
the same; the scheduler's retry is the retry run here after recovery.

For each fault: what the step did (exit status, last line), the checksums of every published partition
before and after the fault (none may change or go missing), and the retry after recovery: its exit status,
and that each partition it publishes is there exactly once (manifest rows == file rows, no duplicate keys).

  Postgres down mid-run      train: Postgres stopped (pg_ctl -m immediate) while the step logs to MLflow
  MLflow down mid-run        score: the MLflow server SIGKILLed (its whole tree) while scoring starts
  Spark worker lost mid-job  features: the worker SIGKILLed while the job's executors run, restarted 5 s later
  lake disk full mid-publish ingest with the lake on a tmpfs of its own (a user+mount namespace, `unshare
                             -rm`: no root needed) sized a few KiB above what the lake holds; then grown
  corrupt partition          one byte of a features part file flipped; score must refuse it; features re-run

    .venv/bin/python benchmarks/chaos.py            # ~20-40 min on 2 loaded cores
    .venv/bin/python benchmarks/chaos.py --faults corrupt   # one fault (~20 min: world + a night + the fault);
                                                    # its row replaces that fault's, the others' rows stay
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
OUT = ROOT / "benchmarks" / "results" / "reliability.md"
SECTION = "## Fault matrix on the stack"
KEYS = {"published/demand/forecasts": ["item_id", "location_id", "target_date"],
        "features/demand/sales_features": None, "raw/demand/sales": None}


def log(message: str) -> None:
    print(f"[chaos {dt.datetime.now():%H:%M:%S}] {message}", flush=True)


# -- a Postgres of our own ---------------------------------------------------------------------------------
class Postgres:
    """initdb + pg_ctl in a folder of its own, on a free port (as the `postgres` user when run as root:
    Postgres refuses to run as root)."""

    def __init__(self, folder: Path):
        from echelon.stack import free_port

        self.home = folder / "postgres"
        self.data, self.port = self.home / "data", free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            raise SystemExit("chaos: initdb/pg_ctl are not installed (a private Postgres is needed to take it down)")
        self.home.mkdir(parents=True)
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            folder.chmod(0o755)
            os.chown(self.home, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run([*self.prefix, *argv], capture_output=True, text=True)
        if done.returncode and argv[0] != "pg_ctl" or (argv[0] == "pg_ctl" and "start" in argv and done.returncode):
            raise SystemExit(f"chaos: {' '.join(argv[:2])} failed: {done.stderr[-1000:]}")

    def start(self) -> None:
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.home / "postgres.log"), "-w", "start",
                   "-o", f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 "
                         "-c shared_buffers=32MB -c max_connections=60"])

    def stop(self, mode: str = "fast") -> None:
        self._run(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])


# -- observations -----------------------------------------------------------------------------------------
def checksums(lake: Path) -> dict:
    from echelon import checksums as cs

    return cs.dump(lake) if lake.exists() else {}


def changed(before: dict, after: dict, allowed: set[str] = frozenset()) -> list[str]:
    from echelon import checksums as cs

    return [line for line in cs.compare(before, after) if not any(a in line for a in allowed)]


def exactly_once(lake: Path, table: str, ds: str) -> str:
    """'once' when the partition exists, its files hold the manifest's rows and no key repeats."""
    import pandas as pd

    part = lake / table / f"ds={ds}"
    if not (part / "_manifest.json").exists():
        return "missing"
    manifest = json.loads((part / "_manifest.json").read_text())
    frame = pd.read_parquet(part)
    keys = KEYS.get(table)
    duplicated = int(frame.duplicated(keys).sum()) if keys else int(frame.duplicated().sum())
    staging = list((lake / "_staging").glob(f"*{table.split('/')[-1]}.{ds}.*")) if (lake / "_staging").exists() else []
    if manifest["rows"] != len(frame) or duplicated or staging:
        return f"NOT once: manifest {manifest['rows']} rows, files {len(frame)}, {duplicated} duplicated, {len(staging)} staging"
    return f"once ({len(frame)} rows)"


class Step:
    """One `echelon demand <step>` process in the stack's task environment."""

    def __init__(self, env: dict, step: str, ds: str, logs: Path, extra_env: dict | None = None, wrap=None):
        self.name = f"{step}-{ds}"
        self.log_path = logs / f"{self.name}-{time.time_ns()}.log"
        argv = [str(BIN / "echelon"), "demand", step, "--ds", ds]
        self.began = time.time()
        self.process = subprocess.Popen((wrap or (lambda a: a))(argv), env={**env, **(extra_env or {})},
                                        stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait(self, timeout: float = 900) -> tuple[int, str, float]:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
            return code, f"(hung: killed after {timeout:.0f} s)", time.time() - self.began
        return code, last_line(self.log_path.read_text(errors="replace")), time.time() - self.began


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("echelon ") or "Error" in line or "error:" in line]
    return (ours[-1] if ours else (lines[-1] if lines else ""))[:300]


def run_step(env: dict, step: str, ds: str, logs: Path, timeout: float = 900, **kwargs) -> tuple[int, str, float]:
    log(f"{step} {ds}")
    result = Step(env, step, ds, logs, **kwargs).wait(timeout)
    log(f"{step} {ds}: exit {result[0]} in {result[2]:.0f}s {result[1][:160]}")
    return result


def night(env: dict, ds: str, logs: Path, steps=("ingest", "features", "train", "evaluate_and_promote", "score")):
    for step in steps:
        code, message, _ = run_step(env, step, ds, logs)
        if code:
            raise SystemExit(f"chaos: the baseline step {step} {ds} failed: {message} (see {logs})")


def wait_for(predicate, timeout: float, what: str) -> float:
    began = time.time()
    while not predicate():
        if time.time() - began > timeout:
            raise TimeoutError(what)
        time.sleep(0.5)
    return time.time() - began


# -- the faults -------------------------------------------------------------------------------------------
def fault_postgres(ctx) -> dict:
    ds, lake = ctx["ds"], ctx["lake"]
    before = checksums(lake)
    step = Step(ctx["env"], "train", ds, ctx["logs"])
    # mid-run: once the step has started an MLflow run (RUNNING in the store), so the step is writing to it
    try:
        waited = f"{wait_for(lambda: running_runs(ctx['stack']) > 0 or step.process.poll() is not None, 600, 'a run'):.0f}s"
    except TimeoutError:
        waited = "600 s (no RUNNING run seen)"
    ctx["postgres"].stop("immediate")
    log(f"postgres stopped {waited} into train")
    code, message, seconds = step.wait(900)
    after = checksums(lake)
    ctx["postgres"].start()
    log("postgres started again")
    retry = [run_step(ctx["env"], s, ds, ctx["logs"]) for s in ("train", "evaluate_and_promote", "score")]
    return {"fault": f"Postgres (MLflow's store) stopped (-m immediate) {waited} into `demand train`, once its "
                     "MLflow run was RUNNING; started again when the step had ended",
            "run": f"exit {code} after {seconds:.0f}s: {message}", "published": changed(before, after) or "unchanged",
            "retry": retry, "once": exactly_once(lake, "published/demand/forecasts", ds)}


def fault_mlflow(ctx) -> dict:
    from echelon.stack import kill_tree

    ds, lake, stack = ctx["ds"], ctx["lake"], ctx["stack"]
    before = checksums(lake)
    step = Step(ctx["env"], "score", ds, ctx["logs"])
    time.sleep(3)
    kill_tree(stack.processes["mlflow"].pid)
    log("mlflow killed")
    code, message, seconds = step.wait(900)
    after = checksums(lake)
    stack.processes["mlflow"].wait()
    stack._spawn("mlflow", stack.commands["mlflow"], mode="ab")
    stack._wait("MLflow again", lambda: _health(stack), roles=("mlflow",))
    retry = [run_step(ctx["env"], "score", ds, ctx["logs"])]
    return {"fault": "MLflow server SIGKILLed (whole tree) 3 s into `demand score`",
            "run": f"exit {code} after {seconds:.0f}s: {message}",
            "published": changed(before, after) or "unchanged", "retry": retry,
            "once": exactly_once(lake, "published/demand/forecasts", ds)}


def running_runs(stack) -> int:
    """RUNNING runs of the demand experiment, asked as MLflow's admin (basic auth)."""
    import base64
    import urllib.request

    token = base64.b64encode(f"admin:{stack.mlflow_admin_password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    try:
        request = urllib.request.Request(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/get-by-name"
                                         "?experiment_name=echelon-demand", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            experiment = json.loads(response.read())["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [experiment], "filter": "attributes.status = 'RUNNING'"}).encode()
        request = urllib.request.Request(f"{stack.mlflow_url}/api/2.0/mlflow/runs/search", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return len(json.loads(response.read()).get("runs", []))
    except OSError:
        return 0


def _health(stack) -> bool:
    from echelon.stack import http_get

    return http_get(f"{stack.mlflow_url}/health")[0] == 200


def fault_spark_worker(ctx) -> dict:
    from echelon.stack import kill_tree

    ds, lake, stack = ctx["ds"], ctx["lake"], ctx["stack"]
    before = checksums(lake)
    step = Step(ctx["env"], "features", ds, ctx["logs"])
    try:
        waited = wait_for(lambda: any(a.get("state") == "RUNNING" for a in stack.spark_state().get("activeapps", [])),
                          300, "a running application")
        time.sleep(8)   # its executors at work
        kill_tree(stack.processes["spark-worker"].pid)
        note = f"worker SIGKILLed {waited + 8:.0f}s after the app started; restarted 5 s later"
    except TimeoutError:
        note = "the application never ran on the cluster (nothing killed)"
    log(note)
    time.sleep(5)
    stack.processes["spark-worker"].wait()
    stack._spawn("spark-worker", stack.commands["spark-worker"], mode="ab")
    code, message, seconds = step.wait(900)
    after = checksums(lake)
    allowed = {f"features/demand/sales_features/ds={ds}"} if code == 0 else set()
    retry = [] if code == 0 else [run_step(ctx["env"], "features", ds, ctx["logs"])]
    return {"fault": f"Spark worker lost mid-job (`demand features`): {note}",
            "run": f"exit {code} after {seconds:.0f}s: {message}",
            "published": changed(before, after, allowed) or ("unchanged (but the step's own partition, "
                                                              "republished)" if code == 0 else "unchanged"),
            "retry": retry or "(not needed: the job finished on the restarted worker)",
            "once": exactly_once(lake, "features/demand/sales_features", ds)}


DISK_INNER = r"""
set -e
mount -t tmpfs -o size=$SIZE_BIG tmpfs "$MNT"
cp -a "$LAKE/." "$MNT/"
used=$(du -sk "$MNT" | cut -f1)
mount -o remount,size=$((used + MARGIN_KB))k "$MNT"
echo "tmpfs: ${used} KiB used, size $((used + MARGIN_KB)) KiB" >&2
"$PY" "$SCRIPT" --disk-inner "$MNT" --ds "$DS" --logs "$LOGS" > "$RESULT"
"""


def fault_disk_full(ctx) -> dict:
    ds2, lake = ctx["ds_next"], ctx["lake"]
    mnt = Path(tempfile.mkdtemp(prefix="chaos-tmpfs-"))
    result = ctx["logs"] / "disk.json"
    env = {**ctx["env"], "MNT": str(mnt), "LAKE": str(lake), "SIZE_BIG": "2g", "MARGIN_KB": "24", "PY": sys.executable,
           "SCRIPT": str(Path(__file__).resolve()), "DS": ds2, "LOGS": str(ctx["logs"]), "RESULT": str(result)}
    done = subprocess.run(["unshare", "-rm", "bash", "-c", DISK_INNER], env=env, capture_output=True, text=True,
                          timeout=1800)
    shutil.rmtree(mnt, ignore_errors=True)
    if done.returncode or not result.exists():
        return {"fault": "lake disk full mid-publish", "run": f"could not run: {done.stderr[-500:]}",
                "published": "-", "retry": [], "once": "-"}
    return {**json.loads(result.read_text()), "tmpfs": done.stderr.strip().splitlines()[-1]}


def disk_inner(mnt: Path, ds: str, logs: Path) -> None:
    """Inside the namespace: the lake is the small tmpfs at mnt. Ingest the next date, which fills it."""
    # local Spark: the cluster's executors live outside this mount namespace and would not see the tmpfs
    env = {**os.environ, "ECHELON_LAKE": str(mnt), "SPARK_MASTER": "local[1]"}
    before = checksums(mnt)
    code, message, seconds = Step(env, "ingest", ds, logs).wait(900)
    after = checksums(mnt)
    subprocess.run(["mount", "-o", "remount,size=2g", str(mnt)], check=True)
    retry = [Step(env, "ingest", ds, logs).wait(900)]
    print(json.dumps({"fault": f"the lake's disk full mid-publish (`demand ingest` of {ds}; tmpfs a few KiB "
                               "above the lake's size), then grown to 2 GiB",
                      "run": f"exit {code} after {seconds:.0f}s: {message}",
                      "published": changed(before, after) or "unchanged", "retry": retry,
                      "once": "; ".join(f"{t}: {exactly_once(mnt, t, ds)}" for t in ("raw/demand/sales",)),
                      "staging_left": sorted(p.name for p in (mnt / "_staging").iterdir()) if (mnt / "_staging").exists() else []}))


def fault_corrupt(ctx) -> dict:
    ds, lake = ctx["ds"], ctx["lake"]
    part = lake / "features" / "demand" / "sales_features" / f"ds={ds}"
    victim = sorted(part.glob("*.parquet"), key=lambda p: p.stat().st_size)[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    before = checksums(lake)
    code, message, seconds = run_step(ctx["env"], "score", ds, ctx["logs"])
    after = checksums(lake)
    retry = [run_step(ctx["env"], s, ds, ctx["logs"]) for s in ("features", "score")]
    return {"fault": f"corrupt partition: one byte flipped in {victim.relative_to(lake)}; then `demand score`",
            "run": f"exit {code} after {seconds:.0f}s: {message}",
            "published": changed(before, after) or "unchanged", "retry": retry,
            "once": f"features {exactly_once(lake, 'features/demand/sales_features', ds)}; "
                    f"forecasts {exactly_once(lake, 'published/demand/forecasts', ds)}"}


FAULTS = {"postgres": fault_postgres, "mlflow": fault_mlflow, "spark_worker": fault_spark_worker,
          "disk_full": fault_disk_full, "corrupt": fault_corrupt}


# -- the report -------------------------------------------------------------------------------------------
def fmt_retry(retry) -> str:
    if isinstance(retry, str):
        return retry
    return "; ".join(f"exit {c} ({s:.0f}s)" + (f": {m[:80]}" if c else "") for c, m, s in retry) or "-"


# how each fault's row of the table begins (its "fault" text), so that a run of some faults (--faults) replaces
# only their rows and keeps the others' from the run before
LABELS = {"postgres": "Postgres", "mlflow": "MLflow server", "spark_worker": "Spark worker",
          "disk_full": "the lake's disk full", "corrupt": "corrupt partition"}


def kept_rows(text: str, rerun: set[str]) -> tuple[list[str], list[str]]:
    """(the meta paragraphs, the table rows of faults not in `rerun`) of the section already in `text`."""
    if SECTION not in text:
        return [], []
    body = text[text.index(SECTION) + len(SECTION):]
    body = body[:body.find("\n## ")] if "\n## " in body else body
    paragraphs = [b.strip() for b in body.split("\n\n") if b.strip() and not b.strip().startswith("|")]
    rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| fault |")]
    labels = tuple(f"| {LABELS[name]}" for name in rerun)
    return paragraphs, [row for row in rows if not row.startswith(labels)]


def write(results: list[dict], meta: str, rerun: set[str] | None = None) -> None:
    """The section of reliability.md; with `rerun` (a subset of the faults), the other faults' rows and the
    earlier run's description are kept, this run's description added after them."""
    text = OUT.read_text() if OUT.exists() else "# Reliability\n"
    paragraphs, kept = kept_rows(text, rerun) if rerun else ([], [])
    rows = ["| fault | what the run did | published partitions after the fault | retry after recovery | "
            "partitions of the retry |", "|---|---|---|---|---|"]
    new = []
    for r in results:
        published = r["published"] if isinstance(r["published"], str) else "CHANGED: " + "; ".join(r["published"])
        extra = f" ({r['tmpfs']}; staging left: {r.get('staging_left')})" if "tmpfs" in r else ""
        new.append(f"| {r['fault']}{extra} | {r['run'].replace('|', '/')} | {published} | {fmt_retry(r['retry'])} "
                   f"| {r['once']} |")
    order = list(LABELS.values())
    rank = lambda row: next((i for i, label in enumerate(order) if row.startswith(f"| {label}")), len(order))  # noqa: E731
    rows += sorted(kept + new, key=rank)
    section = f"{SECTION}\n\n" + "\n\n".join([*paragraphs, meta]) + "\n\n" + "\n".join(rows) + "\n"
    stale = "\n## Stack faults: not run here"   # what reliability.py wrote before this script existed
    if stale in text:
        rest = text[text.index(stale) + len(stale):]
        text = text[:text.index(stale)] + (rest[rest.index("\n## "):] if "\n## " in rest else "\n")
    if SECTION in text:
        start = text.index(SECTION)
        rest = text[start + len(SECTION):]
        end = rest.find("\n## ")
        text = text[:start] + section + (rest[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    OUT.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {sorted(FAULTS)}")
    parser.add_argument("--disk-inner", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ds", help=argparse.SUPPRESS)
    parser.add_argument("--logs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.disk_inner:
        disk_inner(args.disk_inner, args.ds, args.logs)
        return 0
    unknown = set(args.faults.split(",")) - set(FAULTS)
    if unknown:
        print(f"chaos: unknown fault(s) {sorted(unknown)}; known: {sorted(FAULTS)}", file=sys.stderr)
        return 2
    from echelon.stack import Stack

    load = os.getloadavg()
    began = time.time()
    work = Path(tempfile.mkdtemp(prefix="echelon-chaos-"))
    var, logs = work / "var", work / "logs"
    logs.mkdir(parents=True)
    ds = "2026-11-20"
    ds_next = (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()
    postgres = Postgres(work)
    postgres.start()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "ECHELON_MLFLOW", "AIRFLOW", "SPARK_")) and k not in ("ECHELON_LAKE", "ECHELON_REPORTS")}
    base.update({"ECHELON_VAR": str(var), "ECHELON_DEMAND_CANDIDATES": "seasonal_naive",
                 "ECHELON_DEMAND_RETRAIN": "daily",   # train trains every night (else a Friday is a no-op)
                 "ECHELON_SPARK_SHUFFLE_PARTITIONS": "2", "ECHELON_SPARK_DRIVER_MEMORY": "768m"})
    stack = Stack(var, postgres_url=postgres.url, roles=(), base_env=base, spark_worker_cores=1,
                  spark_worker_memory="1g")
    results = []
    try:
        log(f"world ({var})")
        subprocess.run([str(BIN / "echelon"), "world", "--items", "6", "--locations", "2", "--start", "2025-09-01",
                        "--end", ds_next, "--seed", "7", "--master", "local[1]"], env={**base}, check=True,
                       stdout=open(logs / "world.log", "w"), stderr=subprocess.STDOUT)
        stack.start()
        log("stack up")
        env = stack.env
        night(env, ds, logs)
        ctx = {"ds": ds, "ds_next": ds_next, "lake": var / "lake", "env": env, "logs": logs, "stack": stack,
               "postgres": postgres}
        for name in args.faults.split(","):
            log(f"fault {name}")
            try:
                results.append(FAULTS[name](ctx))
            except Exception as error:  # noqa: BLE001  (a fault that could not be staged is reported as such)
                results.append({"fault": LABELS[name], "run": f"could not be staged: {type(error).__name__}: {error}",
                                "published": "-", "retry": [], "once": "-"})
            log(json.dumps(results[-1], default=str)[:600])
    finally:
        stack.stop()
        postgres.stop()
        subset = "" if set(args.faults.split(",")) == set(FAULTS) else f" --faults {args.faults}"
        meta = (f"Generated by `benchmarks/chaos.py{subset}` (`make chaos`) on {dt.date.today()}: {len(results)} fault(s) in "
                f"{(time.time() - began) / 60:.0f} min; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on "
                "2 shared cores at the start (high: other sessions' work). Stack: echelon.stack without Airflow's "
                "roles (Spark master + 1 worker with spark.authenticate, MLflow with basic auth on a private "
                "Postgres); world 6 items x 2 locations; demand steps as the DAG's tasks run them. 'Published' "
                "compares the checksums of every manifest before and after the fault."
                + (f" This run's row(s): {args.faults}; the other rows are from the run before." if subset else ""))
        chosen = set(args.faults.split(","))
        if results:
            write(results, meta, rerun=chosen if chosen != set(FAULTS) else None)
        shutil.rmtree(work, ignore_errors=True) if os.environ.get("CHAOS_KEEP") is None else log(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
