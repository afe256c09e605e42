"""Demand forecast accuracy on real daily retail data (Kaggle store-item sample, 82 complete series).

Split: rolling-origin backtest, horizon 28, three windows that tile the last 84 days (the newest ends on
the last date of the data). Models are compared on mean weighted quantile loss (wQL, GluonTS
definition), P10-P90 coverage, MASE and WAPE, pooled over the three windows and per window.
LightGBM settings were chosen on the two earlier windows only (--tune; the rounds are recorded in
results/demand_accuracy_tuning.csv); the last window is the held-out test.

    python benchmarks/demand_accuracy.py --out benchmarks/results [--models seasonal_naive,lightgbm]
    python benchmarks/demand_accuracy.py --models tft --cache DIR --out /tmp/part   # one model, kept in DIR
    python benchmarks/demand_accuracy.py --tune     # one tuning round on the two earlier windows,
                                                    # appended to results/demand_accuracy_tuning.csv

The GluonTS models run with `gluon.recommended` settings (the ones the nightly DAG uses). Other models
plug in through `run_benchmark(data, factories)`, where factories maps a model name to a zero-argument
callable returning a Forecaster (see FORECASTERS).
"""
from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from echelon.models.demand.backtest import BacktestResult, backtest, window_origins
from echelon.models.demand.lgbm import LightGBMForecaster
from echelon.models.demand.naive import SeasonalNaiveForecaster

log = logging.getLogger("demand_accuracy")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "store_item" / "retail_sales_sample.csv"
HORIZON = 28
WINDOWS = 3
SEED = 42
TARGET_WQL = 0.095
TARGET_COVERAGE = (0.75, 0.85)

# Chosen with --tune on windows 1-2 (origins 2017-10-08 and 2017-11-05); never on the last window.
# (They are also LightGBMForecaster's defaults; spelled out here so the table states what ran.)
# The forecaster's own defaults (sampled rows, early stopping: issue 15); overrides go here.
LGBM_SETTINGS: dict = {}

GLUON_OVERRIDES: dict = {}  # e.g. {"epochs": 10} from --gluon-epochs, when the time budget is short


def _gluon(name: str) -> object:
    from echelon.models.demand.gluon import recommended  # torch is imported only when a GluonTS model runs

    return recommended(name, seed=SEED, **GLUON_OVERRIDES)


FORECASTERS: dict[str, Callable[[], object]] = {
    "seasonal_naive": lambda: SeasonalNaiveForecaster(),
    "lightgbm": lambda: LightGBMForecaster(seed=SEED, **LGBM_SETTINGS),
    "feedforward": lambda: _gluon("feedforward"),
    "deepar": lambda: _gluon("deepar"),
    "tft": lambda: _gluon("tft"),
}

# A small grid around the defaults; each entry overrides LightGBMForecaster arguments.
TUNING_GRID: list[dict] = [
    {},
    {"cold_start_share": 0.0},
    {"params": {"num_leaves": 31, "min_data_in_leaf": 400}},
    {"max_origins_per_series": 200},
    {"num_boost_round": 500, "params": {"learning_rate": 0.05}},
]


