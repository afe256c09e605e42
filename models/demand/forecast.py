"""`echelon forecast`: quantile forecasts for any user file (long, store-item or M5 format).

Size: the whole `echelon forecast` tool: argument checks, the auto backtest, the ensemble and the
rule that chooses, kept together so the command reads top to bottom.

    echelon forecast --input sales.csv --freq D --horizon 28 --quantiles 0.1,0.2,...,0.9 \\
        --output forecasts.csv [--model auto|naive|seasonal_naive|autoets|autotheta|lightgbm|tft|...] \\
        [--candidates a,b,c] [--backtest-windows N] [--seed N] [--epochs N]
    python -m echelon.models.demand.forecast ...   (the same command without the console script)

Writes `item_id[, location_id], timestamp, q_...` for the `horizon` steps after each series' last
timestamp. `--model auto` backtests the candidate models (auto_candidates: the statistical ones always,
LightGBM with enough history, the MQ forecasters on big data) over rolling origins
half a horizon apart on the input itself (4, more on small inputs so that a few hundred forecasts are
scored), adds the median of the best three as an ensemble candidate,
prints the table (wQL, P10-P90 coverage, MASE, WAPE, forecast volatility), and forecasts with the
lowest mean weighted quantile loss (wQL) -- unless it is within 2 % of the best naive baseline, which
then ships instead (`choose`). Bad input (check_history) ends with one line and exit code 2.
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

from echelon.models.demand.base import QUANTILES, SERIES, canonical, qcols, sort_quantiles
from echelon.models.demand.metrics import forecast_volatility, scores

log = logging.getLogger(__name__)

GLUON = ("tft", "deepar", "feedforward")
STATS = ("naive", "seasonal_naive", "autoets", "autotheta")
BASELINES = ("naive", "seasonal_naive")
MQ = ("mqcnn", "mqtransformer")          # models/demand/mq
MODELS = (*STATS, "lightgbm", *GLUON, *MQ)
ENSEMBLE_SIZE = 3                        # the ensemble candidate: median of the best three quantile forecasts
PARSIMONY = 0.02                         # a model must beat the best naive baseline by 2 % wQL to replace it
# global neural models join auto's candidates from this size on: below it their CPU cost (one ~2 min fit per
# backtest window on 400 daily series, 2 cores) breaks an interactive run's budget; --candidates adds them
MQ_MIN_SERIES, MQ_MIN_ROWS = 1_000, 100_000
# LightGBM (tabular features, any frequency) joins auto's candidates from this many observations on: one
# pooled model needs a few thousand training rows to learn more than the naive forecasts already give
LGBM_MIN_ROWS = 2_000
# auto scores at least this many forecasts per candidate (series x horizon x windows): with a few series,
# four windows score a few dozen points and the choice follows noise (elnino, one series: seasonal naive won
# 4 windows, AutoETS 20 and the held-out test by 14 %); small inputs are cheap, so they get more windows
DEFAULT_WINDOWS, MIN_SCORED, MAX_WINDOWS = 4, 240, 20
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
    elif name in STATS:
        from echelon.models.demand.stats import StatsForecaster

        return StatsForecaster(name, seed=seed, **params)
    elif name == "lightgbm":
        from echelon.models.demand.lgbm import LightGBMForecaster as klass

        params = {"features": "tabular", **params}      # any frequency, no Spark (the nightly job keeps Spark)
    elif name in MQ:
        from echelon.models.demand.mq import MQCNNForecaster, MQTransformerForecaster

        klass = MQCNNForecaster if name == "mqcnn" else MQTransformerForecaster
        params = {**({"epochs": epochs} if epochs else {}), **params}
    else:
        raise ValueError(f"unknown model '{name}'; choose from auto, {', '.join(MODELS)}")
    return klass(seed=seed, **params) if _accepts(klass, "seed") else klass(**params)


def has_locations(history: pd.DataFrame) -> bool:
    return "location_id" in history.columns and bool((history["location_id"] != "all").any())


# ----------------------------------------------------------------------------------------------
# Input checks: one line naming what is wrong, before any model runs
# ----------------------------------------------------------------------------------------------

def check_history(history: pd.DataFrame, freq: str, horizon: int) -> None:
    """Timestamps off the frequency's grid, gaps inside a series, a frequency the spacing contradicts,
    an all-zero input and a horizon longer than the history are errors (ValueError, one line); duplicate
    rows and missing targets are the readers' (formats.py). Short or constant series are not errors:
    the models fall back per series."""
    offset = to_offset(freq)
    stamps = pd.DatetimeIndex(history["timestamp"])
    grid = pd.date_range(stamps.min(), stamps.max(), freq=offset)
    position = grid.searchsorted(stamps)
    off_grid = (position >= len(grid)) | (grid[np.minimum(position, len(grid) - 1)] != stamps)
    if off_grid.any():
        raise ValueError(f"irregular timestamps: {int(off_grid.sum())} are not on the '{freq}' grid, "
                         f"e.g. {stamps[off_grid][:3].astype(str).tolist()}")
    frame = history[SERIES].assign(position=position).sort_values(SERIES + ["position"], kind="stable")
    steps = frame.groupby(SERIES, sort=False)["position"].diff().dropna()
    if len(steps) and steps.min() > 1:
        raise ValueError(f"--freq {freq} contradicts the data: consecutive timestamps are at least "
                         f"{int(steps.min())} x {freq} apart; pass the data's own frequency")
    gaps = steps[steps > 1]
    if len(gaps):
        row = frame.loc[gaps.index[0]]
        raise ValueError(f"irregular timestamps: {len(gaps)} gap(s) inside series, e.g. item "
                         f"{row['item_id']!r} misses {int(gaps.iloc[0]) - 1} period(s) before "
                         f"{grid[int(row['position'])].date()}: fill missing periods (0 for no sales)")
    if not history["target"].astype(float).abs().gt(0).any():
        raise ValueError("every target is zero: there is nothing to forecast")
    longest = int(history.groupby(SERIES).size().max())
    if horizon > longest:
        raise ValueError(f"--horizon {horizon} is longer than the history (the longest series has "
                         f"{longest} steps of {freq})")


# ----------------------------------------------------------------------------------------------
# Backtest (auto)
# ----------------------------------------------------------------------------------------------

def backtest_stride(horizon: int) -> int:
    """Origins half a horizon apart: consecutive windows forecast the same periods (so volatility is
    measured) while a few windows still cover more than two horizons of the most recent data."""
    return max(1, -(-horizon // 2))


def usable_windows(history: pd.DataFrame, freq: str, horizon: int, windows: int,
                   stride: int | None = None) -> int:
    """How many of the `windows` most recent origins (`stride` apart, the newest one horizon before
    the end) leave at least two horizons of history before them."""
    offset, stride = to_offset(freq), stride or horizon
    last, first = history["timestamp"].max(), history["timestamp"].min()
    return sum(last - offset * (horizon + stride * w) >= first + offset * (2 * horizon)
               for w in range(windows))


def selection_windows(history: pd.DataFrame, horizon: int) -> int:
    """auto's default window count: DEFAULT_WINDOWS, raised on small inputs until about MIN_SCORED
    forecasts are scored (at most MAX_WINDOWS)."""
    per_window = history.groupby(SERIES).ngroups * horizon
    return max(DEFAULT_WINDOWS, min(MAX_WINDOWS, -(-MIN_SCORED // per_window)))


def auto_candidates(history: pd.DataFrame, freq: str) -> list[str]:
    """auto's rule: the four statistical models always; LightGBM (at any frequency) from LGBM_MIN_ROWS
    observations on; the MQ forecasters (when installed) from MQ_MIN_SERIES series and MQ_MIN_ROWS
    observations on, since a global neural model needs many series to learn a shared pattern and loses
    to local models below."""
    names = [*STATS]
    if len(history) >= LGBM_MIN_ROWS:
        names.append("lightgbm")
    else:
        log.info("auto: leaving lightgbm out (%d observations < %d)", len(history), LGBM_MIN_ROWS)
    big = history.groupby(SERIES).ngroups >= MQ_MIN_SERIES and len(history) >= MQ_MIN_ROWS
    names += [m for m in MQ if m in MODELS and big]
    return names


def _row(name: str, joined: pd.DataFrame, quantiles: Sequence[float], windows: int, seconds: float) -> dict:
    summary = scores(joined, quantiles)
    return {"model": name, "wql": summary["wql"], "coverage": summary.get("coverage_80", np.nan),
            "mase": summary.get("mase", np.nan), "wape": summary.get("wape", np.nan),
            "volatility": forecast_volatility(joined), "windows": windows, "seconds": round(seconds, 1)}


def ensemble_name(members: Sequence[str]) -> str:
    return "ensemble:" + "+".join(members)


def median_forecast(frames: Sequence[pd.DataFrame], quantiles: Sequence[float],
                    keys: Sequence[str]) -> pd.DataFrame:
    """The median, quantile by quantile, of several models' forecasts of the same rows, sorted again."""
    stacked = pd.concat([f[list(keys) + qcols(quantiles)] for f in frames], ignore_index=True)
    combined = stacked.groupby(list(keys), sort=False)[qcols(quantiles)].median().reset_index()
    return sort_quantiles(combined, quantiles)


