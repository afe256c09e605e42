"""`echelon forecast`: quantile forecasts for any user file (long, store-item or M5 format).

    echelon forecast --input sales.csv --freq D --horizon 28 --quantiles 0.1,0.2,...,0.9 \\
        --output forecasts.csv [--model auto|seasonal_naive|lightgbm|tft|deepar|feedforward] \\
        [--seed N] [--epochs N]
    python -m echelon.models.demand.forecast ...   (the same command without the console script)

Writes `item_id[, location_id], timestamp, q_...` for the `horizon` steps after each series' last
timestamp. `--model auto` backtests the candidate models over rolling origins on the input itself,
prints the table, and forecasts with the one with the lowest mean weighted quantile loss (wQL).
"""
from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from echelon.models.demand.base import QUANTILES, SERIES, qcols

log = logging.getLogger(__name__)

GLUON = ("tft", "deepar", "feedforward")
MODELS = ("seasonal_naive", "lightgbm", *GLUON)
# The cheap, strong pair by default; neural nets join the backtest when asked (--candidates).
AUTO_CANDIDATES = ("seasonal_naive", "lightgbm")
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


# ----------------------------------------------------------------------------------------------
# Arguments that need more than a type
# ----------------------------------------------------------------------------------------------

def parse_quantiles(text: str) -> tuple[float, ...]:
    """'0.1,0.5,0.9' -> (0.1, 0.5, 0.9); '0.1,0.2,...,0.9' expands the arithmetic progression."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    values: list[float] = []
    try:
        if "..." in parts:
            at = parts.index("...")
            if at < 2 or at != len(parts) - 2:
                raise ValueError
            head = [float(p) for p in parts[:at]]
            step, end = head[-1] - head[-2], float(parts[-1])
            if step <= 0:
                raise ValueError
            values = head[:-1]
            value = head[-1]
            while value <= end + 1e-9:
                values.append(round(value, 10))
                value += step
        else:
            values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--quantiles '{text}': expected comma-separated numbers such as "
                         "0.1,0.5,0.9 or 0.1,0.2,...,0.9") from None
    bad = [q for q in values if not 0.0 < q < 1.0]
    if not values or bad:
        raise ValueError(f"--quantiles '{text}': every quantile must lie strictly between 0 and 1"
                         + (f" (got {bad})" if bad else ""))
    return tuple(sorted(set(values)))


def resolve_freq(history: pd.DataFrame, freq: str) -> str:
    """Check the frequency against the data and normalise its alias.

    Weekly data dated on another day than pandas' default Sunday anchor ('W' = 'W-SUN') gets the
    anchor of its timestamps, so `--freq W` works for Monday-dated weeks too.
    """
    try:
        offset = to_offset(freq)
    except ValueError:
        raise ValueError(f"--freq '{freq}' is not a pandas frequency (e.g. D, W, W-MON, h, MS, ME)") from None
    stamps = pd.DatetimeIndex(history["timestamp"].unique())
    if all(offset.is_on_offset(t) for t in stamps[:1000]):
        return offset.freqstr
    if isinstance(offset, pd.offsets.Week) and offset.n == 1:
        weekdays = stamps.weekday.unique()
        if len(weekdays) == 1:
            anchored = f"W-{WEEKDAYS[weekdays[0]]}"
            log.info("weekly timestamps fall on %s: using freq %s", WEEKDAYS[weekdays[0]], anchored)
            return anchored
    off = [str(t) for t in stamps if not offset.is_on_offset(t)][:5]
    raise ValueError(f"timestamps such as {off} are not on the '{freq}' grid; pass the data's own "
                     "frequency (e.g. W-MON for weeks dated on Mondays, MS for month starts)")


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

def _accepts(klass: type, parameter: str) -> bool:
    params = inspect.signature(klass).parameters
    return parameter in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_forecaster(name: str, *, seed: int = 0, epochs: int | None = None, **params: Any) -> Any:
    """A fresh, unfitted forecaster by CLI name, with its recommended settings (`params` override them)."""
    if name in GLUON:
        from echelon.models.demand.gluon import recommended

        return recommended(name, seed=seed, **({"epochs": epochs} if epochs else {}), **params)
    if name == "seasonal_naive":
        from echelon.models.demand.naive import SeasonalNaiveForecaster as klass
    elif name == "lightgbm":
        from echelon.models.demand.lgbm import LightGBMForecaster as klass
    else:
        raise ValueError(f"unknown model '{name}'; choose from auto, {', '.join(MODELS)}")
    return klass(seed=seed, **params) if _accepts(klass, "seed") else klass(**params)


def has_locations(history: pd.DataFrame) -> bool:
    return "location_id" in history.columns and bool((history["location_id"] != "all").any())


# ----------------------------------------------------------------------------------------------
# Backtest (auto)
# ----------------------------------------------------------------------------------------------

def usable_windows(history: pd.DataFrame, freq: str, horizon: int, windows: int) -> int:
    """How many of the `windows` most recent back-to-back test windows leave at least two horizons
    of history before their origin."""
    offset = to_offset(freq)
    last, first = history["timestamp"].max(), history["timestamp"].min()
    return sum(last - offset * (horizon * w) >= first + offset * (2 * horizon)
               for w in range(1, windows + 1))


def candidates_for(freq: str, candidates: Sequence[str]) -> list[str]:
    """LightGBM's features are daily: leave it out of non-daily backtests instead of failing."""
    if to_offset(freq) != to_offset("D") and "lightgbm" in candidates:
        log.info("auto: leaving lightgbm out (daily data only; freq is %s)", freq)
        return [c for c in candidates if c != "lightgbm"]
    return list(candidates)


