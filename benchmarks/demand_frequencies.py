"""Multi-frequency accuracy of every model family and of `echelon forecast --model auto`.

Sets: (a) the store-item sample, daily (40 complete series drawn with the seed, last two years);
(b) the same data (all 82 complete series) summed to weeks; (c) the synthetic world (jobs/demand/world.py,
Spark) summed to weeks, and made hourly: its 30 busiest series' last 8 weeks of daily units split over
the hours by a seeded multinomial draw from a diurnal profile (a midday and an evening peak, later on
weekends; no public hourly set ships with the installed packages); (d) public series that statsmodels
ships: co2 (weekly, gaps interpolated), elnino (monthly sea-surface temperature, 1950-2010, one series)
and macrodata (quarterly, 7 positive US macro series).

Protocol per set: the test is TEST_ORIGINS rolling origins half a horizon apart whose newest forecast
ends on the last period. The statistical families are fit at the oldest test origin and carried
forward with those parameters to the later ones (StatsForecaster.backtest_forecasts, through
backtest.py), each twice: with the default calibrated intervals and with the models' own intervals
("model intervals": same point forecasts). LightGBM and the MQ models (3 epochs of 10 batches only,
to keep the run short: their numbers here understate them; demand_accuracy.md has trained ones) come
through build_forecaster and backtest.py like every model; where a model refuses a set its row says
why. `auto` chooses once, with its own backtest (forecast.auto_candidates, backtest_models over auto's own
window count, choose) on the data before the first test origin only, and its test forecasts are those of the model it chose (or
the median of the ensemble's members). So auto's numbers are out of sample; the families' are the same
test windows. Metrics: mean wQL, P10-P90 coverage, MASE (against the seasonal naive in-sample error),
forecast volatility (mean move of a period's P50 between consecutive origins / mean |y|), seconds for
the whole backtest (every test window's fits and forecasts; auto: its selection backtest) on the
shared 2-core machine, no GPU.

    python benchmarks/demand_frequencies.py --out benchmarks/results [--sets store_item_weekly,co2_weekly]
    (--no-lightgbm leaves LightGBM out, for a quick look; the committed table runs it)
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from echelon.models.demand.backtest import backtest
from echelon.models.demand.base import QUANTILES, SERIES, qcols
from echelon.models.demand.forecast import (MQ, STATS, auto_candidates, backtest_models, backtest_stride,
                                             build_forecaster, choose, median_forecast)
from echelon.models.demand.metrics import forecast_volatility, scores

sys.path.insert(0, str(Path(__file__).resolve().parent))      # for demand_accuracy's loader
log = logging.getLogger("demand_frequencies")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "store_item" / "retail_sales_sample.csv"
SEED = 42
TEST_ORIGINS = 3
TARGET_GAIN = 0.10        # auto at least 10 % below the better naive baseline's wQL
MQ_EPOCHS, MQ_BATCHES = 3, 10     # a smoke-level training budget for the MQ rows (trained runs: demand_accuracy.md)
HOURLY_SERIES, HOURLY_DAYS = 30, 56


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


@lru_cache(maxsize=1)
def _world_daily() -> pd.DataFrame:
    from echelon.jobs.demand.world import WorldConfig, daily_frame
    from echelon.spark import get_spark

    spark = get_spark("demand_frequencies")
    cfg = WorldConfig(items=60, locations=2, start="2023-01-02", end="2026-11-22", seed=SEED)
    daily = daily_frame(spark, cfg).select("item_id", "location_id", "timestamp", "target").toPandas()
    daily["timestamp"] = pd.to_datetime(daily["timestamp"])
    return daily


def world_weekly() -> pd.DataFrame:
    weekly = _weekly(_world_daily())
    # new products launched late have too little history for a 13-week test: keep series with two years
    length = weekly.groupby(SERIES)["timestamp"].transform("size")
    return weekly[length >= 104]


def hourly_profile(weekday: int) -> np.ndarray:
    """Share of a day's units per hour: closed at night, a midday and an evening peak (later at weekends)."""
    hours = np.arange(24) - (1.0 if weekday >= 5 else 0.0)
    weights = np.exp(-0.5 * ((hours - 12.5) / 2.0) ** 2) + 0.8 * np.exp(-0.5 * ((hours - 19) / 1.5) ** 2)
    weights = weights + 0.15 * ((hours >= 8) & (hours <= 22))
    return weights / weights.sum()