def backtest_models(history: pd.DataFrame, freq: str, horizon: int, quantiles: Sequence[float],
                    candidates: Sequence[str], *, seed: int = 0, epochs: int | None = None,
                    windows: int | None = None, forecasters: dict | None = None) -> pd.DataFrame:
    """One row per candidate (and the ensemble of the best ENSEMBLE_SIZE when there are that many):
    pooled mean wQL, coverage of the outer quantiles, MASE, WAPE and volatility over `windows` (None:
    selection_windows, 4 or more on small inputs) rolling origins `backtest_stride` apart
    (models/demand/backtest.py), and the time it took. Sorted best first.
    `forecasters`, when given, receives each candidate's forecaster (e.g. LightGBM keeps its feature
    table for the final fit)."""
    from echelon.models.demand.backtest import backtest

    stride = min(backtest_stride(horizon), horizon)
    usable = usable_windows(history, freq, horizon, windows or selection_windows(history, horizon), stride)
    if usable == 0:
        raise ValueError(f"--model auto needs at least {3 * horizon} steps of history to backtest a "
                         f"horizon of {horizon}; choose a model with --model")
    from echelon.progress import track

    rows, forecasts = [], {}
    forecasters = {} if forecasters is None else forecasters
    for name in track(list(candidates), "auto backtest", unit="model"):
        started = time.perf_counter()
        forecasters[name] = build_forecaster(name, seed=seed, epochs=epochs)
        result = backtest(forecasters[name], history, horizon,
                          n_windows=usable, freq=freq, step=stride, quantiles=quantiles)
        forecasts[name] = result.forecasts
        rows.append(_row(name, result.forecasts, quantiles, usable, time.perf_counter() - started))
        log.info("auto: %s mean wQL %.4f over %d window(s)", name, rows[-1]["wql"], usable)
    if len(rows) >= ENSEMBLE_SIZE:
        best = [r["model"] for r in sorted(rows, key=lambda r: r["wql"])[:ENSEMBLE_SIZE]]
        keys = SERIES + ["timestamp", "origin"]
        joined = median_forecast([forecasts[m] for m in best], quantiles, keys).merge(
            forecasts[best[0]][keys + ["target", "mase_scale"]], on=keys, how="inner")
        rows.append(_row(ensemble_name(best), joined, quantiles, usable, 0.0))
    return pd.DataFrame(rows).sort_values("wql", kind="stable").reset_index(drop=True)


