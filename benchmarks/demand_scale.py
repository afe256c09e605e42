"""Scale of the nightly demand pipeline: per-step wall time and peak memory at growing world sizes.

For each size (series = items x locations, three years of days) in a fresh var folder:
    world                 `echelon world` (the source extract)
    ingest                raw sales + plan for ds (the whole three years kept: see below), gated
    features_full_prev    the first full feature build, for ds - 1 (the base of the incremental night)
    features_incremental  the nightly feature step for ds, as the DAG runs it (models/demand/steps.py)
    features_full         the same ds rebuilt from the whole history, for comparison (and the check
                          that both give the same content checksum)
    train, evaluate_and_promote, score   models/demand/steps.py, as the DAG runs them
Each step runs in its own subprocess; its peak memory is the largest resident set of its whole process
tree (Python + the Spark JVM, sampled with psutil every 0.2 s). The table gives, per step, the slope
of log(seconds) against log(series) between consecutive sizes (1 = linear).

Ingest keeps the whole history (history_days = the world's days). Its window start moves on a 91-day
grid (jobs/demand/ingest.py), so the raw partition of ds extends that of ds - 1 by one day: the timed
ingest of ds carries yesterday's monthly raw files and writes only the new day (the untimed ingest of
ds - 1 before it is the full write), and the feature step of ds is incremental (it carries yesterday's
rows, anchors and fingerprint and reads only the raw months of its lookback: see jobs/demand/features.py).

`--history-days` adds, at `--history-size` (default the smallest size), the feature steps over shorter raw
histories ending at the same ds, on the same world (its source tables hard-linked, not regenerated): the
full build grows with the history, the incremental night should not.

Candidates and their settings come from the environment, as in the DAG: ECHELON_DEMAND_CANDIDATES,
ECHELON_DEMAND_MODEL_PARAMS.
Training reads at most ECHELON_DEMAND_TRAIN_SERIES series (default 4,000, models/demand/train.py): above
that, the train and evaluate steps see a fixed sample and stop growing with the world.

    python benchmarks/demand_scale.py [--sizes 360 3600 36000] [--steps world ingest ...]
        [--history-days 500 800] [--master spark://host:7077 | --master loopback]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DS = dt.date(2026, 11, 20)
PREV = DS - dt.timedelta(days=1)
YEARS_DAYS = 3 * 365
STEPS = ["world", "ingest", "features_full_prev", "features_incremental", "features_full", "train",
         "evaluate_and_promote", "score"]
log = logging.getLogger("demand_scale")


# ----------------------------------------------------------------------------------------------
# The child side: one step in this process
# ----------------------------------------------------------------------------------------------

def child(step: str, ds: str, history_days: int) -> dict:
    from echelon.expectations.gate import gate
    from echelon.jobs.demand import features, ingest
    from echelon.models.demand import steps

    if step == "ingest":
        return ingest.run(ds, history_days=history_days, log=log.info,
                          gate={"sales": gate("demand_raw_sales", ingest.RAW_SALES, ds),
                                "plan": gate("demand_raw_plan", ingest.RAW_PLAN, ds,
                                             {"day_after_ds": (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()})})
    if step == "features_full":
        return features.run(ds, gate=gate("demand_features", features.FEATURES, ds), incremental=False)
    if step in ("features_full_prev", "features_incremental"):
        return steps.features(ds)
    return steps.STEPS[step](ds)


# ----------------------------------------------------------------------------------------------
# The parent side
# ----------------------------------------------------------------------------------------------

def _measure(cmd: list[str], env: dict, logfile: Path) -> tuple[float, float]:
    """Run cmd; wall seconds and peak resident memory (GiB) of its process tree."""
    import psutil

    started = time.time()
    with logfile.open("a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)
    seconds = time.time() - started
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} failed (exit {proc.returncode}); see {logfile}")
    return seconds, peak / 2**30


def _world_args(series: int, locations: int) -> list[str]:
    items = max(1, round(series / locations))
    start = DS - dt.timedelta(days=YEARS_DAYS - 1)
    return ["world", "--items", str(items), "--locations", str(locations), "--start", start.isoformat(),
            "--end", DS.isoformat(), "--seed", "42"]


def _manifest(var: Path, ds: dt.date, table: str = "features/demand/sales_features") -> dict:
    return json.loads((var / "lake" / table / f"ds={ds}" / "_manifest.json").read_text())


def run_size(series: int, locations: int, steps: list[str], workdir: Path, env: dict,
             history_days: int = YEARS_DAYS, tag: str = "", on_step=lambda row: None,
             clean: bool = True) -> list[dict]:
    var = workdir / f"var_{series}{tag}"
    world = workdir / f"var_{series}" / "lake"
    if tag and "world" not in steps and world.exists() and not var.exists():   # the same world, linked
        (var / "lake").mkdir(parents=True)
        for layer in ("source", "reference"):
            subprocess.run(["cp", "-al", str(world / layer), str(var / "lake" / layer)], check=True)
    env = {**env, "ECHELON_VAR": str(var)}
    logfile = workdir / f"log_{series}{tag}.txt"
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    plan = {"world": [str(BIN / "echelon"), *_world_args(series, locations)],
            "ingest": [*me, "ingest", "--ds", DS.isoformat(), "--history-days-child", str(history_days)],
            "features_full_prev": [*me, "features_full_prev", "--ds", PREV.isoformat()],
            "features_incremental": [*me, "features_incremental", "--ds", DS.isoformat()],
            "features_full": [*me, "features_full", "--ds", DS.isoformat()],
            **{s: [*me, s, "--ds", DS.isoformat()] for s in ("train", "evaluate_and_promote", "score")}}
    rows = []
    for step in steps:
        if step == "ingest":   # yesterday's raw partition, one day shorter: the base night (untimed)
            _measure([*me, "ingest", "--ds", PREV.isoformat(), "--history-days-child", str(history_days - 1)],
                     env, logfile)
        log.info("series=%s%s: %s ...", f"{series:,}", tag, step)
        seconds, peak = _measure(plan[step], env, logfile)
        row = {"series": series, "history_days": history_days, "step": step, "seconds": round(seconds, 1),
               "peak_gib": round(peak, 2), "load_1m": round(os.getloadavg()[0], 1)}
        if step.startswith("features") or step == "ingest":
            manifest = (_manifest(var, DS, "raw/demand/sales") if step == "ingest"
                        else _manifest(var, PREV if step == "features_full_prev" else DS))
            row.update(build=manifest.get("build", "full"), rows=manifest["rows"], checksum=manifest["checksum"][:12])
        rows.append(row)
        on_step(row)
        log.info("series=%s%s: %s in %.1f s, peak %.2f GiB (load %.1f)", f"{series:,}", tag, step, seconds,
                 peak, row["load_1m"])
    if clean:
        shutil.rmtree(var, ignore_errors=True)
    return rows


def slopes(frame, value: str = "seconds"):
    """Per step: slope of log(value) on log(series) between consecutive sizes (1 = linear)."""
    out = {}
    for step, group in frame.groupby("step", sort=False):
        group = group.dropna(subset=[value]).sort_values("series")
        pairs = list(zip(group.itertuples(), list(group.itertuples())[1:]))
        out[step] = ", ".join(f"{math.log(getattr(b, value) / getattr(a, value)) / math.log(b.series / a.series):.2f} "
                              f"({a.series:,}->{b.series:,})" for a, b in pairs if getattr(a, value) > 0) or "-"
    return out


def write(out: Path, rows: list[dict], history_rows: list[dict], runs: list[dict]) -> Path:
    import pandas as pd

    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="step", columns="series", values=["seconds", "peak_gib"], sort=False)
    table.columns = [f"{'s' if v == 'seconds' else 'GiB'} @ {s:,}" for v, s in table.columns]
    table["slope (log s / log series)"] = pd.Series(slopes(frame))
    table["slope (log GiB / log series)"] = pd.Series(slopes(frame, "peak_gib"))
    lines = ["# Demand pipeline at scale", "",
             *[f"- Measured {m['when']} with `python benchmarks/demand_scale.py {m['argv']}` on this machine "
               f"({os.cpu_count()} cores, shared with other work; load average before: {m['load_before']}, "
               f"after: {m.get('load_after', '?')}). Spark master: {m['master']}. Candidates: `{m['candidates']}`."
               for m in runs],
             "", "Each step in its own process; peak memory = the resident set of Python + the Spark JVM. "
             "`features_full_prev` is the first (full) build for ds - 1, `features_incremental` the nightly step "
             "for ds on top of it, `features_full` the same ds rebuilt from the whole history; equal `checksum`s "
             "mean the same content bit for bit. The incremental night computes windows over 400 days + the new "
             "day per series, carries yesterday's rows as hard links (with their hash sums), its anchors and the "
             "raw fingerprint, reads only the raw files of the months its 400-day lookback needs, and writes, gates "
             "and hashes only the new rows. `ingest` is the night of ds after a full ingest of ds - 1: it reads the "
             "cumulative source once (the per-date fingerprint), carries yesterday's monthly raw files and writes "
             "only the new day (`build` incremental).", "",
             table.reset_index().to_markdown(index=False, floatfmt=".1f"), "",
             "Every step, one row per size:", "", frame.to_markdown(index=False), ""]
    if history_rows:
        lines += ["## Feature cost against history length (same world and ds, shorter raw histories)", "",
                  pd.DataFrame(history_rows).to_markdown(index=False), ""]
    path = out / "demand_scale.md"
    path.write_text("\n".join(lines))
    return path


def merge(out: Path, others: list[Path]) -> int:
    """Add other runs' rows, history rows and run lines to the results in `out`, and rewrite them."""
    saved = out / "demand_scale.json"
    results = json.loads(saved.read_text())
    for other in others:
        if not other.exists():
            print(f"--merge: {other} does not exist", file=sys.stderr)
            return 2
        extra = json.loads(other.read_text())
        for key in ("rows", "history_rows", "runs"):
            results[key] = results.get(key, []) + extra.get(key, [])
    saved.write_text(json.dumps(results, indent=1))
    print(write(out, results["rows"], results["history_rows"], results["runs"]).read_text())
    return 0