def world_hourly() -> pd.DataFrame:
    daily = _world_daily()
    daily = daily[daily["timestamp"] > daily["timestamp"].max() - pd.Timedelta(days=HOURLY_DAYS)]
    busiest = daily.groupby(SERIES)["target"].sum().nlargest(HOURLY_SERIES).index
    daily = daily.set_index(SERIES).loc[busiest].reset_index().sort_values(SERIES + ["timestamp"])
    rng = np.random.default_rng(SEED)
    units = np.round(daily["target"].to_numpy()).astype(int)
    counts = np.stack([rng.multinomial(n, hourly_profile(d)) for n, d in zip(units, daily["timestamp"].dt.weekday)])
    hourly = daily.loc[daily.index.repeat(24), SERIES + ["timestamp"]].reset_index(drop=True)
    hourly["timestamp"] += pd.to_timedelta(np.tile(np.arange(24), len(daily)), unit="h")
    hourly["target"] = counts.reshape(-1).astype(float)
    return hourly


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
    "world_hourly": (world_hourly, "h", 24),
    "world_weekly": (world_weekly, "W-SUN", 13),
    "co2_weekly": (co2_weekly, "W-SAT", 13),
    "elnino_monthly": (elnino_monthly, "MS", 12),
    "macro_quarterly": (macro_quarterly, "QS-JAN", 8),
}


def _metrics(joined: pd.DataFrame) -> dict:
    out = scores(joined, QUANTILES)
    return {"wql": out["wql"], "coverage_80": out["coverage_80"], "mase": out["mase"],
            "volatility": forecast_volatility(joined)}


def _run_family(set_name: str, label: str, forecaster, data: pd.DataFrame, freq: str, horizon: int,
                refusals: tuple = ()) -> tuple[dict, pd.DataFrame | None]:
    """One model's test backtest as a table row (and its forecasts); an error of a type in `refusals`
    (a model that cannot take the set) becomes an n/a row naming the reason."""
    started = time.perf_counter()
    try:
        result = backtest(forecaster, data, horizon, n_windows=TEST_ORIGINS, freq=freq,
                          step=backtest_stride(horizon), quantiles=QUANTILES)
    except refusals as error:
        log.info("%s %s: n/a (%s)", set_name, label, error)
        return {"set": set_name, "model": label, "note": f"n/a ({str(error).splitlines()[0]})"}, None
    row = {"set": set_name, "model": label, **_metrics(result.forecasts),
           "seconds": round(time.perf_counter() - started, 1)}
    log.info("%s %s: %s", set_name, label, row)
    return row, result.forecasts


def evaluate_set(name: str, data: pd.DataFrame, freq: str, horizon: int,
                 lightgbm: bool = True) -> tuple[list[dict], pd.DataFrame]:
    rows, test = [], {}
    for family in STATS:
        for intervals, label in (("calibrated", family), ("model", f"{family} (model intervals)")):
            row, test[label] = _run_family(name, label, build_forecaster(family, seed=SEED, intervals=intervals),
                                           data, freq, horizon)
            rows.append(row)
    if not lightgbm:
        row = {"set": name, "model": "lightgbm", "note": "n/a (not run: --no-lightgbm; auto ran without it)"}
    else:
        row, test["lightgbm"] = _run_family(name, "lightgbm", build_forecaster("lightgbm", seed=SEED),
                                            data, freq, horizon, refusals=(ValueError,))
    rows.append(row)
    for family in MQ:      # refuses series too short for its validation window (a ValueError naming them)
        row, test[family] = _run_family(name, f"{family} ({MQ_EPOCHS} epochs)",
                                        build_forecaster(family, seed=SEED, epochs=MQ_EPOCHS,
                                                         batches_per_epoch=MQ_BATCHES), data, freq, horizon,
                                        refusals=(ValueError,))
        rows.append(row)
    first_origin = min(f["origin"].min() for f in test.values() if f is not None)
    before = data[data["timestamp"] <= first_origin]
    started = time.perf_counter()
    candidates = [c for c in auto_candidates(before, freq) if lightgbm or c != "lightgbm"]
    table = backtest_models(before, freq, horizon, QUANTILES, candidates, seed=SEED)    # auto's own window count
    chosen = choose(table)
    members = chosen.split(":", 1)[1].split("+") if chosen.startswith("ensemble:") else [chosen]
    keys = SERIES + ["timestamp", "origin"]
    joined = median_forecast([test[m] for m in members], QUANTILES, keys).merge(
        test[members[0]][keys + ["target", "mase_scale"]], on=keys) if len(members) > 1 else test[chosen]
    rows.append({"set": name, "model": f"auto ({chosen})", **_metrics(joined),
                 "seconds": round(time.perf_counter() - started, 1)})
    log.info("%s auto: %s", name, rows[-1])
    return rows, table.assign(set=name)