def choose(table: pd.DataFrame) -> str:
    """The lowest wQL, except that a model within PARSIMONY of the best naive baseline does not replace
    it (a baseline is simpler and as good); so auto never ships a loser to the baselines it ran."""
    best = str(table.loc[0, "model"])
    baselines = table[table["model"].isin(BASELINES)]
    if len(baselines) and best not in BASELINES:
        floor = float(baselines["wql"].min())
        if float(table.loc[0, "wql"]) > (1 - PARSIMONY) * floor:
            return str(baselines.iloc[0]["model"])
    return best


# ----------------------------------------------------------------------------------------------
# The pure function behind the command
# ----------------------------------------------------------------------------------------------

def fit_predict(model: str, history: pd.DataFrame, freq: str, horizon: int, quantiles: Sequence[float],
                *, seed: int = 0, epochs: int | None = None, forecasters: dict | None = None) -> pd.DataFrame:
    """Forecasts of one model, or of an ensemble (the median of its members' forecasts). `forecasters`:
    unfitted instances by name to fit (the backtest's, with what they cached), else fresh ones."""
    if model.startswith("ensemble:"):
        members = model.split(":", 1)[1].split("+")
        frames = [fit_predict(m, history, freq, horizon, quantiles, seed=seed, epochs=epochs,
                              forecasters=forecasters) for m in members]
        return median_forecast(frames, quantiles, SERIES + ["timestamp"])
    forecaster = (forecasters or {}).get(model) or build_forecaster(model, seed=seed, epochs=epochs)
    return forecaster.fit(history, horizon, freq, quantiles).predict(history)