def loopback_cluster(workdir: Path) -> tuple[str, list[subprocess.Popen]]:
    """A standalone master and one 2-core worker on 127.0.0.1 (as tests/unit/test_spark_cluster.py
    starts them); returns once the master lists the worker as alive."""
    import socket
    import urllib.request

    import pyspark

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port, ui = free_port(), free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(workdir / "spark-logs")}
    url = f"spark://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([str(spark_class), "org.apache.spark.deploy.worker.Worker", url, "--host",
                                   "127.0.0.1", "--cores", "2", "--memory", "4g", "--webui-port", "0"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as response:
                if any(w.get("state") == "ALIVE" for w in json.loads(response.read()).get("workers", [])):
                    return url, procs[::-1]
        except OSError:
            pass
        time.sleep(1)
    for proc in procs:
        proc.terminate()
    raise RuntimeError(f"the loopback Spark master {url} listed no live worker within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[360, 3600, 36000], help="series per world")
    parser.add_argument("--locations", type=int, default=3)
    parser.add_argument("--steps", nargs="+", default=STEPS, choices=STEPS)
    parser.add_argument("--history-days", type=int, nargs="*", default=[],
                        help="shorter raw histories for the feature steps at --history-size")
    parser.add_argument("--history-size", type=int, default=None,
                        help="series of the history-length comparison (default: the smallest size)")
    parser.add_argument("--history-steps", nargs="+", choices=STEPS,
                        default=["ingest", "features_full_prev", "features_incremental", "features_full"],
                        help="steps of the history-length comparison (with world unless --workdir holds it)")
    parser.add_argument("--master", default=None,
                        help="Spark master for every step (spark://host:port), or `loopback` to start one here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of sizes this run does not redo from the last results (demand_scale.json)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep each size's lake here (default: a temporary folder, removed); lets a rerun "
                             "with --steps skip the world")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--merge", type=Path, nargs="+", default=[],
                        help="only rewrite the results (--out) with the rows of these other runs' demand_scale.json "
                             "added (e.g. a history comparison run with its own --out)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ds", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--history-days-child", type=int, default=YEARS_DAYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.child:
        result = child(args.child, args.ds, args.history_days_child)
        print(json.dumps(result, default=str)[:2000])
        return 0
    if args.merge:
        return merge(args.out, args.merge)
    if any(s < args.locations for s in args.sizes):
        print(f"--sizes: every size must be at least --locations ({args.locations}), got {args.sizes}", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items()
           if k not in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI", "ECHELON_MLFLOW_ARTIFACTS")}
    env.setdefault("ECHELON_DEMAND_RETRAIN", "daily")
    # one code version for the whole run: a commit meanwhile must not turn the incremental night into a full one
    from echelon.lake import code_version

    env.setdefault("ECHELON_CODE_VERSION", code_version())
    cluster = []
    meta = {"when": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", "argv": " ".join(sys.argv[1:]),
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "candidates": env.get("ECHELON_DEMAND_CANDIDATES", "(default)"),
            "master": args.master or env.get("SPARK_MASTER", "local[*]")}
    with tempfile.TemporaryDirectory(prefix="bench-demand-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.master == "loopback":
            url, cluster = loopback_cluster(workdir)
            meta["master"] = f"loopback standalone master + one 2-core worker ({url})"
            env["SPARK_MASTER"] = url
        elif args.master:
            env["SPARK_MASTER"] = args.master
        try:
            rows, history_rows, runs = [], [], []
            saved = args.out / "demand_scale.json"
            if args.keep and saved.exists():   # earlier runs' sizes that this run does not redo
                kept = json.loads(saved.read_text())
                rows = [r for r in kept["rows"] if r["series"] not in args.sizes]
                history_rows = [] if args.history_days else kept["history_rows"]
                runs = kept.get("runs", [])
            runs.append(meta)
            history_size = args.history_size or min(args.sizes)
            def save(row=None):
                if row is not None:
                    rows.append(row)
                meta["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
                saved.write_text(json.dumps({"rows": rows, "history_rows": history_rows, "runs": runs}, indent=1))
                return write(args.out, rows, history_rows, runs)

            for series in sorted(args.sizes):
                run_size(series, args.locations, args.steps, workdir, env, on_step=save, clean=not args.workdir)
                if series == history_size:   # the history-length comparison, on the same world
                    for days in args.history_days:
                        world = (workdir / f"var_{series}" / "lake").exists()
                        steps = [s for s in args.history_steps if s != "world" or not world]
                        history_rows += [r for r in run_size(series, args.locations,
                                                             steps if world else ["world", *steps], workdir, env,
                                                             history_days=days, tag=f"_h{days}", clean=not args.workdir)
                                         if r["step"].startswith("features") or r["step"] == "ingest"]
                    if history_rows:
                        history_rows += [r for r in rows if r["step"].startswith("features") or r["step"] == "ingest"]
                path = save()   # results so far: a run stopped at a larger size keeps what it measured
        finally:
            for proc in cluster:
                proc.terminate()
                proc.wait(timeout=30)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