def load_store_item(path: Path = DATA) -> pd.DataFrame:
    """date,store,item,sales -> the canonical frame (item_id=item, location_id=store), complete series only."""
    raw = pd.read_csv(path, parse_dates=["date"])
    missing = {"date", "store", "item", "sales"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected date,store,item,sales")
    frame = raw.rename(columns={"date": "timestamp", "store": "location_id", "item": "item_id", "sales": "target"})
    frame["item_id"] = frame["item_id"].astype(str)
    frame["location_id"] = frame["location_id"].astype(str)
    frame["target"] = frame["target"].astype(float)
    lengths = frame.groupby(["item_id", "location_id"])["timestamp"].transform("size")
    complete = frame[lengths == lengths.max()]
    dropped = frame[["item_id", "location_id"]].drop_duplicates().shape[0] - \
        complete[["item_id", "location_id"]].drop_duplicates().shape[0]
    if dropped:
        log.info("dropped %d partial series (fewer than %d days)", dropped, lengths.max())
    return complete.sort_values(["item_id", "location_id", "timestamp"]).reset_index(drop=True)


def run_benchmark(data: pd.DataFrame, factories: Mapping[str, Callable[[], object]],
                  horizon: int = HORIZON, n_windows: int = WINDOWS) -> dict[str, BacktestResult]:
    results = {}
    for name, factory in factories.items():
        started = time.time()
        log.info("backtesting %s on %d series x %d windows", name,
                 data[["item_id", "location_id"]].drop_duplicates().shape[0], n_windows)
        results[name] = backtest(factory(), data, horizon=horizon, n_windows=n_windows, freq="D")
        log.info("%s done in %.0f s: %s", name, time.time() - started,
                 {k: round(v, 4) for k, v in results[name].summary().items() if k in ("wql", "coverage_80", "mase")})
    return results


def results_table(results: Mapping[str, BacktestResult]) -> pd.DataFrame:
    """One row per model x scope (all windows pooled, then each window)."""
    rows = []
    for name, res in results.items():
        overall = res.overall.iloc[0]
        fit_seconds = float(res.windows["fit_seconds"].mean())
        rows.append({"model": name, "scope": "all 3 windows", "origin": "", "wql": overall["wql"],
                     "coverage_80": overall["coverage_80"], "mase": overall["mase"], "wape": overall["wape"],
                     "fit_seconds": fit_seconds})
        for _, w in res.windows.iterrows():
            label = "test (last window)" if w["window"] == res.windows["window"].max() else f"window {w['window'] + 1}"
            rows.append({"model": name, "scope": label, "origin": w["origin"], "wql": w["wql"],
                         "coverage_80": w["coverage_80"], "mase": w["mase"], "wape": w["wape"],
                         "fit_seconds": w["fit_seconds"]})
    return pd.DataFrame(rows)


def write_results(results: Mapping[str, BacktestResult], out: Path, data: pd.DataFrame) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(results)
    table.to_csv(out / "demand_accuracy.csv", index=False, float_format="%.4f")
    pooled = table[table["scope"] == "all 3 windows"].set_index("model")
    champion = pooled["wql"].idxmin()
    best = pooled.loc[champion]
    met = best["wql"] <= TARGET_WQL and TARGET_COVERAGE[0] <= best["coverage_80"] <= TARGET_COVERAGE[1]
    n_series = data[["item_id", "location_id"]].drop_duplicates().shape[0]
    origins = window_origins(data["timestamp"], HORIZON, WINDOWS, "D")
    floor = noise_floor(data)
    test = table[table["scope"] == "test (last window)"].set_index("model")
    lines = [
        "# Demand forecast accuracy: store-item daily sales",
        "",
        f"Data: `{DATA.name}` ({n_series} complete daily series, {data['timestamp'].min().date()} .. "
        f"{data['timestamp'].max().date()}). Rolling-origin backtest, horizon {HORIZON} days, {WINDOWS} windows "
        f"with origins {', '.join(o.date().isoformat() for o in origins)}; each model is refit on the history up "
        f"to each origin. LightGBM settings were chosen on windows 1-2 only; the last window is the held-out test.",
        "",
        "wQL = mean over the quantiles 0.1..0.9 of 2*sum(pinball)/sum(|y|) (GluonTS mean_wQuantileLoss); "
        "coverage = share of actuals in [P10, P90] (nominal 80%); MASE against the seasonal (7-day) naive "
        "in-sample error of each series; WAPE of the median.",
        "",
        _markdown(table),
        "",
        f"Champion (lowest wQL over the three windows pooled): **{champion}**, wQL {best['wql']:.4f}, "
        f"P10-P90 coverage {best['coverage_80']:.1%}. Target wQL <= {TARGET_WQL} with coverage in "
        f"{TARGET_COVERAGE[0]:.0%}-{TARGET_COVERAGE[1]:.0%} over the split: **{'met' if met else 'not met'}**. "
        f"On the last window alone the champion scores {test.loc[champion, 'wql']:.4f} "
        f"(coverage {test.loc[champion, 'coverage_80']:.1%}) against an oracle floor of "
        f"{floor.iloc[-1]['wql']:.4f} there (below)"
        + (f", so no forecaster can be expected to reach {TARGET_WQL} on that window by itself."
           if floor.iloc[-1]["wql"] > TARGET_WQL else "."),
        "",
        _reference_note(test),
        "",
        "Noise floor: the data is Poisson noise around series x year x month x weekday means, so Poisson "
        "quantiles around those means, fitted on all the data including the test windows (an oracle, not a "
        "forecaster), show roughly the best achievable wQL per window:",
        "",
        "| window | origin | oracle wQL | oracle coverage |",
        "|---|---|---:|---:|",
        *[f"| {r['window']} | {r['origin']} | {r['wql']:.4f} | {r['coverage_80']:.1%} |" for _, r in floor.iterrows()],
        "",
        f"LightGBM settings: the defaults of LightGBMForecaster plus `{json.dumps(LGBM_SETTINGS)}` (seed {SEED}).",
        "",
        "Models as they ran (a GluonTS model with fewer epochs than `gluon.RECOMMENDED` ran on a short time "
        "budget, so its row understates it). Fit seconds are wall time on a shared 2-core machine and swing with "
        "its load: compare them only within one run.", "",
        *[f"- {name}: `{res.params.get('model', '?')}`" for name, res in results.items()],
        "",
        *_tuning_section(out),
        "Reproduce: `python benchmarks/demand_accuracy.py --out benchmarks/results`.",
        "",
    ]
    path = out / "demand_accuracy.md"
    path.write_text("\n".join(lines))
    return path


def noise_floor(data: pd.DataFrame, horizon: int = HORIZON, n_windows: int = WINDOWS) -> pd.DataFrame:
    """What an oracle would score: this data is Poisson noise around series x year x month x weekday
    means (residual variance / mean = 1.00), so Poisson quantiles around those means, fitted on ALL
    the data (test windows included), approximate the best achievable wQL. A reference, not a model."""
    from scipy.stats import poisson

    from echelon.models.demand.metrics import evaluate

    frame = data.copy()
    grand = frame["target"].mean()
    means = frame.groupby(["item_id", "location_id"])["target"].transform("mean")
    for key in (frame["timestamp"].dt.year, frame["timestamp"].dt.month, frame["timestamp"].dt.dayofweek):
        means = means * frame.groupby(key)["target"].transform("mean") / grand
    rows = []
    origins = window_origins(data["timestamp"], horizon, n_windows, "D")
    for w, origin in enumerate(origins):
        end = origin + pd.Timedelta(days=horizon)
        part = frame[(frame["timestamp"] > origin) & (frame["timestamp"] <= end)]
        forecast = part[["item_id", "location_id", "timestamp"]].copy()
        for q in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            forecast[f"q_{q:g}"] = poisson.ppf(q, means[part.index])
        score = evaluate(forecast, part, frame[frame["timestamp"] <= origin])["overall"].iloc[0]
        rows.append({"window": "test (last window)" if w == n_windows - 1 else f"window {w + 1}",
                     "origin": origin.date().isoformat(), "wql": score["wql"], "coverage_80": score["coverage_80"]})
    return pd.DataFrame(rows)


def _reference_note(test: pd.DataFrame) -> str:
    note = "Reference points quoted for this split: seasonal naive wQL 0.300, quickly tuned pooled LightGBM 0.104."
    if "seasonal_naive" in test.index:
        note += (" They fit the last window: a seasonal naive POINT forecast (every quantile = the value a week "
                 "back) has wQL = WAPE, and its WAPE on the last window is "
                 f"{test.loc['seasonal_naive', 'wape']:.3f}; the seasonal naive here adds quantiles from its own "
                 "in-sample errors, hence its lower wQL.")
    return note


def _tuning_section(out: Path) -> list[str]:
    """The recorded tuning rounds (demand_accuracy_tuning.csv, written by --tune), when present."""
    path = out / "demand_accuracy_tuning.csv"
    if not path.exists():
        return []
    grid = pd.read_csv(path)
    lines = ["## Tuning (windows 1-2 only)", "",
             "Each round varies one thing at a time around a base; wQL and coverage are the means over "
             "windows 1 and 2. Differences below ~0.0005 are noise. Round 1 ran before cold-start copies also "
             "blanked price and promo. Seconds are wall time on a shared 2-core machine (not comparable).", "",
             "| round | overrides of the round's base | wQL | coverage | wQL w1 | wQL w2 | s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for _, r in grid.iterrows():
        lines.append(f"| {r['round']} | `{r['overrides']}` | {r['wql']:.4f} | {r['coverage_80']:.1%} | "
                     f"{r['wql_window_1']:.4f} | {r['wql_window_2']:.4f} | {r['seconds']:.0f} |")
    bases = grid.drop_duplicates("round")[["round", "base"]]
    lines += ["", "Bases: " + "; ".join(f"round {r['round']}: `{r['base']}`" for _, r in bases.iterrows()) + ".",
              "Chosen: the round-3 base (round 2's two best changes together). All round-2 candidates are within "
              "0.0002 wQL of each other; the chosen one has the coverage closest to 80% and one of the shortest fits.", ""]
    return lines


def _markdown(table: pd.DataFrame) -> str:
    header = "| model | scope | origin | wQL | P10-P90 coverage | MASE | WAPE | fit s/window |"
    rows = [header, "|---|---|---|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        rows.append(f"| {r['model']} | {r['scope']} | {r['origin']} | {r['wql']:.4f} | {r['coverage_80']:.1%} | "
                    f"{r['mase']:.3f} | {r['wape']:.4f} | {r['fit_seconds']:.0f} |")
    return "\n".join(rows)


def tune(data: pd.DataFrame, grid: list[dict] = TUNING_GRID) -> pd.DataFrame:
    """Score each grid entry on the two earlier windows only (one feature table, fit_features with a
    cutoff per origin: the same rows `fit` would see, since every feature is known at its date)."""
    from echelon.demand_features import features_pandas
    from echelon.models.demand.metrics import evaluate

    features = features_pandas(data)
    origins = window_origins(data["timestamp"], HORIZON, WINDOWS, "D")[:-1]
    rows = []
    for overrides in grid:
        settings = {**LGBM_SETTINGS, **overrides, "params": {**LGBM_SETTINGS.get("params", {}), **overrides.get("params", {})}}
        scores, started = [], time.time()
        for origin in origins:
            model = LightGBMForecaster(seed=SEED, **settings).fit_features(features, HORIZON, cutoff=origin)
            end = origin + pd.Timedelta(days=HORIZON)
            forecasts = model.predict_features(features[features["date"] <= end], origin=origin)
            actual = data[(data["timestamp"] > origin) & (data["timestamp"] <= end)]
            scores.append(evaluate(forecasts, actual, data[data["timestamp"] <= origin])["overall"].iloc[0])
        row = {"settings": json.dumps(overrides), "wql": np.mean([s["wql"] for s in scores]),
               "coverage_80": np.mean([s["coverage_80"] for s in scores]),
               **{f"wql_window_{i + 1}": s["wql"] for i, s in enumerate(scores)},
               **{f"coverage_window_{i + 1}": s["coverage_80"] for i, s in enumerate(scores)},
               "seconds": time.time() - started}
        log.info("tune %s: wQL %.4f coverage %.3f", row["settings"], row["wql"], row["coverage_80"])
        rows.append(row)
    return pd.DataFrame(rows).sort_values("wql")


def main(argv: list[str] | None = None, factories: Mapping[str, Callable[[], object]] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of the model names (default: all of them)")
    parser.add_argument("--tune", action="store_true", help="run the LightGBM tuning grid on windows 1-2")
    parser.add_argument("--gluon-epochs", type=int, default=None,
                        help="train the GluonTS models for N epochs instead of their recommended budget")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep each model's backtest in DIR/<model>.pkl and reuse it when present: models can "
                             "run in separate processes (--models a / --models b), then one run writes the table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.data.exists():
        print(f"SKIPPED: benchmark data not found at {args.data} (the Kaggle store-item sample, "
              f"date,store,item,sales); nothing was written.")
        return 0
    data = load_store_item(args.data)
    if args.gluon_epochs:
        GLUON_OVERRIDES["epochs"] = args.gluon_epochs
    if args.tune:
        # each run appends one round (around the current LGBM_SETTINGS) to the recorded tuning history
        path = args.out / "demand_accuracy_tuning.csv"
        previous = pd.read_csv(path) if path.exists() else pd.DataFrame()
        table = tune(data).rename(columns={"settings": "overrides"})
        table.insert(0, "round", int(previous["round"].max()) + 1 if len(previous) else 1)
        table.insert(1, "base", json.dumps(LGBM_SETTINGS))
        args.out.mkdir(parents=True, exist_ok=True)
        pd.concat([previous, table], ignore_index=True).to_csv(path, index=False, float_format="%.4f")
        print(table.drop(columns="base").to_string(index=False))
        return 0
    factories = factories or FORECASTERS
    names = args.models.split(",") if args.models else list(factories)
    unknown = [name for name in names if name not in factories]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(factories)}")
    chosen = {name: factories[name] for name in names}
    results = {}
    for name, factory in chosen.items():
        cached = args.cache / f"{name}.pkl" if args.cache else None
        if cached and cached.exists():
            log.info("%s: reusing %s", name, cached)
            results[name] = pickle.loads(cached.read_bytes())
            results[name].params.setdefault("model", repr(factory()))  # results kept before backtest recorded it
            continue
        results[name] = run_benchmark(data, {name: factory})[name]
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(pickle.dumps(results[name]))
    path = write_results(results, args.out, data)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
