"""The damage batch steps around the scoring: a batch's description, the manifest gate, the champion to
score with (and its per-worker copy with the gallery overrides), the batch's report folder, and the
MLflow log of a scored batch. The scoring itself (Spark over the image paths, gallery refresh, publish)
is steps.score, which joins this to the jobs layer."""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import pandas as pd

from echelon import lake, settings, tracking
from echelon.catalog.damage import MANIFESTS
from echelon.models.damage.overrides import load_overrides
from echelon.models.damage.training import MODEL_NAME

log = logging.getLogger(__name__)
report_dir = functools.partial(settings.report_dir, "damage", by="batch")


def batch_info(ds: str, batch_id: str, manifest: str) -> dict:
    if not batch_id or not manifest:
        raise ValueError(f"a batch needs a batch_id and a manifest path, got {batch_id!r} and {manifest!r}")
    return {"ds": lake.parse_ds(ds), "batch_id": settings.safe_id(batch_id, "batch_id"),
            "manifest": str(Path(manifest).resolve())}


def gate_manifest(batch: dict) -> dict:
    """Gate the manifest as a table (columns, rows); image-level problems are quarantined later."""
    from echelon.expectations.gate import validate
    from echelon.models.damage import images as im
    from echelon.spark import get_spark

    path = Path(batch["manifest"])
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise im.ManifestError(f"batch {batch['batch_id']}: manifest {path} cannot be read: {error}") from None
    spark_frame = get_spark("damage-gate").createDataFrame(frame.fillna("").astype(str))
    result = validate(spark_frame, MANIFESTS.suite, f"{MANIFESTS}/batch={batch['batch_id']}", batch["ds"])
    return {**batch, "rows": result.rows}


def champion_uri() -> tuple[str, str]:
    version = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if version is None:
        raise LookupError(f"registered model {MODEL_NAME!r} has no @{tracking.CHAMPION}: run the damage_training "
                          f"DAG (or `echelon damage step train/evaluate_and_promote`) first")
    return f"models:/{MODEL_NAME}/{version.version}", str(version.version)


@functools.lru_cache(maxsize=2)
def _worker_model(model_uri: str):
    from echelon.models.damage.pyfunc import load_damage_model

    tracking.configure()
    model = load_damage_model(model_uri)
    model.galleries.update(load_overrides())
    return model


def _score_chunk(model_uri: str, chunk: pd.DataFrame) -> pd.DataFrame:
    from echelon.models.damage import images as im

    model = _worker_model(model_uri)
    signals = model.signals(im.load_many(list(chunk["file"]), model.size), chunk["item_id"])
    return pd.concat([chunk[["image_id"]].reset_index(drop=True), signals], axis=1)


def log_batch(batch: dict) -> dict:
    """Log a scored batch to MLflow: counts, rates, the sideline and quarantine lists, a contact sheet
    of its top-scored images, and ROC/PR curves when the batch is labelled."""
    import tempfile

    import mlflow

    from echelon.models.damage import plots

    folder = report_dir(batch["batch_id"])
    outcome = json.loads((folder / "outcome.json").read_text())
    scores = pd.read_csv(folder / "scores.csv", dtype={"image_id": str, "item_id": str})
    with tracking.run("damage", batch["ds"], f"batch-{batch['batch_id']}", stage="score", batch_id=batch["batch_id"]):
        mlflow.log_params({"batch_id": batch["batch_id"], "manifest": batch["manifest"],
                           "model_version": outcome["model_version"], "refreshed": ",".join(outcome["refreshed"]) or "none",
                           "threshold_rule": outcome.get("threshold_rule", "observed"), "threshold": outcome.get("threshold")})
        mlflow.log_metrics({"images": outcome["scored"], "quarantined": outcome["quarantined"],
                            "sidelined": outcome["sidelined"],
                            "sideline_rate": outcome["sidelined"] / max(outcome["scored"], 1),
                            "images_per_second": outcome["images_per_second"]})
        with tempfile.TemporaryDirectory() as tmp:
            if len(scores):
                plots.contact_sheet(scores, dict(zip(scores["image_id"], scores["file"])), folder / "top_scored.png")
            manifest = pd.read_csv(batch["manifest"], dtype={"image_id": str})
            if {"label"} <= set(manifest.columns) and len(scores):
                labelled = scores.merge(manifest[["image_id", "label"]].drop_duplicates("image_id"), on="image_id")
                if labelled["label"].nunique() == 2:
                    plots.roc_pr(labelled, Path(tmp) / "roc_pr.png")
            mlflow.log_artifacts(tmp, "batch")
        mlflow.log_artifacts(str(folder), "batch")
    return outcome