def backtest_models(history: pd.DataFrame, freq: str, horizon: int, quantiles: Sequence[float],
                    candidates: Sequence[str], *, seed: int = 0, epochs: int | None = None,
                    windows: int = 2) -> pd.DataFrame:
    """One row per candidate: pooled mean wQL, coverage of the outer quantiles, MASE and WAPE over
    rolling origins (models/demand/backtest.py), and the time it took. Sorted best first."""
    from echelon.models.demand.backtest import backtest

    usable = usable_windows(history, freq, horizon, windows)
    if usable == 0:
        raise ValueError(f"--model auto needs at least {3 * horizon} steps of history to backtest a "
                         f"horizon of {horizon}; choose a model with --model")
    rows = []
    from echelon.progress import track

    for name in track(candidates_for(freq, candidates), "auto backtest", unit="model"):
        started = time.perf_counter()
        result = backtest(build_forecaster(name, seed=seed, epochs=epochs), history, horizon,
                          n_windows=usable, freq=freq, quantiles=quantiles)
        summary = result.summary()
        rows.append({"model": name, "wql": summary["wql"],
                     "coverage": summary.get("coverage_80", np.nan),
                     "mase": summary.get("mase", np.nan), "wape": summary.get("wape", np.nan),
                     "windows": usable, "seconds": round(time.perf_counter() - started, 1)})
        log.info("auto: %s mean wQL %.4f over %d window(s)", name, rows[-1]["wql"], usable)
    return pd.DataFrame(rows).sort_values("wql", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# The pure function behind the command
# ----------------------------------------------------------------------------------------------

def forecast_frame(history: pd.DataFrame, *, freq: str, horizon: int,
                   quantiles: Sequence[float] = QUANTILES, model: str = "auto", seed: int = 0,
                   epochs: int | None = None, candidates: Sequence[str] = AUTO_CANDIDATES,
                   windows: int = 2) -> tuple[pd.DataFrame, str, pd.DataFrame | None]:
    """Canonical history -> (forecasts in the output layout, chosen model, backtest table or None)."""
    if horizon < 1:
        raise ValueError(f"--horizon must be at least 1 (got {horizon})")
    freq = resolve_freq(history, freq)
    table = None
    if model == "auto":
        table = backtest_models(history, freq, horizon, quantiles, candidates, seed=seed,
                                epochs=epochs, windows=windows)
        model = str(table.loc[0, "model"])
    forecaster = build_forecaster(model, seed=seed, epochs=epochs)
    forecasts = forecaster.fit(history, horizon, freq, quantiles).predict(history)
    keys = ["item_id"] + (["location_id"] if has_locations(history) else [])
    out = forecasts[keys + ["timestamp"] + qcols(quantiles)]
    return out.sort_values(keys + ["timestamp"], kind="stable").reset_index(drop=True), model, table


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--input", required=True, type=Path,
                        help="long-format CSV/Parquet, a store-item CSV, or an M5 folder/file")
    parser.add_argument("--output", required=True, type=Path, help="CSV to write the forecasts to")
    parser.add_argument("--freq", default="D", help="pandas frequency of the data: D, W, W-MON, h, MS ...")
    parser.add_argument("--horizon", required=True, type=int, help="steps to forecast per series")
    parser.add_argument("--quantiles", default=",".join(f"{q:g}" for q in QUANTILES),
                        help="comma-separated, e.g. 0.1,0.5,0.9 or 0.1,0.2,...,0.9")
    parser.add_argument("--model", default="auto", choices=("auto", *MODELS),
                        help="auto: backtest the candidates on the input and use the best (default)")
    parser.add_argument("--candidates", default=",".join(AUTO_CANDIDATES),
                        help=f"models --model auto backtests (any of {', '.join(MODELS)})")
    parser.add_argument("--backtest-windows", type=int, default=2,
                        help="rolling origins --model auto backtests over")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same forecasts")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of the neural models (default: recommended setting)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the command; bad input ends with exit code 2 and a one-paragraph message."""
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:   # InputFormatError is a ValueError
        log.debug("forecast failed", exc_info=True)
        print(f"echelon forecast: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from echelon.models.demand.formats import read_any

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quantiles = parse_quantiles(args.quantiles)
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = [c for c in candidates if c not in MODELS]
    if unknown:
        raise ValueError(f"--candidates: unknown model(s) {unknown}; choose from {', '.join(MODELS)}")

    history = read_any(args.input)
    n_series = history.groupby(SERIES).ngroups
    log.info("%s: %d rows, %d series, %s .. %s", args.input, len(history), n_series,
             history["timestamp"].min(), history["timestamp"].max())
    forecasts, chosen, table = forecast_frame(
        history, freq=args.freq, horizon=args.horizon, quantiles=quantiles, model=args.model,
        seed=args.seed, epochs=args.epochs, candidates=candidates, windows=args.backtest_windows)
    if table is not None:
        print(f"backtest on {args.input} (horizon {args.horizon}, {table.loc[0, 'windows']} rolling "
              "origin(s); wql = mean weighted quantile loss, lower is better):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"chosen model: {chosen}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    forecasts.to_csv(args.output, index=False)
    print(f"wrote {len(forecasts)} rows ({n_series} series x {args.horizon} steps, model {chosen}) "
          f"to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(
        prog="echelon forecast", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter))


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
