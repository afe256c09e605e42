"""Nightly scoring of a LightGBM model version: the whole feature partition vs the rows it needs.

Run against a lake that has a features partition and a registered LightGBM version (e.g. after
`echelon world`, `echelon demand ingest|features`, `echelon demand train_candidate --model lightgbm`):

    ECHELON_VAR=... python benchmarks/demand_score_trim.py --ds 2026-11-20 --out benchmarks/results

Each variant runs twice, alternating (the first pass pays Spark's and the Python workers' warm-up), and
the machine load is recorded before and after."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from echelon import lake, tracking
from echelon.models.demand.score import FEATURES, MODEL_NAME, forecast_with_spark, recent_rows
from echelon.spark import get_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--world", default="", help="how the lake was made, for the results file")
    args = parser.parse_args()
    from mlflow import MlflowClient

    tracking.configure()
    version = next(v for v in MlflowClient().search_model_versions(f"name = '{MODEL_NAME}'")
                   if v.tags.get("model_type") == "lightgbm")
    uri = f"models:/{MODEL_NAME}/{version.version}"
    features = lake.read_spark(get_spark("bench-score-trim"), FEATURES, args.ds).drop("ds")
    series = features.select("item_id", "location_id").distinct().count()
    load_before = os.getloadavg()
    rows = []
    for attempt in (1, 2):
        for label, days in (("full history", None), ("trimmed (history_days=1)", 1)):
            frame = recent_rows(features, days)
            shipped = frame.count()
            started = time.time()
            forecasts = forecast_with_spark(frame, uri).count()
            rows.append({"variant": label, "pass": attempt, "rows_to_python": shipped,
                         "forecast_rows": forecasts, "seconds": round(time.time() - started, 1)})
            print(rows[-1], flush=True)
    load_after = os.getloadavg()
    lines = [f"# Scoring: whole feature partition vs the recent window ({series} series, ds={args.ds})", "",
             f"LightGBM version {version.version}; 2 cores; load average before {load_before[0]:.1f}, "
             f"after {load_after[0]:.1f} (shared machine). {args.world}", "",
             "| variant | pass | rows to Python | forecast rows | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['pass']} | {r['rows_to_python']:,} | {r['forecast_rows']:,} | {r['seconds']} |"
              for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demand_score_trim.md").write_text("\n".join(lines) + "\n")
    (args.out / "demand_score_trim.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