def calibration_summary(frame: pd.DataFrame) -> list[str]:
    """The statistical families with calibrated vs their own model intervals, set by set."""
    lines = ["## Calibrated vs model intervals (statistical families, same point forecasts)", "",
             "| set | model | coverage: model | coverage: calibrated | wQL: model | wQL: calibrated |",
             "|---|---|---:|---:|---:|---:|"]
    gaps = {"model": [], "calibrated": []}
    for (name, family), part in frame[frame["model"].str.replace(" (model intervals)", "").isin(STATS)] \
            .groupby([frame["set"], frame["model"].str.replace(" (model intervals)", "")], sort=False):
        cal, mod = part[part["model"] == family].iloc[0], part[part["model"] != family].iloc[0]
        gaps["model"].append(abs(mod["coverage_80"] - 0.8))
        gaps["calibrated"].append(abs(cal["coverage_80"] - 0.8))
        lines.append(f"| {name} | {family} | {mod['coverage_80']:.1%} | {cal['coverage_80']:.1%} | "
                     f"{mod['wql']:.4f} | {cal['wql']:.4f} |")
    lines += ["", f"Mean distance of P10-P90 coverage from 80%: model intervals {np.mean(gaps['model']):.1%}, "
                  f"calibrated {np.mean(gaps['calibrated']):.1%}.", ""]
    return lines


def write(rows: list[dict], tables: list[pd.DataFrame], sizes: dict, out: Path, load: tuple[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    if "note" not in frame.columns:
        frame["note"] = np.nan
    frame.to_csv(out / "demand_frequencies.csv", index=False, float_format="%.4f")
    lines = ["# Demand accuracy at every frequency: every model family and `auto`", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "", __doc__.split("\n\n")[2].replace("\n", " "), "",
             f"Machine load (uptime) before: `{load[0]}`; after: `{load[1]}` (2 shared cores).", ""]
    for name, part in frame.groupby("set", sort=False):
        n_series, n_rows, freq, horizon = sizes[name]
        base = part[part["model"].isin(["naive", "seasonal_naive"])]["wql"].min()     # calibrated, as auto runs them
        auto = part[part["model"].str.startswith("auto (")].iloc[0]
        gain = 1 - auto["wql"] / base
        lines += [f"## {name} ({n_series} series, {n_rows} rows, freq {freq}, horizon {horizon})", "",
                  "| model | wQL | P10-P90 coverage | MASE | volatility | seconds |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.model} | {r.note} | | | | |" if isinstance(r.note, str) else
                  f"| {r.model} | {r.wql:.4f} | {r.coverage_80:.1%} | {r.mase:.3f} | {r.volatility:.4f} | "
                  f"{r.seconds:.0f} |" for r in part.itertuples()]
        lines += ["", f"auto vs the better naive baseline: {gain:+.1%} wQL "
                      f"(target >= {TARGET_GAIN:.0%} better: **{'met' if gain >= TARGET_GAIN else 'not met'}**)", ""]
    lines += calibration_summary(frame)
    selection = pd.concat(tables, ignore_index=True)
    selection.to_csv(out / "demand_frequencies_selection.csv", index=False, float_format="%.4f")
    lines += ["auto's own selection backtests (before the test windows) are in demand_frequencies_selection.csv.", ""]
    (out / "demand_frequencies.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--no-lightgbm", dest="lightgbm", action="store_false",
                        help="leave LightGBM out (its row and auto's candidates); with it: 32 min on 2 loaded cores")
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
        part, table = evaluate_set(name, data, freq, horizon, lightgbm=args.lightgbm)
        rows += part
        tables.append(table)
        load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        write(rows, tables, sizes, args.out, (load_before, load_after))       # after each set: a partial run keeps its sets
    print((args.out / "demand_frequencies.md").read_text())


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    main()
