"""LightGBM's nightly fit alone, before and after its bounded-memory rows: seconds and peak RSS of one process.

Fits LightGBM (the class defaults, every quantile) at ds - 28 on a published feature partition, as the
training night does, and forecasts the window after it. `--code new` reads the partition through
lgbm_rows (the pyarrow dataset, only the sampled rows); `--code old:<commit>` loads models/demand/lgbm.py
of that commit and gives it the whole partition in pandas, as the training night did before.
Each run is its own process (peak RSS = ru_maxrss); run it once per code version.

    python benchmarks/demand_scale_lgbm_fit.py --var /tmp/w/var_360 --code new
    python benchmarks/demand_scale_lgbm_fit.py --var /tmp/w/var_360 --code old:a217c86
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DS = "2026-11-20"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, required=True)
    parser.add_argument("--code", default="new", help="new, or old:<commit>")
    parser.add_argument("--ds", default=DS)
    args = parser.parse_args(argv)
    if not (args.var / "lake").is_dir():
        print(f"--var: no lake under {args.var}", file=sys.stderr)
        return 2
    os.environ["ECHELON_VAR"] = str(args.var)
    import pandas as pd

    from echelon.models.demand import train

    load, started = os.getloadavg()[0], time.time()
    origin = train.window(args.ds)
    dataset = train._dataset(args.ds)
    items = train.sampled_keys(dataset)[1]
    if args.code == "new":
        from echelon.models.demand.lgbm import LightGBMForecaster

        model = LightGBMForecaster(seed=42).fit_features(dataset, 28, cutoff=origin, items=items)
        forecasts = model.predict_features(dataset, origin=origin, items=items)
    else:
        commit = args.code.split(":", 1)[1]
        source = subprocess.run(["git", "show", f"{commit}:models/demand/lgbm.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"lgbm_{commit}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"lgbm_{commit}", path)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        features = train.read_items(dataset, items)
        model = old.LightGBMForecaster(seed=42).fit_features(features, 28, cutoff=origin)
        forecasts = model.predict_features(train.as_of(features, origin, 28), origin=origin)
    seconds = time.time() - started
    print(json.dumps({"code": args.code, "var": str(args.var), "series": int(forecasts[["item_id", "location_id"]]
                      .drop_duplicates().shape[0]), "training_rows": model.training_rows, "seconds": round(seconds, 1),
                      "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                      "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1),
                      "forecast_rows": len(forecasts), "mean_q50": round(float(pd.to_numeric(forecasts["q_0.5"]).mean()), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
