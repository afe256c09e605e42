"""Weekly training and nightly champion/challenger evaluation of the demand forecasters.

The evaluation window of a partition ds is the last `horizon` days of its history: origin = ds - horizon.
Every candidate is fit on data up to that origin only and scored on the window, so the wQL logged with a
model version is a true out-of-sample number; the registered model is that same fit (a pooled global model
conditions on each series' recent history at prediction time, so its weights being `horizon` days older
costs little). The champion, fit at an earlier origin, is scored on the same window from the same
origin: neither model has seen the window, and @champion moves only if the challenger's wQL is lower.

Size: training and evaluation share the sampled, bucketed reading of the feature partition (sample_items,
item_buckets, read_items); the reading could move to its own module if a third user appears.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time

import numpy as np
import pandas as pd

from echelon import lake, tracking
from echelon.models.demand.base import SERIES
from echelon.models.demand.metrics import evaluate, series_summary
from echelon.models.demand.plots import calibration_plot, fan_chart, fan_series
from echelon.models.demand.report import report_dir
from echelon.models.demand.score import BUCKET_ROWS, FEATURES, HORIZON, MODEL_NAME
from echelon.settings import get_settings

log = logging.getLogger(__name__)
COVARIATES = ["price", "promo", "category"]


def candidates() -> list[str]:
    """Models trained at each retrain: ECHELON_DEMAND_CANDIDATES (comma separated), any of the models
    `echelon forecast` knows, e.g. "seasonal_naive,lightgbm,mqtransformer". Checked here, so a typo
    fails the `candidates` task with one line instead of a training task after the features were built."""
    from echelon.models.demand.forecast import MODELS

    names = get_settings().demand.candidates
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"ECHELON_DEMAND_CANDIDATES: unknown model(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(MODELS)}")
    return names


def model_params(name: str) -> dict:
    """Per-model overrides of the recommended settings: ECHELON_DEMAND_MODEL_PARAMS, a JSON object such
    as {"lightgbm": {"num_boost_round": 200}, "mqtransformer": {"epochs": 10}}."""
    return get_settings().demand.model_params.get(name, {})


def retrain_due(ds: str) -> bool:
    """ECHELON_DEMAND_RETRAIN: 'daily', or a weekday name for weekly retraining (default sunday).
    A registry without a champion always trains."""
    cadence = get_settings().demand.retrain.lower()
    if cadence == "daily" or tracking.alias_version(MODEL_NAME, tracking.CHAMPION) is None:
        return True
    return dt.date.fromisoformat(ds).strftime("%A").lower() == cadence


# Series a training night reads at most (ECHELON_DEMAND_TRAIN_SERIES): a larger world trains and backtests
# on a fixed sample of whole items, so training memory and time stop growing with the number of series
# (a 36,000-series feature partition is ~25 GB in pandas). Smaller worlds are read whole.
TRAIN_SERIES = 4000


def sample_items(keys: pd.DataFrame, limit: int) -> list[str] | None:
    """Items whose series (all their locations) make up at most `limit` series, chosen by a stable hash of
    the item id (the same sample night after night, whatever the row order); None: every series fits."""
    if len(keys) <= limit:
        return None
    per_item = keys.groupby("item_id").size()
    order = pd.util.hash_array(per_item.index.to_numpy(dtype=object)).argsort(kind="stable")
    counts = per_item.iloc[order]
    return sorted(counts.index[counts.cumsum() <= limit].tolist()) or [counts.index[0]]


def _dataset(ds: str):
    """The feature partition of ds as a pyarrow dataset (a clear error when it is absent)."""
    import pyarrow.dataset as pads

    lake.read_manifest(FEATURES, ds)
    return pads.dataset(str(FEATURES.partition(ds)), format="parquet")


def sampled_keys(dataset, max_series: int | None = None, counted: bool = False):
    """The series keys (scanned batch by batch) that a training night reads: every series, or whole
    items making up at most max_series series (default ECHELON_DEMAND_TRAIN_SERIES). Returns (the keys of
    the series read, the sampled items or None for all), and with `counted` the partition's series count."""
    limit = max_series or get_settings().demand.train_series or TRAIN_SERIES
    keys = pd.concat([batch.to_pandas().drop_duplicates()
                      for batch in dataset.to_batches(columns=SERIES, batch_size=1 << 20)]).drop_duplicates()
    every = len(keys)
    items = sample_items(keys, limit)
    if items is not None:
        log.info("training on %d of %d series (%d items; ECHELON_DEMAND_TRAIN_SERIES=%d)",
                 keys["item_id"].isin(items).sum(), len(keys), len(items), limit)
        keys = keys[keys["item_id"].isin(items)]
    keys = keys.reset_index(drop=True)
    return (keys, items, every) if counted else (keys, items)


