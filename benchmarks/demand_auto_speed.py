"""`echelon forecast --model auto` speed on 400 daily series (issue 15: at most 3 minutes on 2 cores), and
LightGBM's tabular-feature accuracy at other frequencies (issue 16).

1. `speed`: a world of 100 items x 4 locations (seed 7, jobs/demand/world.py with Spark, written once as
   a long CSV: its last two years). First LightGBM alone, before/after side by side in one run: the
   auto backtest (4 origins 14 days apart) plus the final fit and forecast, with the Spark feature table
   and the nightly settings (what `echelon forecast` used before) and with the tabular features and
   their settings (now). Then the command itself as a subprocess, horizon 28, the default candidates:
   wall seconds of the whole command, each candidate's backtest seconds (its table), the rest, and the
   load averages beside them.
2. `accuracy`: LightGBM (tabular features) against seasonal naive, naive and AutoETS with the same
   rolling-origin backtest (4 origins half a horizon apart, backtest.py) on (a) the store-item data summed
   to weeks (benchmarks/demand_frequencies.py's loader), (b) a synthetic hourly set (daily and weekly
   cycles, trend, noise, intermittent series) and (c) the same synthetic generator at monthly frequency.
   Mean wQL, P10-P90 coverage, MASE.

    python benchmarks/demand_auto_speed.py speed [--out benchmarks/results]
    python benchmarks/demand_auto_speed.py accuracy [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
HORIZON = 28
DATA = Path(os.environ.get("ECHELON_BENCH_DATA", "/tmp/echelon_auto_speed")) / "world_400_daily.csv"


def load() -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in os.getloadavg()) + ")"


def world_csv(path: Path = DATA) -> Path:
    """The 400-series daily file (built once; the world is deterministic by seed)."""
    if path.exists():
        return path
    from echelon.jobs.demand.world import WorldConfig, daily_frame
    from echelon.spark import get_spark

    cfg = WorldConfig(items=100, locations=4, seed=7)
    daily = daily_frame(get_spark("bench-auto"), cfg).select(
        "item_id", "location_id", "timestamp", "target", "price", "promo").toPandas()
    daily["timestamp"] = pd.to_datetime(daily["timestamp"])
    daily = daily[daily["timestamp"] > daily["timestamp"].max() - pd.Timedelta(days=730)]
    path.parent.mkdir(parents=True, exist_ok=True)
    daily.to_csv(path, index=False)
    return path


def lightgbm_alone(source: Path) -> list[dict]:
    from echelon.models.demand.backtest import backtest
    from echelon.formats import read_any
    from echelon.models.demand.lgbm import LightGBMForecaster

    history = read_any(source)
    rows = []
    for label, features in (("before: Spark features, nightly settings", "spark"),
                            ("after: tabular features and settings", "tabular")):
        model = LightGBMForecaster(seed=0, features=features)
        started, before = time.perf_counter(), load()
        result = backtest(model, history, HORIZON, n_windows=4, freq="D", step=HORIZON // 2)
        backtested = time.perf_counter()
        model.fit(history, HORIZON, "D").predict(history)
        done = time.perf_counter()
        summary = result.summary()
        rows.append({"lightgbm": label, "backtest_s": round(backtested - started, 1),
                     "final_fit_predict_s": round(done - backtested, 1), "total_s": round(done - started, 1),
                     "backtest_wql": round(summary["wql"], 4), "coverage_80": round(summary["coverage_80"], 3),
                     "load_before": before, "load_after": load()})
        print(rows[-1], flush=True)
    return rows


def speed(out: Path, alone: bool = True) -> None:
    source = world_csv()
    frame = pd.read_csv(source)
    series = frame.groupby(["item_id", "location_id"]).ngroups
    side = pd.DataFrame(lightgbm_alone(source)) if alone else None
    before = load()
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "echelon.models.demand.forecast", "--input", str(source),
                          "--output", str(source.with_name("auto_out.csv")), "--freq", "D",
                          "--horizon", str(HORIZON), "--model", "auto"],
                         capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    after = load()
    if run.returncode:
        sys.exit(run.stderr[-3000:])
    printed = run.stdout
    table = printed.split("lower is better):")[1].split("chosen model:")[0].strip()
    chosen = printed.split("chosen model: ")[1].split()[0]
    backtest = sum(float(line.split()[-1]) for line in table.splitlines()[1:])
    lines = [f"# `echelon forecast --model auto`, 400 daily series, horizon 28 ({dt.datetime.utcnow():%Y-%m-%d %H:%M} UTC)",
             "",
             f"Input: {source.name}, {len(frame):,} rows, {series} series (world 100 items x 4 locations, seed 7, "
             "last two years). Target (issue 15): at most 180 s on 2 cores.",
             "",
             f"- whole command: **{seconds:.0f} s** (chosen: {chosen})",
             f"- candidates' backtests (sum of the table's seconds): {backtest:.0f} s; the rest (reading, "
             f"checks, the final fit and forecast, writing): {seconds - backtest:.0f} s",
             f"- load average (1, 5, 15 min) before {before}, after {after}; os.cpu_count() = {os.cpu_count()}",
             "", "```", table, "```", ""]
    if side is not None:
        lines += ["LightGBM alone, before/after in the same run (same machine, load beside each):", "",
                  side.to_markdown(index=False), ""]
    text = "\n".join(lines)
    print(text)
    (out / "demand_auto_speed.md").write_text(text)


# ---------------------------------------------------------------------------------------------- accuracy
def synthetic(freq: str, periods: int, n_series: int = 40, seed: int = 3) -> pd.DataFrame:
    """Series with the frequency's cycles (hourly: day and week), a trend, multiplicative noise and a
    quarter of intermittent (Poisson, low-rate) series, at varied scales."""
    from echelon.models.demand.tabular_features import seasonal_periods

    rng = np.random.default_rng(seed)
    t = np.arange(periods)
    frames = []
    for k in range(n_series):
        scale = float(np.exp(rng.normal(3, 1)))
        shape = np.ones(periods)
        for s in seasonal_periods(freq):
            shape *= 1 + rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * (t / s + rng.random()))
        trend = 1 + rng.normal(0, 0.3) * t / periods
        mean = scale * shape * np.maximum(trend, 0.2)
        if k % 4 == 0:
            y = rng.poisson(np.maximum(mean / scale * 0.8, 0))
        else:
            y = mean * np.exp(rng.normal(0, 0.15, periods))
        frames.append(pd.DataFrame({"item_id": f"s{k}", "location_id": "all",
                                    "timestamp": pd.date_range("2021-01-04", periods=periods, freq=freq),
                                    "target": y.astype(float)}))
    return pd.concat(frames, ignore_index=True)


def accuracy(out: Path) -> None:
    from demand_frequencies import store_item_weekly

    from echelon.models.demand.backtest import backtest
    from echelon.models.demand.forecast import backtest_stride, build_forecaster

    sets = {"store_item_weekly": (store_item_weekly, "W-SUN", 13),
            "synthetic_hourly": (lambda: synthetic("h", 24 * 7 * 10), "h", 48),
            "synthetic_monthly": (lambda: synthetic("MS", 96), "MS", 12)}
    rows = []
    for name, (loader, freq, horizon) in sets.items():
        data = loader()
        for model in ("naive", "seasonal_naive", "autoets", "lightgbm"):
            started = time.perf_counter()
            result = backtest(build_forecaster(model, seed=0), data, horizon, n_windows=4, freq=freq,
                              step=backtest_stride(horizon))
            summary = result.summary()
            rows.append({"set": name, "freq": freq, "horizon": horizon,
                         "series": data.groupby(["item_id", "location_id"]).ngroups, "model": model,
                         "wql": summary["wql"], "coverage_80": summary.get("coverage_80"),
                         "mase": summary.get("mase"), "seconds": round(time.perf_counter() - started, 1),
                         "load_1min": round(os.getloadavg()[0], 1)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "demand_lgbm_frequencies.csv", index=False)
    text = ("# LightGBM with tabular features at other frequencies (4 rolling origins half a horizon apart)\n\n"
            f"{dt.datetime.utcnow():%Y-%m-%d %H:%M} UTC, 2 cores, loaded machine (load beside each row).\n\n"
            + table.to_markdown(index=False, floatfmt=".4f") + "\n")
    (out / "demand_lgbm_frequencies.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("speed", "accuracy", "data"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    {"speed": speed, "accuracy": accuracy, "data": lambda out: print(world_csv())}[args.what](args.out)


if __name__ == "__main__":
    main()