def forecast_frame(history: pd.DataFrame, *, freq: str, horizon: int,
                   quantiles: Sequence[float] = QUANTILES, model: str = "auto", seed: int = 0,
                   epochs: int | None = None, candidates: Sequence[str] | None = None,
                   windows: int | None = None) -> tuple[pd.DataFrame, str, pd.DataFrame | None]:
    """Canonical history -> (forecasts in the output layout, chosen model, backtest table or None).
    `candidates` None: auto's own rule (auto_candidates)."""
    if horizon < 1:
        raise ValueError(f"--horizon must be at least 1 (got {horizon})")
    freq = resolve_freq(history, freq)
    check_history(canonical(history), freq, horizon)
    table, forecasters = None, {}
    if model == "auto":
        candidates = list(candidates) if candidates else auto_candidates(history, freq)
        table = backtest_models(history, freq, horizon, quantiles, candidates, seed=seed,
                                epochs=epochs, windows=windows, forecasters=forecasters)
        model = choose(table)
    forecasts = fit_predict(model, history, freq, horizon, quantiles, seed=seed, epochs=epochs,
                            forecasters=forecasters)
    keys = ["item_id"] + (["location_id"] if has_locations(history) else [])
    out = forecasts[keys + ["timestamp"] + qcols(quantiles)]
    return out.sort_values(keys + ["timestamp"], kind="stable").reset_index(drop=True), model, table


# The longest horizon a forecast may ask for: ten years of days (a longer one overflowed pandas' timestamps
# after minutes of work instead of failing at once).
MAX_HORIZON = 3660


def horizon_steps(text: str) -> int:
    """--horizon: an integer up to MAX_HORIZON (argparse turns the error into exit 2 naming the flag); one
    below 1 is refused by forecast_frame, which every caller goes through."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of steps, got {text!r}") from None
    if value > MAX_HORIZON:
        raise argparse.ArgumentTypeError(f"at most {MAX_HORIZON} steps, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--input", required=True, type=Path,
                        help="long-format CSV/Parquet, a store-item CSV, or an M5 folder/file")
    parser.add_argument("--output", required=True, type=Path, help="CSV to write the forecasts to")
    parser.add_argument("--freq", default="D", help="pandas frequency of the data: D, W, W-MON, h, MS ...")
    parser.add_argument("--horizon", required=True, type=horizon_steps,
                        help=f"steps to forecast per series (1..{MAX_HORIZON})")
    parser.add_argument("--date-format", default=None,
                        help="the input's date format (strptime codes, e.g. %%d/%%m/%%Y); required where its "
                             "dates read both day-first and month-first (every day <= 12)")
    parser.add_argument("--quantiles", default=",".join(f"{q:g}" for q in QUANTILES),
                        help="comma-separated, e.g. 0.1,0.5,0.9 or 0.1,0.2,...,0.9")
    parser.add_argument("--model", default="auto", choices=("auto", *MODELS),
                        help="auto: backtest the candidates on the input and use the best (default)")
    parser.add_argument("--candidates", default=None,
                        help=f"models --model auto backtests (any of {', '.join(MODELS)}); default: the "
                             f"statistical models, LightGBM from {LGBM_MIN_ROWS} observations, the MQ models "
                             "on big data")
    parser.add_argument("--backtest-windows", type=int, default=None,
                        help=f"rolling origins --model auto backtests over, half a horizon apart (default "
                             f"{DEFAULT_WINDOWS}, more on small inputs, up to {MAX_WINDOWS}, so that about "
                             f"{MIN_SCORED} forecasts are scored)")
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
        # name the input once: the readers' messages already start with it, check_history's do not
        where = "" if str(args.input) in str(exc) else f"{args.input}: "
        print(f"echelon forecast: error: {where}{exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from echelon.formats import read_any

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quantiles = parse_quantiles(args.quantiles)
    candidates = [c.strip() for c in (args.candidates or "").split(",") if c.strip()]
    unknown = [c for c in candidates if c not in MODELS]
    if unknown:
        raise ValueError(f"--candidates: unknown model(s) {unknown}; choose from {', '.join(MODELS)}")

    history = read_any(args.input, getattr(args, "date_format", None))
    n_series = history.groupby(SERIES).ngroups
    log.info("%s: %d rows, %d series, %s .. %s", args.input, len(history), n_series,
             history["timestamp"].min(), history["timestamp"].max())
    forecasts, chosen, table = forecast_frame(
        history, freq=args.freq, horizon=args.horizon, quantiles=quantiles, model=args.model,
        seed=args.seed, epochs=args.epochs, candidates=candidates, windows=args.backtest_windows)
    if table is not None:
        print(f"backtest on {args.input} (horizon {args.horizon}, {table.loc[0, 'windows']} rolling "
              "origin(s); volatility = mean move of a period's P50 between consecutive origins / mean |y|; "
              "wql = mean weighted quantile loss, lower is better):")
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
