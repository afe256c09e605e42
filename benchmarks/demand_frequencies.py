"""Multi-frequency accuracy of the statistical families and of `echelon forecast --model auto`.

Sets: (a) the store-item sample, daily (40 complete series drawn with the seed, last two years);
(b) the same data (all 82 complete series) summed to weeks; (c) the synthetic world (jobs/demand/world.py,
Spark) summed to weeks; (d) public series that statsmodels ships: co2 (weekly, gaps interpolated),
elnino (monthly sea-surface temperature,
1950-2010, one series) and macrodata (quarterly, 7 positive US macro series).

Protocol per set: the test is TEST_ORIGINS rolling origins half a horizon apart whose newest forecast
ends on the last period. Every family is fit at the oldest test origin and carried forward with
those parameters to the later ones (StatsForecaster.backtest_forecasts, through backtest.py).
`auto` chooses once, with its own backtest (forecast.backtest_models + choose) on the data before the
first test origin only, and its test forecasts are those of the model it chose (or the median of the
ensemble's members). So auto's numbers are out of sample; the families' are the same test windows.
Metrics: mean wQL, P10-P90 coverage, MASE (against the seasonal naive in-sample error), forecast
volatility (mean move of a period's P50 between consecutive origins / mean |y|). LightGBM and the
neural models are not run here (their store-item numbers are in demand_accuracy.md).

    python benchmarks/demand_frequencies.py --out benchmarks/results [--sets store_item_weekly,co2]
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from echelon.models.demand.backtest import backtest
from echelon.models.demand.base import QUANTILES, SERIES, qcols
from echelon.models.demand.forecast import (STATS, backtest_models, backtest_stride, build_forecaster, choose,
                                             median_forecast)
from echelon.models.demand.metrics import forecast_volatility, scores

sys.path.insert(0, str(Path(__file__).resolve().parent))      # for demand_accuracy's loader
log = logging.getLogger("demand_frequencies")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "store_item" / "retail_sales_sample.csv"
SEED = 42
TEST_ORIGINS = 3
SELECTION_WINDOWS = 4
TARGET_GAIN = 0.10        # auto at least 10 % below the better naive baseline's wQL


def _weekly(frame: pd.DataFrame) -> pd.DataFrame:
    """Daily -> weekly sums (weeks ending Sunday), whole weeks only."""
    frame = frame.assign(week=frame["timestamp"].dt.to_period("W-SUN").dt.end_time.dt.normalize())
    days = frame.groupby(SERIES + ["week"])["timestamp"].transform("size")
    whole = frame[days == 7]
    return whole.groupby(SERIES + ["week"], as_index=False)["target"].sum().rename(columns={"week": "timestamp"})


def store_item_daily() -> pd.DataFrame:
    from demand_accuracy import load_store_item     # the sibling benchmark's loader (one place)

    data = load_store_item(DATA)
    keys = data[SERIES].drop_duplicates().sample(40, random_state=SEED)
    data = data.merge(keys, on=SERIES)
    return data[data["timestamp"] > data["timestamp"].max() - pd.Timedelta(days=730)][SERIES + ["timestamp", "target"]]


def store_item_weekly() -> pd.DataFrame:
    from demand_accuracy import load_store_item

    return _weekly(load_store_item(DATA))


def world_weekly() -> pd.DataFrame:
    from echelon.jobs.demand.world import WorldConfig, daily_frame
    from echelon.spark import get_spark

    spark = get_spark("demand_frequencies")
    cfg = WorldConfig(items=60, locations=2, start="2023-01-02", end="2026-11-22", seed=SEED)
    daily = daily_frame(spark, cfg).select("item_id", "location_id", "timestamp", "target").toPandas()
    daily["timestamp"] = pd.to_datetime(daily["timestamp"])
    weekly = _weekly(daily)
    # new products launched late have too little history for a 13-week test: keep series with two years
    length = weekly.groupby(SERIES)["timestamp"].transform("size")
    return weekly[length >= 104]


def co2_weekly() -> pd.DataFrame:
    import statsmodels.api as sm

    co2 = sm.datasets.co2.load_pandas().data["co2"].interpolate()
    return pd.DataFrame({"item_id": "co2", "location_id": "all", "timestamp": co2.index, "target": co2.to_numpy()})


def elnino_monthly() -> pd.DataFrame:
    import statsmodels.api as sm

    raw = sm.datasets.elnino.load_pandas().data
    long = raw.melt(id_vars="YEAR", var_name="month", value_name="target")
    long["timestamp"] = pd.to_datetime(long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b")
    return long.assign(item_id="elnino", location_id="all")[SERIES + ["timestamp", "target"]] \
        .sort_values("timestamp").reset_index(drop=True)


def macro_quarterly() -> pd.DataFrame:
    import statsmodels.api as sm

    raw = sm.datasets.macrodata.load_pandas().data
    stamps = pd.PeriodIndex.from_fields(year=raw["year"].astype(int), quarter=raw["quarter"].astype(int),
                                        freq="Q").to_timestamp(how="start")
    columns = ["realgdp", "realcons", "realinv", "realgovt", "realdpi", "m1", "pop"]
    frames = [pd.DataFrame({"item_id": c, "location_id": "all", "timestamp": stamps, "target": raw[c].to_numpy()})
              for c in columns]
    return pd.concat(frames, ignore_index=True)


# name -> (loader, pandas frequency, horizon)
SETS: dict[str, tuple[Callable[[], pd.DataFrame], str, int]] = {
    "store_item_daily": (store_item_daily, "D", 28),
    "store_item_weekly": (store_item_weekly, "W-SUN", 13),
    "world_weekly": (world_weekly, "W-SUN", 13),
    "co2_weekly": (co2_weekly, "W-SAT", 13),
    "elnino_monthly": (elnino_monthly, "MS", 12),
    "macro_quarterly": (macro_quarterly, "QS-JAN", 8),
}


def _metrics(joined: pd.DataFrame) -> dict:
    out = scores(joined, QUANTILES)
    return {"wql": out["wql"], "coverage_80": out["coverage_80"], "mase": out["mase"],
            "volatility": forecast_volatility(joined)}


def evaluate_set(name: str, data: pd.DataFrame, freq: str, horizon: int) -> tuple[list[dict], pd.DataFrame]:
    stride = backtest_stride(horizon)
    rows, test = [], {}
    for family in STATS:
        started = time.perf_counter()
        result = backtest(build_forecaster(family, seed=SEED), data, horizon, n_windows=TEST_ORIGINS,
                          freq=freq, step=stride, quantiles=QUANTILES)
        test[family] = result.forecasts
        rows.append({"set": name, "model": family, **_metrics(result.forecasts),
                     "seconds": round(time.perf_counter() - started, 1)})
        log.info("%s %s: %s", name, family, rows[-1])
    first_origin = min(f["origin"].min() for f in test.values())
    started = time.perf_counter()
    table = backtest_models(data[data["timestamp"] <= first_origin], freq, horizon, QUANTILES, STATS,
                            seed=SEED, windows=SELECTION_WINDOWS)
    chosen = choose(table)
    members = chosen.split(":", 1)[1].split("+") if chosen.startswith("ensemble:") else [chosen]
    keys = SERIES + ["timestamp", "origin"]
    joined = median_forecast([test[m] for m in members], QUANTILES, keys).merge(
        test[members[0]][keys + ["target", "mase_scale"]], on=keys) if len(members) > 1 else test[chosen]
    rows.append({"set": name, "model": f"auto ({chosen})", **_metrics(joined),
                 "seconds": round(time.perf_counter() - started, 1)})
    log.info("%s auto: %s", name, rows[-1])
    return rows, table.assign(set=name)


def write(rows: list[dict], tables: list[pd.DataFrame], sizes: dict, out: Path, load: tuple[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "demand_frequencies.csv", index=False, float_format="%.4f")
    lines = ["# Demand accuracy at every frequency: statistical families and `auto`", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "", __doc__.split("\n\n")[2].replace("\n", " "), "",
             f"Machine load (uptime) before: `{load[0]}`; after: `{load[1]}` (2 shared cores).", ""]
    for name, part in frame.groupby("set", sort=False):
        n_series, n_rows, freq, horizon = sizes[name]
        base = part[part["model"].isin(["naive", "seasonal_naive"])]["wql"].min()
        auto = part[part["model"].str.startswith("auto (")].iloc[0]
        gain = 1 - auto["wql"] / base
        lines += [f"## {name} ({n_series} series, {n_rows} rows, freq {freq}, horizon {horizon})", "",
                  "| model | wQL | P10-P90 coverage | MASE | volatility | seconds |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.model} | {r.wql:.4f} | {r.coverage_80:.1%} | {r.mase:.3f} | {r.volatility:.4f} | "
                  f"{r.seconds:.0f} |" for r in part.itertuples()]
        lines += ["", f"auto vs the better naive baseline: {gain:+.1%} wQL "
                      f"(target >= {TARGET_GAIN:.0%} better: **{'met' if gain >= TARGET_GAIN else 'not met'}**)", ""]
    selection = pd.concat(tables, ignore_index=True)
    selection.to_csv(out / "demand_frequencies_selection.csv", index=False, float_format="%.4f")
    lines += ["auto's own selection backtests (before the test windows) are in demand_frequencies_selection.csv.", ""]
    (out / "demand_frequencies.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("echelon.models.demand.stats").setLevel("WARNING")
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows, tables, sizes = [], [], {}
    for name in args.sets.split(","):
        loader, freq, horizon = SETS[name]
        data = loader()
        sizes[name] = (data[SERIES].drop_duplicates().shape[0], len(data), freq, horizon)
        log.info("%s: %s", name, sizes[name])
        part, table = evaluate_set(name, data, freq, horizon)
        rows += part
        tables.append(table)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    write(rows, tables, sizes, args.out, (load_before, load_after))
    print((args.out / "demand_frequencies.md").read_text())


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    main()