def read_items(dataset, items: list[str] | None, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of these items (None: all), only `columns` (None: all), through a pyarrow filter."""
    import pyarrow.dataset as pads

    table = dataset.to_table(columns=columns, filter=None if items is None else pads.field("item_id").isin(items))
    features = table.to_pandas()
    features["date"] = pd.to_datetime(features["date"])
    return features


def load_features(ds: str, max_series: int | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """The feature partition of ds in pandas: every series, or a sample of at most max_series series
    (default ECHELON_DEMAND_TRAIN_SERIES), with only `columns` (None: all). The series keys are scanned
    batch by batch and only the sampled items' rows are read (a pyarrow dataset filter), so memory follows
    the sample, not the world."""
    dataset = _dataset(ds)
    return read_items(dataset, sampled_keys(dataset, max_series)[1], columns)


def item_buckets(keys: pd.DataFrame, max_series: int) -> list[list[str]]:
    """Whole items in groups of at most max_series series (an item with more series is a group alone),
    in item order: what an evaluation reads at a time."""
    buckets, current, size = [], [], 0
    for item, count in keys.groupby("item_id").size().sort_index().items():
        if current and size + count > max_series:
            buckets.append(current)
            current, size = [], 0
        current.append(item)
        size += count
    return buckets + ([current] if current else [])


def canonical(features: pd.DataFrame, after: pd.Timestamp | None = None,
              until: pd.Timestamp | None = None) -> pd.DataFrame:
    """The canonical long frame (base.py) of the observed rows of a feature table, dated in (after, until]
    where given. Only those columns and rows are copied (the feature table is wide)."""
    keep = features["is_future"] == 0
    if after is not None:
        keep &= features["date"] > after
    if until is not None:
        keep &= features["date"] <= until
    cols = SERIES + ["date", "target"] + [c for c in COVARIATES if c in features.columns]
    return features.loc[keep, cols].rename(columns={"date": "timestamp"}).reset_index(drop=True)


def as_of(features: pd.DataFrame, origin: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """The feature table as a forecaster at `origin` sees it: later rows are future rows without target."""
    window = features[features["date"] <= origin + pd.Timedelta(days=horizon)].copy()
    later = window["date"] > origin
    window.loc[later, "is_future"] = 1
    window.loc[later, "target"] = np.nan
    return window


def window(ds: str, horizon: int = HORIZON) -> pd.Timestamp:
    return pd.Timestamp(ds) - pd.Timedelta(days=horizon)


# The feature-table columns a model without `fit_features` reads (the canonical frame and its covariates):
# its training night reads only these, not the ~75 columns of the table.
CANONICAL_COLUMNS = SERIES + ["date", "is_future", "target"] + COVARIATES


# The nightly job's own settings where they differ from `echelon forecast`'s: LightGBM reads the published
# Spark feature table (categories, prices, cold starts) with the settings the store-item accuracy benchmark
# measures (250k rows, 255 bins), not the interactive tabular ones build_forecaster picks for any frequency.
NIGHTLY_PARAMS = {"lightgbm": {"features": "spark"}}


def new_candidate(name: str, seed: int):
    from echelon.models.demand.forecast import build_forecaster

    return build_forecaster(name, seed=seed, **{**NIGHTLY_PARAMS.get(name, {}), **model_params(name)})


def fit_at(name: str, features: pd.DataFrame, origin: pd.Timestamp, horizon: int, seed: int, model=None,
           dataset=None, items: list[str] | None = None):
    """A fresh candidate (or `model`, unfitted) fit on everything up to `origin`, and its forecasts for
    the window after it. dataset (+ items): the feature partition, for a model that reads it itself in
    bounded memory (LightGBM: only its sampled rows and columns; `features` then needs only the canonical
    columns)."""
    model = model or new_candidate(name, seed)
    if dataset is not None and hasattr(model, "fit_features"):
        model.fit_features(dataset, horizon, "D", cutoff=origin, items=items)
        forecasts = model.predict_features(dataset, origin=origin, items=items)
    elif hasattr(model, "fit_features"):  # uses the published Spark features directly
        model.fit_features(features, horizon, "D", cutoff=origin)
        forecasts = model.predict_features(as_of(features, origin, horizon), origin=origin)
    else:
        history = canonical(features, until=origin)
        model.fit(history, horizon, "D")
        # the known covariates of the window's dates (every row dated in it, observed or planned)
        dates = features["date"]
        planned = features.loc[(dates > origin) & (dates <= origin + pd.Timedelta(days=horizon)),
                               [c for c in CANONICAL_COLUMNS if c in features.columns and c not in ("is_future", "target")]]
        future = planned.rename(columns={"date": "timestamp"}).reset_index(drop=True)
        forecasts = model.predict(history, future)
    return model, forecasts


def _log_evaluation(ds: str, name: str, history, forecasts, actuals, prefix: str = "",
                    summary: pd.DataFrame | None = None) -> dict:
    """Metrics (overall, per segment) and plots of one model's window forecasts in the active run.
    summary: the history's metrics.series_summary, computed bucket by bucket; `history` then only needs
    the rows the fan chart shows (each series' last FAN_CONTEXT days)."""
    import mlflow

    result = evaluate(forecasts, actuals, None if summary is not None else history, summary=summary)
    overall = {k: float(v) for k, v in result["overall"].iloc[0].items()}
    mlflow.log_metrics({f"{prefix}{k}": v for k, v in overall.items() if np.isfinite(v)})
    for segment, row in result["segments"].iterrows():
        for metric in ("wql", "coverage_80", "mase", "wape"):
            if metric in row and np.isfinite(row[metric]):
                mlflow.log_metric(f"{prefix}{segment}_{metric}", float(row[metric]))
    folder = report_dir(ds)
    fan = fan_chart(history, forecasts, folder / f"fan_{name}.png", actuals=actuals, context_steps=FAN_CONTEXT,
                    series=None if summary is None else fan_series(summary["volume"]),
                    title=f"{name}: backtest window after {forecasts['timestamp'].min().date() - pd.Timedelta(days=1)}")
    calib = calibration_plot(forecasts, actuals, folder / f"calibration_{name}.png", title=f"{name}: calibration")
    mlflow.log_artifact(str(fan), "plots")
    mlflow.log_artifact(str(calib), "plots")
    segments = result["segments"].reset_index()
    return {"overall": overall, "segments": segments}


def candidates_due(ds: str, force: bool = False) -> list[str]:
    """The candidates to train for partition ds: none when no retraining is due (the champion keeps
    scoring), else every configured candidate."""
    ds = lake.parse_ds(ds)
    if not force and not retrain_due(ds):
        log.info("no retraining on %s (cadence %s); the champion keeps scoring", ds,
                 get_settings().demand.retrain)
        return []
    return candidates()


def log_learning_curves(model) -> int:
    """Each of the model's `learning_curves` (name -> one value per iteration/epoch) as an MLflow
    metric history in the active run, so the UI plots it. Returns the number of points logged."""
    import mlflow
    from mlflow.entities import Metric

    curves = getattr(model, "learning_curves", None) or {}
    stamp = int(time.time() * 1000)
    points = [Metric(name, float(value), stamp, step)
              for name, values in curves.items() for step, value in enumerate(values) if np.isfinite(value)]
    for start in range(0, len(points), 1000):   # MLflow's batch limit
        mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=points[start:start + 1000])
    return len(points)


def train_candidate(ds: str, name: str, horizon: int = HORIZON, seed: int | None = None) -> dict:
    """Fit one candidate at the window origin, log its run (train-<name>) and register the version.
    Returns its row of the backtest table: model, version, fit_seconds, wql, coverage_80, mase, wape."""
    import mlflow
    from mlflow import MlflowClient

    from echelon.models.demand.pyfunc import log_forecaster
    from echelon.models.demand.score import history_days

    ds = lake.parse_ds(ds)
    seed = get_settings().seed if seed is None else seed
    model = new_candidate(name, seed)
    # every model's history gets only the canonical columns (a fraction of the table's memory); a model
    # with fit_features reads its own rows from the partition (models/demand/lgbm_rows.py)
    dataset = _dataset(ds)
    items = sampled_keys(dataset)[1]
    features = read_items(dataset, items, CANONICAL_COLUMNS)
    origin = window(ds, horizon)
    history = canonical(features, until=origin)
    actuals = canonical(features, after=origin)
    client = MlflowClient(tracking.configure())
    with tracking.run("demand", ds, f"train-{name}", stage="train", model=name):
        started = time.time()
        model, forecasts = fit_at(name, features, origin, horizon, seed, model=model, dataset=dataset, items=items)
        seconds = time.time() - started
        mlflow.log_params({"model": name, "horizon": horizon, "origin": origin.date().isoformat(),
                           "seed": seed, "train_rows": len(history), "series": history[SERIES].drop_duplicates().shape[0],
                           "config": repr(model)[:500], **{f"param_{k}": v for k, v in model_params(name).items()}})
        mlflow.log_metric("fit_seconds", seconds)
        log_learning_curves(model)
        scored = _log_evaluation(ds, name, history, forecasts, actuals)
        info = log_forecaster(model, name="model", registered_model_name=MODEL_NAME,
                              metadata={"origin": origin.date().isoformat(), "ds": ds})
        version = str(info.registered_model_version)
        days = history_days(model)
        for key, value in {"model_type": name, "ds": ds, "origin": origin.date().isoformat(),
                           "wql": f"{scored['overall']['wql']:.6f}",
                           "history_days": "all" if days is None else str(days)}.items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
    row = {"model": name, "version": version, "fit_seconds": round(seconds, 1),
           **{k: scored["overall"].get(k) for k in ("wql", "coverage_80", "mase", "wape")}}
    log.info("trained %s: wQL %.4f, coverage %.3f in %.1f s (version %s)", name, row["wql"],
             row["coverage_80"], seconds, version)
    return row


def choose_challenger(ds: str, results: list[dict]) -> dict:
    """The candidate with the lowest wQL becomes @challenger; the table goes to the run report."""
    ds = lake.parse_ds(ds)
    results = [r for r in results or [] if r]
    if not results:
        return {"trained": False, "ds": ds}
    table = pd.DataFrame(results).sort_values("wql", kind="stable")
    report_dir(ds).mkdir(parents=True, exist_ok=True)
    table.to_csv(report_dir(ds) / "backtest.csv", index=False)
    best = table.iloc[0]
    tracking.set_alias(MODEL_NAME, tracking.CHALLENGER, best["version"])
    # evaluate_and_promote reads this, not the alias: parallel backfill runs each move @challenger
    (report_dir(ds) / "challenger.json").write_text(json.dumps({"version": str(best["version"]), "model": best["model"]}))
    return {"trained": True, "ds": ds, "challenger": {"model": best["model"], "version": str(best["version"]),
                                                       "wql": float(best["wql"])}, "candidates": results}


def train(ds: str, horizon: int = HORIZON, names: list[str] | None = None, seed: int | None = None,
          force: bool = False) -> dict:
    """Every candidate in this process, one after another (the DAG maps them to parallel tasks)."""
    from echelon.progress import track

    due = candidates_due(ds, force)
    names = (names or due) if due else []
    rows = [train_candidate(ds, name, horizon, seed) for name in track(names, "train", unit="candidate")]
    return choose_challenger(ds, rows)


def score_version(version: str, features: pd.DataFrame, origin: pd.Timestamp, horizon: int, model=None) -> pd.DataFrame:
    """Forecasts of a registered version (or its loaded pyfunc `model`) from `origin`, through the same
    pyfunc path scoring uses."""
    import mlflow

    model = model or mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    return model.predict(as_of(features, origin, horizon))


# Evaluation reads the sampled series in buckets of whole items of about this many feature rows (as nightly
# scoring does, models/demand/score.py), so its memory is one bucket's, whatever the partition's size.
EVAL_BUCKET_ROWS = BUCKET_ROWS
FAN_CONTEXT = 56             # days of history a fan chart shows before the window


def last_observed(dataset, until: pd.Timestamp) -> pd.Timestamp:
    """The last observed date on or before `until` in the partition (two columns scanned)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    rows = dataset.to_table(columns=["date"], filter=(pads.field("is_future") == 0)
                            & (pads.field("date") <= pa_date(until)))
    return pd.Timestamp(pc.max(rows["date"]).as_py())


def pa_date(stamp: pd.Timestamp):
    import pyarrow as pa

    return pa.scalar(pd.Timestamp(stamp).date(), pa.date32())


def evaluate_in_buckets(ds: str, origin: pd.Timestamp, horizon: int, models: dict,
                        bucket_rows: int = EVAL_BUCKET_ROWS) -> dict:
    """Every model's forecasts of the window after `origin` on the series a training night reads, read and
    scored bucket by bucket (whole items, about bucket_rows feature rows each). Kept per bucket: the
    forecasts, the actuals, the history's series_summary and each series' last FAN_CONTEXT days, all a
    few rows per series. models: role -> (version, loaded pyfunc or None). Metrics pooled from the
    buckets equal those of one pass (metrics.series_summary); a model that pools across series when it
    predicts (the seasonal naive's interval calibration) pools within a bucket, as nightly scoring does.
    Returns {"forecasts": {role: frame}, "actuals", "summary", "history" (the fan charts' tails)}."""
    from echelon.progress import track

    dataset = _dataset(ds)
    keys, _, every = sampled_keys(dataset, counted=True)
    rows_per_series = max(1, lake.read_manifest(FEATURES, ds)["rows"] // max(1, every))
    buckets = item_buckets(keys, max(1, bucket_rows // rows_per_series))
    last = last_observed(dataset, origin)
    out = {"forecasts": {role: [] for role in models}, "actuals": [], "summary": [], "history": []}
    for items in track(buckets, "evaluate", unit="bucket"):
        features = read_items(dataset, items)
        history = canonical(features, until=origin)
        out["actuals"].append(canonical(features, after=origin))
        out["summary"].append(series_summary(history, last=last))
        out["history"].append(history.sort_values(SERIES + ["timestamp"], kind="stable")
                              .groupby(SERIES, sort=False).tail(FAN_CONTEXT))
        for role, (version, model) in models.items():
            out["forecasts"][role].append(score_version(version, features, origin, horizon, model=model))
        del features, history
    log.info("evaluated %d series in %d bucket(s) of at most %d rows", len(keys), len(buckets), bucket_rows)
    return {"forecasts": {role: pd.concat(parts, ignore_index=True) for role, parts in out["forecasts"].items()},
            **{k: pd.concat(out[k], ignore_index=k != "summary") for k in ("actuals", "summary", "history")}}


def evaluate_and_promote(ds: str, horizon: int = HORIZON) -> dict:
    """Score @challenger and @champion on the same window; move @champion only if the challenger wins."""
    import mlflow

    ds = lake.parse_ds(ds)
    tracking.configure()
    trained = report_dir(ds) / "challenger.json"
    if not trained.exists():
        log.info("no new challenger for %s: nothing to evaluate", ds)
        return {"evaluated": False, "ds": ds}
    from mlflow import MlflowClient

    challenger = MlflowClient().get_model_version(MODEL_NAME, json.loads(trained.read_text())["version"])
    champion = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return {"evaluated": False, "ds": ds, "reason": "challenger is already champion"}
    origin = window(ds, horizon)
    roles = {role: (version.version, mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version.version}"))
             for role, version in (("challenger", challenger), ("champion", champion)) if version is not None}
    pooled = evaluate_in_buckets(ds, origin, horizon, roles)
    scores = {}
    with tracking.run("demand", ds, "evaluate-and-promote", stage="evaluate"):
        for role in roles:
            scores[role] = _log_evaluation(ds, role, pooled["history"], pooled["forecasts"][role], pooled["actuals"],
                                           prefix=f"{role}_", summary=pooled["summary"])["overall"]["wql"]
        promoted = tracking.promote(MODEL_NAME, challenger.version, scores["challenger"], scores.get("champion"))
        mlflow.log_params({"challenger_version": challenger.version,
                           "champion_version": champion.version if champion else "none",
                           "window_origin": origin.date().isoformat(), "promoted": promoted})
    outcome = {"evaluated": True, "ds": ds, "window": f"{(origin + pd.Timedelta(days=1)).date()}..{ds}",
               "challenger": {"version": challenger.version, "model": challenger.tags.get("model_type"),
                              "wql": scores["challenger"]},
               "champion_before": None if champion is None else {
                   "version": champion.version, "model": champion.tags.get("model_type"), "wql": scores["champion"]},
               "promoted": promoted}
    report_dir(ds).mkdir(parents=True, exist_ok=True)
    (report_dir(ds) / "promotion.json").write_text(json.dumps(outcome, indent=2, default=str))
    log.info("evaluate_and_promote %s: %s", ds, outcome)
    return outcome
