"""MQ-CNN and MQ-Transformer on the store-item split of benchmarks/demand_accuracy.py (same data, horizon
28, three rolling windows), with seasonal naive rerun beside them, plus forecast volatility.

Volatility: the model fitted at the last window's origin forecasts again from each of the next
`--vol-origins` days (the history growing by a day each time, no refit, as a nightly run would); for
every series and target date forecast from two consecutive origins, |P50 change| divided by the
series' mean |y| over its history; the mean over all of them. Zero for forecasts that never move.

    python benchmarks/demand_mq.py --out benchmarks/results [--models mqcnn,mqtransformer] [--epochs N]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from demand_accuracy import DATA, HORIZON, SEED, WINDOWS, load_store_item, results_table, run_benchmark
from echelon.models.demand.base import SERIES, qcol
from echelon.models.demand.mq import MQCNNForecaster, MQTransformerForecaster
from echelon.models.demand.naive import SeasonalNaiveForecaster

log = logging.getLogger("demand_mq")

LIGHTGBM_WQL = 0.0896     # benchmarks/results/demand_accuracy.md, all 3 windows (not rerun: ~1,100 s per fit)
MODELS = {"seasonal_naive": SeasonalNaiveForecaster, "mqcnn": MQCNNForecaster,
          "mqtransformer": MQTransformerForecaster}


class Kept:
    """Wraps a forecaster so the models the backtest fits (on its deep copies) stay reachable."""

    fitted: dict[str, list] = {}

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def fit(self, *args, **kwargs):
        self.inner.fit(*args, **kwargs)
        Kept.fitted.setdefault(self.name, []).append(self.inner)
        return self

    def predict(self, *args, **kwargs):
        return self.inner.predict(*args, **kwargs)

    def __repr__(self) -> str:
        return repr(self.inner)


def volatility(model, data: pd.DataFrame, origin: pd.Timestamp, origins: int) -> float:
    """Mean |P50 revision| between consecutive daily origins, over the series' mean |y| (see docstring)."""
    frames = []
    for k in range(origins):
        at = origin + pd.Timedelta(days=k)
        frames.append(model.predict(data[data["timestamp"] <= at]).assign(origin=k))
    p50 = pd.concat(frames).pivot_table(index=SERIES + ["timestamp"], columns="origin", values=qcol(0.5))
    revisions = p50.diff(axis=1).abs().iloc[:, 1:]
    scale = data[data["timestamp"] <= origin].groupby(SERIES)["target"].apply(lambda y: y.abs().mean())
    per_row = revisions.div(scale.reindex(p50.index.droplevel("timestamp")).to_numpy(), axis=0)
    return float(np.nanmean(per_row.to_numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=None, help="cap on epochs (early stopping may stop sooner)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra MQ forecaster parameter (JSON value, e.g. year_over_year=true); repeatable")
    parser.add_argument("--vol-origins", type=int, default=8)
    parser.add_argument("--name", default="demand_mq", help="stem of the results files in --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = load_store_item()
    load_before = os.getloadavg()
    overrides = {"epochs": args.epochs} if args.epochs else {}
    for item in args.set:
        key, _, value = item.partition("=")
        if not key or not value:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = json.loads(value)
    factories = {name: (lambda k=MODELS[name]: Kept(k() if k is SeasonalNaiveForecaster else k(seed=SEED, **overrides)))
                 for name in args.models.split(",")}
    started = time.time()
    results = run_benchmark(data, factories)
    table = results_table(results)
    last_origin = pd.Timestamp(results[next(iter(results))].windows["origin"].iloc[-1])
    vol = {name: volatility(Kept.fitted[name][-1], data, last_origin, args.vol_origins) for name in results}
    table["volatility_p50"] = table["model"].map(vol).where(table["scope"] == "all 3 windows")
    load_after = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{args.name}.csv", index=False, float_format="%.4f")
    pooled = table[table["scope"] == "all 3 windows"].set_index("model")
    curves = {name: {k: [round(v, 4) for v in vals] for k, vals in Kept.fitted[name][-1].learning_curves.items()}
              for name in results if hasattr(Kept.fitted[name][-1], "learning_curves")}
    lines = [
        "# MQ-CNN and MQ-Transformer on the store-item split",
        "",
        f"Data `{DATA.name}`, horizon {HORIZON} days, {WINDOWS} rolling windows, each model refit per window "
        f"(benchmarks/demand_accuracy.py's split and scoring). Seed {SEED}, one torch thread, CPU. "
        f"Machine load (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
        f"after: {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} on 2 shared cores, so fit "
        f"seconds are inflated and comparable only within this run. Total {time.time() - started:.0f} s.",
        "",
        "| model | scope | origin | wQL | P10-P90 coverage | MASE | WAPE | fit s | P50 volatility |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
        *[f"| {r['model']} | {r['scope']} | {r['origin']} | {r['wql']:.4f} | {r['coverage_80']:.1%} | "
          f"{r['mase']:.3f} | {r['wape']:.4f} | {r['fit_seconds']:.0f} | "
          f"{'' if pd.isna(r['volatility_p50']) else format(r['volatility_p50'], '.4f')} |" for _, r in table.iterrows()],
        "",
        f"LightGBM (not rerun here, ~1,100 s per fit; benchmarks/results/demand_accuracy.md): wQL {LIGHTGBM_WQL} "
        "over the three windows. "
        + "; ".join(f"{name}: {'at or below' if pooled.loc[name, 'wql'] <= LIGHTGBM_WQL else 'above'} it "
                    f"({pooled.loc[name, 'wql']:.4f})" for name in pooled.index if name.startswith("mq")) + ".",
        "",
        f"Volatility: the last window's model re-forecasts from {args.vol_origins} consecutive daily origins "
        "without refitting; mean |P50 revision| of the same target date between consecutive origins over the "
        "series' mean |y|.",
        "",
        "Learning curves of the last window's fit (per epoch): " + json.dumps(curves),
        "",
        "Models as they ran: " + "; ".join(f"`{res.params['model']}`" for res in results.values()),
        "",
        f"Reproduce: `python benchmarks/demand_mq.py --out benchmarks/results --models {args.models} "
        f"--name {args.name}" + (f" --epochs {args.epochs}" if args.epochs else "")
        + "".join(f" --set {item}" for item in args.set) + "`.",
        "",
    ]
    (args.out / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
