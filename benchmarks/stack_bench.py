"""Speed on the production-shaped stack (echelon.stack: Airflow and MLflow on Postgres, a Spark standalone
master with one worker, all on loopback), side by side in one run:

1. The Spark feature job (`python -m echelon.jobs.demand.features`) on `local[2]` and on the standalone
   master (one worker with 2 cores; the job may take both), first, while the cluster is idle, on a larger
   world of its own lake (or, with --feature-items 0, the backfill's); each job is a fresh process, so the
   wall time includes starting its JVM (and, on the cluster, its executor).
2. Then a 7-date backfill of `demand_nightly` with 1 run at a time, then another 7 dates with 2 runs at a time
   (two windows of the same world, so neither pass reprocesses the other's runs). Wall time is the span
   from the first run's start to the last run's end in Airflow's own records.

    python benchmarks/stack_bench.py --out benchmarks/results [--items 10 --locations 2 --days 7 --feature-items 20]

Needs what `make test-stack` needs: a Postgres that the user may create databases on, and Java."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG = "demand_nightly"


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_env(var: Path, candidates: str) -> dict:
    """The environment of the small world: few candidates, small LightGBM, retraining every date."""
    env = {**os.environ, "ECHELON_VAR": str(var), "ECHELON_DEMAND_CANDIDATES": candidates,
           "ECHELON_DEMAND_RETRAIN": "daily", "ECHELON_TASK_RETRIES": "0", "ECHELON_SPARK_SHUFFLE_PARTITIONS": "2",
           "ECHELON_DEMAND_MODEL_PARAMS": json.dumps({"lightgbm": {"num_boost_round": 40, "max_origins_per_series": 60}}),
           "OPENBLAS_NUM_THREADS": "1"}
    for key in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "AIRFLOW_HOME",
                "SPARK_MASTER"):
        env.pop(key, None)
    return env


def echelon(env: dict, *args: str, log: Path) -> float:
    started = time.time()
    with open(log, "a") as out:
        done = subprocess.run([str(BIN / "echelon"), *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:   # the stack's folder (and this log) goes with it: show why here
        raise RuntimeError(f"echelon {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
    return time.time() - started


def backfill(stack, first: dt.date, days: int, parallel: int, log: Path) -> dict:
    from echelon.schedule import nightly_run_date
    from echelon.stack import parse_time

    dates = [(first + dt.timedelta(days=k)).isoformat() for k in range(days)]
    wait_no_active_backfill(stack)
    load_before = load()
    started = time.time()
    echelon(stack.env, "backfill", "--dag", DAG, "--from", dates[0], "--to", dates[-1],
            "--max-active-runs", str(parallel), log=log)
    runs = stack.wait_runs(DAG, {nightly_run_date(d).isoformat() for d in dates}, "backfill",
                           timeout=900 * days, poll=2.0)
    observed = time.time() - started
    states = sorted({r["state"] for r in runs.values()})
    begin = min(parse_time(r["start_date"]) for r in runs.values())
    end = max(parse_time(r["end_date"]) for r in runs.values())
    per_run = sorted((parse_time(r["end_date"]) - parse_time(r["start_date"])).total_seconds() for r in runs.values())
    print(f"backfill x{parallel}: {days} runs {states} in {(end - begin).total_seconds():.0f} s", flush=True)
    return {"parallel runs": parallel, "data dates": f"{dates[0]}..{dates[-1]}", "runs": len(runs),
            "states": "/".join(states), "wall s (first start to last end)": round((end - begin).total_seconds()),
            "observed s (create to done)": round(observed), "median run s": round(per_run[len(per_run) // 2]),
            "load before": load_before, "load after": load()}


def wait_no_active_backfill(stack, timeout: float = 600) -> None:
    """Airflow refuses a new backfill of a DAG while another is active, and a backfill whose runs have all
    finished stays active until a later scheduler loop marks it completed."""
    deadline = time.time() + timeout
    while any(b["completed_at"] is None for b in stack.api("GET", f"backfills?dag_id={DAG}")["backfills"]):
        if time.time() > deadline:
            raise RuntimeError(f"a backfill of {DAG} was still active after {timeout:.0f} s")
        time.sleep(2)


def feature_job(env: dict, master: str, ds: str, log: Path) -> dict:
    load_before = load()
    started = time.time()
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-m", "echelon.jobs.demand.features", "--ds", ds], stdout=out,
                       stderr=subprocess.STDOUT, env={**env, "SPARK_MASTER": master}, check=True)
    seconds = time.time() - started
    manifest = json.loads((Path(env["ECHELON_VAR"]) / "lake" / "features" / "demand" / "sales_features" /
                           f"ds={ds}" / "_manifest.json").read_text())
    print(f"features on {master}: {manifest['rows']} rows in {seconds:.1f} s", flush=True)
    return {"master": master, "feature rows": manifest["rows"], "wall s": round(seconds, 1),
            "load before": load_before, "load after": load()}


def write(out: Path, args, backfills: list[dict], features: list[dict], history_rows: int, started: str) -> Path:
    """The results so far (rewritten after each measurement, so an interrupted run keeps what it measured)."""
    import pandas as pd

    world = (f"{args.feature_items} items x {args.feature_locations} locations, a world of its own" if args.feature_items
             else f"the backfill's world ({args.items} items x {args.locations} locations)")
    lines = ["# Production-shaped stack speed", "",
             f"Measured from {started} with `python benchmarks/stack_bench.py --items {args.items} --locations "
             f"{args.locations} --days {args.days} --candidates {args.candidates} --feature-items "
             f"{args.feature_items}` on {platform.machine()} Linux with {os.cpu_count()} cores, on the stack of "
             "`echelon.stack` (Airflow 3 LocalExecutor and MLflow on Postgres, Spark standalone master + one "
             "worker with 2 cores / 3 GiB, all on 127.0.0.1). The machine is shared with other sessions' tests "
             "and benchmarks: the load averages (1, 5, 15 min) before and after each measurement are shown; with "
             "load above the core count every number is pessimistic and noisy.", "",
             f"## {args.days}-date backfill of `demand_nightly`, 1 vs 2 runs at a time", "",
             f"World: {args.items} items x {args.locations} locations ending at {args.ds}; candidates "
             f"`{args.candidates}`, retraining every date; each Spark application of a run takes 1 core of the "
             "worker (`spark.cores.max 1`, the stack's setting, so that two runs share it). The scheduler's own "
             f"run for {args.ds} (made when the DAG is unpaused) is marked done without running; the backfills "
             f"cover the {2 * args.days} dates before it: the older {args.days} with 1 run at a time, the later "
             f"{args.days} with 2. Wall time: first run start to last run end in Airflow's records.", "",
             pd.DataFrame(backfills).to_markdown(index=False) if backfills else "(not measured)", "",
             "## Spark feature job: `local[2]` vs the standalone master", "",
             f"Data: {world}, {history_rows:,} history rows. `python -m echelon.jobs.demand.features` as a fresh "
             "process, driver memory 2 GiB; on the cluster the job may take both worker cores "
             "(`spark.cores.max 2`, executor memory 2 GiB). Includes starting the JVM (and the executor), the "
             "manifest's checksum on the driver and the publish; no Great Expectations gate (the job alone, "
             "not the DAG's step).", "",
             pd.DataFrame(features).to_markdown(index=False) if features else "(not measured)", ""]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "stack_bench.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    # a SIGTERM (kill, a CI timeout) unwinds through the `finally` below, which stops the stack and drops its
    # databases; by default it would end the process and leave every service running
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--locations", type=int, default=2)
    parser.add_argument("--days", type=int, default=7, help="dates per backfill")
    parser.add_argument("--candidates", default="seasonal_naive,lightgbm")
    parser.add_argument("--feature-items", type=int, default=20,
                        help="items of the feature job's own world (0: the backfill's world)")
    parser.add_argument("--feature-locations", type=int, default=5)
    args = parser.parse_args()

    from echelon.schedule import data_partition
    from echelon.stack import Stack, latest_nightly_tick

    started = f"{dt.datetime.now():%Y-%m-%d %H:%M}"
    # the world ends at the data date of the run the scheduler makes when the DAG is unpaused
    args.ds = data_partition(latest_nightly_tick())
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        var, log = Path(tmp) / "var", Path(tmp) / "bench.log"
        var.mkdir()
        env = bench_env(var, args.candidates)
        ds = dt.date.fromisoformat(args.ds)
        world = subprocess.Popen([str(BIN / "echelon"), "world", "--items", str(args.items), "--locations",
                                  str(args.locations), "--start", "2025-03-01", "--end", args.ds, "--seed", "7",
                                  "--master", "local[2]"], env={**env, "ECHELON_SPARK_DRIVER_MEMORY": "1g"},
                                 stdout=open(log, "a"), stderr=subprocess.STDOUT)
        stack = Stack(var, base_env=env, roles=("api-server", "dag-processor", "scheduler"))
        backfills, features, history_rows = [], [], 0
        try:
            stack.start()
            if world.wait() != 0:
                raise SystemExit(f"world generation failed, see {log}:\n{log.read_text()[-3000:]}")
            stack.wait_for_dag(DAG)
            # the feature job first, with the cluster idle
            if args.feature_items:   # on a larger world of its own
                fvar = Path(tmp) / "features-var"
                fenv = bench_env(fvar, args.candidates)
                echelon(fenv, "world", "--items", str(args.feature_items), "--locations", str(args.feature_locations),
                        "--end", args.ds, "--seed", "7", "--master", "local[2]", log=log)
            else:                    # on the backfill's world
                fvar, fenv = var, bench_env(var, args.candidates)
            fenv.update({"ECHELON_SPARK_DRIVER_MEMORY": "2g", "SPARK_CONF_DIR": str(Path(tmp) / "spark-conf"),
                         "SPARK_LOCAL_IP": "127.0.0.1"})
            Path(fenv["SPARK_CONF_DIR"]).mkdir()
            (Path(fenv["SPARK_CONF_DIR"]) / "spark-defaults.conf").write_text(
                "spark.cores.max 2\nspark.executor.memory 2g\n")
            echelon({**fenv, "SPARK_MASTER": "local[2]"}, "demand", "ingest", "--ds", args.ds, log=log)
            history_rows = json.loads((fvar / "lake" / "raw" / "demand" / "sales" / f"ds={args.ds}" /
                                       "_manifest.json").read_text())["rows"]
            for master in ("local[2]", stack.spark_url):
                features.append(feature_job(fenv, master, args.ds, log))
                write(args.out, args, backfills, features, history_rows, started)

            # unpausing makes the scheduler start the latest nightly tick (ds); it is marked done at once (its
            # tasks do not run), so that no run outside the backfills competes with them
            stack.api("PATCH", f"dags/{DAG}", {"is_paused": False})
            tick, deadline = latest_nightly_tick().isoformat(), time.time() + 300
            while tick not in stack.dag_runs(DAG, "scheduled") and time.time() < deadline:
                time.sleep(1)
            stack.api("PATCH", f"dags/{DAG}/dagRuns/{stack.dag_runs(DAG, 'scheduled')[tick]['dag_run_id']}",
                      {"state": "success"})
            first = ds - dt.timedelta(days=2 * args.days)   # two windows of `days` dates before ds
            for parallel, start in ((1, first), (2, first + dt.timedelta(days=args.days))):
                backfills.append(backfill(stack, start, args.days, parallel, log))
                write(args.out, args, backfills, features, history_rows, started)
        except BaseException:
            print(f"--- {log} (tail):\n{log.read_text()[-3000:] if log.exists() else ''}", file=sys.stderr)
            raise
        finally:
            if world.poll() is None:
                world.kill()
            stack.stop()
    print(write(args.out, args, backfills, features, history_rows, started))


if __name__ == "__main__":
    main()
