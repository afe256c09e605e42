"""Weekly training and nightly champion/challenger evaluation of the demand forecasters.

The evaluation window of a partition ds is the last `horizon` days of its history: origin = ds - horizon.
Every candidate is fit on data up to that origin only and scored on the window, so the wQL logged with a
model version is a true out-of-sample number; the registered model is that same fit (a pooled global model
conditions on each series' recent history at prediction time, so its weights being `horizon` days older
costs little). The champion, fit at an earlier origin, is scored on the same window from the same
origin: neither model has seen the window, and @champion moves only if the challenger's wQL is lower.
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
from echelon.models.demand.metrics import evaluate
from echelon.models.demand.plots import calibration_plot, fan_chart
from echelon.models.demand.report import report_dir
from echelon.models.demand.score import FEATURES, HORIZON, MODEL_NAME
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


def load_features(ds: str, max_series: int | None = None) -> pd.DataFrame:
    """The feature partition of ds in pandas: every series, or a sample of at most max_series series
    (default ECHELON_DEMAND_TRAIN_SERIES). The series keys are scanned batch by batch and only the
    sampled items' rows are read (a pyarrow dataset filter), so memory follows the sample, not the world."""
    import pyarrow.dataset as pads

    lake.read_manifest(FEATURES, ds)   # a clear error when the partition is absent
    limit = max_series or get_settings().demand.train_series or TRAIN_SERIES
    dataset = pads.dataset(str(FEATURES.partition(ds)), format="parquet")
    keys = pd.concat([batch.to_pandas().drop_duplicates()
                      for batch in dataset.to_batches(columns=SERIES, batch_size=1 << 20)]).drop_duplicates()
    items = sample_items(keys, limit)
    if items is not None:
        log.info("training on %d of %d series (%d items; ECHELON_DEMAND_TRAIN_SERIES=%d)",
                 keys["item_id"].isin(items).sum(), len(keys), len(items), limit)
    table = dataset.to_table(filter=None if items is None else pads.field("item_id").isin(items))
    features = table.to_pandas()
    features["date"] = pd.to_datetime(features["date"])
    return features


def canonical(features: pd.DataFrame) -> pd.DataFrame:
    """The canonical long frame (base.py) of the observed rows of a feature table."""
    observed = features[features["is_future"] == 0]
    cols = SERIES + ["date", "target"] + [c for c in COVARIATES if c in features.columns]
    return observed[cols].rename(columns={"date": "timestamp"}).reset_index(drop=True)


def as_of(features: pd.DataFrame, origin: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """The feature table as a forecaster at `origin` sees it: later rows are future rows without target."""
    window = features[features["date"] <= origin + pd.Timedelta(days=horizon)].copy()
    later = window["date"] > origin
    window.loc[later, "is_future"] = 1
    window.loc[later, "target"] = np.nan
    return window


def window(ds: str, horizon: int = HORIZON) -> pd.Timestamp:
    return pd.Timestamp(ds) - pd.Timedelta(days=horizon)


def fit_at(name: str, features: pd.DataFrame, origin: pd.Timestamp, horizon: int, seed: int):
    """A fresh candidate fit on everything up to `origin`, and its forecasts for the window after it."""
    from echelon.models.demand.forecast import build_forecaster

    model = build_forecaster(name, seed=seed, **model_params(name))
    history = canonical(features[features["date"] <= origin])
    if hasattr(model, "fit_features"):  # uses the published Spark features directly
        model.fit_features(features, horizon, "D", cutoff=origin)
        forecasts = model.predict_features(as_of(features, origin, horizon), origin=origin)
    else:
        model.fit(history, horizon, "D")
        future = canonical(as_of(features, origin, horizon).assign(is_future=0))
        future = future[future["timestamp"] > origin].drop(columns="target")
        forecasts = model.predict(history, future)
    return model, forecasts


def _log_evaluation(ds: str, name: str, history, forecasts, actuals, prefix: str = "") -> dict:
    import mlflow

    result = evaluate(forecasts, actuals, history)
    overall = {k: float(v) for k, v in result["overall"].iloc[0].items()}
    mlflow.log_metrics({f"{prefix}{k}": v for k, v in overall.items() if np.isfinite(v)})
    for segment, row in result["segments"].iterrows():
        for metric in ("wql", "coverage_80", "mase", "wape"):
            if metric in row and np.isfinite(row[metric]):
                mlflow.log_metric(f"{prefix}{segment}_{metric}", float(row[metric]))
    folder = report_dir(ds)
    fan = fan_chart(history, forecasts, folder / f"fan_{name}.png", actuals=actuals,
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
    features = load_features(ds)
    origin = window(ds, horizon)
    history = canonical(features[features["date"] <= origin])
    actuals = canonical(features[(features["date"] > origin)])
    client = MlflowClient(tracking.configure())
    with tracking.run("demand", ds, f"train-{name}", stage="train", model=name):
        started = time.time()
        model, forecasts = fit_at(name, features, origin, horizon, seed)
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


def score_version(version: str, features: pd.DataFrame, origin: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """Forecasts of a registered version from `origin`, through the same pyfunc path scoring uses."""
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    return model.predict(as_of(features, origin, horizon).drop(columns=[], errors="ignore"))


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
    features = load_features(ds)
    origin = window(ds, horizon)
    history = canonical(features[features["date"] <= origin])
    actuals = canonical(features[features["date"] > origin])
    scores = {}
    with tracking.run("demand", ds, "evaluate-and-promote", stage="evaluate"):
        for role, version in (("challenger", challenger), ("champion", champion)):
            if version is None:
                continue
            forecasts = score_version(version.version, features, origin, horizon)
            scores[role] = _log_evaluation(ds, role, history, forecasts, actuals, prefix=f"{role}_")["overall"]["wql"]
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
