"""Speed of the demand pipeline on this machine (2 cores): a script with committed results, not a test.

1. Feature job throughput: the synthetic world's sales at ~1M and ~10M rows are materialised as parquet,
   then `build_features` runs on them and its output is written as parquet (rows/s of input history).
2. One full `demand_nightly` run through Airflow (`airflow dags test`) on the default world of `make run`,
   timed end to end (the training night: no champion yet), with each candidate's training time (from the
   run's backtest table); then the same date again (the scoring night: a champion present, no retraining
   due), and the scoring throughput of the champion through Spark (series/s).

    python benchmarks/demand_speed.py --out benchmarks/results [--sizes 1000000 10000000] [--skip-dag]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DS = "2026-11-20"


def feature_throughput(sizes: list[int], workdir: Path) -> list[dict]:
    from echelon.jobs.demand import world
    from echelon.demand_features import build_features
    from echelon.spark import get_spark

    spark = get_spark("bench-demand-features", master="local[2]")
    base = world.WorldConfig(locations=10, start=dt.date(2024, 1, 1), end=dt.date(2026, 11, 20), seed=42)
    per_item = base.locations * base.history_days * (1.0 - base.new_item_share / 2)
    rows = []
    for size in sizes:
        cfg = replace(base, items=max(1, round(size / per_item)))
        source = workdir / f"sales_{size}"
        world.sales_extract(world.daily_frame(spark, cfg)).write.mode("overwrite").parquet(str(source))
        history = spark.read.parquet(str(source))
        n = history.count()
        started = time.time()
        out = workdir / f"features_{size}"
        build_features(spark, history, horizon=28).write.mode("overwrite").parquet(str(out))
        seconds = time.time() - started
        out_rows = spark.read.parquet(str(out)).count()
        rows.append({"history_rows": n, "items": cfg.items, "series": cfg.items * cfg.locations,
                     "feature_rows": out_rows, "seconds": round(seconds, 1), "rows_per_s": round(n / seconds),
                     "load_after": round(os.getloadavg()[0], 1)})
        print(f"features: {n:,} rows in {seconds:.1f} s ({n / seconds:,.0f} rows/s)", flush=True)
        shutil.rmtree(source, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    spark.stop()
    return rows


def nightly_run(workdir: Path, items: int, locations: int) -> dict:
    env = {**os.environ, "ECHELON_VAR": str(workdir / "var"), "ECHELON_DEMAND_RETRAIN": "sunday"}
    for key in ("ECHELON_LAKE", "ECHELON_REPORTS", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        env.pop(key, None)

    def echelon(*args):
        started = time.time()
        subprocess.run([str(BIN / "echelon"), *args], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.time() - started

    world_s = echelon("world", "--items", str(items), "--locations", str(locations), "--end", DS, "--seed", "42")
    echelon("airflow", "db", "migrate")
    from echelon.schedule import nightly_run_date

    load = lambda: round(os.getloadavg()[0], 1)   # noqa: E731
    load_before = load()
    # the training night: no champion yet, so every candidate trains (ECHELON_DEMAND_RETRAIN weekly)
    dag_s = echelon("airflow", "dags", "test", "demand_nightly", nightly_run_date(DS).isoformat())
    load_train = load()
    var = workdir / "var"
    backtest = (var / "reports" / "demand" / f"ds={DS}" / "backtest.csv").read_text()
    forecasts = json.loads((var / "lake" / "published" / "demand" / "forecasts" / f"ds={DS}" / "_manifest.json").read_text())
    # the scoring night: the same date again, a champion present and no retraining due (ds is a Friday)
    scoring_s = echelon("airflow", "dags", "test", "demand_nightly", nightly_run_date(DS).isoformat())
    load_scoring = load()
    score_s = echelon("demand", "score", "--ds", DS)  # again, alone, for its throughput
    series = forecasts["rows"] // 28
    return {"items": items, "locations": locations, "series": series, "world_seconds": round(world_s, 1),
            "dag_seconds": round(dag_s, 1), "scoring_dag_seconds": round(scoring_s, 1),
            "score_seconds": round(score_s, 1), "score_series_per_s": round(series / score_s, 1),
            "load_before": load_before, "load_after_training": load_train, "load_after_scoring": load_scoring,
            "load_after": load(), "backtest_csv": backtest}


def write(out: Path, features: list[dict], nightly: dict | None, name: str = "demand_speed.md") -> Path:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Demand pipeline speed", "",
             f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with `python benchmarks/demand_speed.py "
             f"{' '.join(sys.argv[1:])}` on {os.cpu_count()} cores "
             f"(Spark `local[2]`). The machine is shared: the 1-minute load average after each step is shown.", ""]
    if features:
        lines += ["## Feature job (Spark SQL, `jobs/demand/features.py`)", "",
                  pd.DataFrame(features).to_markdown(index=False), ""]
    if nightly:
        backtest = pd.read_csv(__import__("io").StringIO(nightly.pop("backtest_csv")))
        lines += ["## One full `demand_nightly` run (default world of `make run`)", "",
                  pd.DataFrame([nightly]).to_markdown(index=False), "",
                  "Training time per candidate in that run (fit on history up to ds-28; wQL on the last 28 days):", "",
                  backtest.to_markdown(index=False, floatfmt=".4f"), ""]
    path = out / name
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--locations", type=int, default=3)
    parser.add_argument("--skip-dag", action="store_true")
    parser.add_argument("--name", default="demand_speed.md", help="results file name under --out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demand-") as tmp:
        features = feature_throughput(args.sizes, Path(tmp)) if args.sizes else []
        nightly = None if args.skip_dag else nightly_run(Path(tmp), args.items, args.locations)
    print(write(args.out, features, nightly, args.name).read_text())


if __name__ == "__main__":
    main()
