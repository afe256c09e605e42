"""The damage pipelines, one function per DAG task, plus the `echelon damage` command.

    damage_training (weekly):  world -> train -> evaluate_and_promote
    damage_batches (a batch lands): gate_manifest -> score (Spark) -> log_batch

A batch is described by {"batch_id", "manifest", "ds"}: the manifest CSV lives in the batch folder and
`ds` is the landing date, i.e. the `damage_scores` partition. A partition holds every batch of its day;
re-scoring a batch replaces that batch's rows (read, drop, append, atomic publish) and never duplicates
them. Batches of one day are published one at a time (the DAG allows one active run), so two publishes
never race on the same partition.

Console:
    echelon damage train --train MANIFEST.csv --gallery MANIFEST.csv --output MODEL_DIR [--valid MANIFEST.csv]
    echelon damage score --model MODEL_DIR --batch MANIFEST.csv --output SCORES.csv
    echelon damage world --output FOLDER
    echelon damage step {world,train,evaluate_and_promote,gate_manifest,score,log_batch} --ds D [--batch-id B --manifest M]

Size: the training steps (world, train, promote with their MLflow logging), the batch steps (gate, score with
the gallery overrides store, log) and the command's parser; the Spark scoring and the publish are in
jobs/damage/scores.py, the file tools in tools.py.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon import lake, settings, tracking
from echelon.catalog.damage import MANIFESTS, SCORES  # noqa: F401
from echelon.jobs.damage.scores import CONTRACT, map_images_with_spark, publish_batch  # noqa: F401
from echelon.settings import get_settings

log = logging.getLogger(__name__)
MODEL_NAME = "damage_scorer"


def target_fpr() -> float:
    return get_settings().damage.target_fpr


def world_dir() -> Path:
    return get_settings().damage.world


def overrides_dir() -> Path:
    """Refreshed galleries (state that outlives a model version): one npz per redesigned product."""
    return get_settings().lake / "reference" / "damage" / "gallery_overrides"


report_dir = functools.partial(settings.report_dir, "damage", by="batch")


# ------------------------------------------------------------------------------------ training side

def world(ds: str) -> dict:
    """The synthetic labelled world the scheduled training uses by default (generated once per seed)."""
    from echelon.jobs.damage import world as gen

    root = world_dir()
    if not (root / "valid.csv").exists():
        sizes = get_settings().damage.world_sizes
        gen.generate(root, seed=get_settings().seed, **sizes)
    return {"ds": ds, "root": str(root)}


def _manifests() -> dict[str, Path]:
    root = world_dir()
    return {name: get_settings().damage.manifest(name, root / f"{name}.csv")
            for name in ("train", "gallery", "valid")}


def log_evaluation(evaluation: dict, prefix: str = "") -> None:
    """Metrics and the ROC/PR and recall-vs-FPR plots of an evaluation (in the active MLflow run)."""
    import tempfile

    import mlflow

    from echelon.models.damage import plots

    metrics = {f"{prefix}{k}": float(v) for k, v in evaluation.items()
               if isinstance(v, (int, float, np.floating)) and np.isfinite(v)}
    metrics.update({f"{prefix}op_{k}": float(v) for k, v in evaluation["operating"].items() if not isinstance(v, str)})
    mlflow.log_metrics(metrics)
    valid = evaluation["valid"]
    with tempfile.TemporaryDirectory() as tmp:
        if valid["label"].nunique() == 2:
            plots.roc_pr(valid, Path(tmp) / f"{prefix}roc_pr.png")
            plots.recall_vs_fpr(valid, evaluation["operating"], Path(tmp) / f"{prefix}recall_vs_fpr.png")
        per_type = per_type_recall(valid, evaluation["operating"]["threshold"])
        per_type.to_csv(Path(tmp) / f"{prefix}recall_by_type.csv", index=False)
        mlflow.log_artifacts(tmp, "evaluation")


def per_type_recall(valid: pd.DataFrame, threshold: float) -> pd.DataFrame:
    damaged = valid[valid["label"] == 1]
    return (damaged.assign(caught=damaged["score"] > threshold).groupby("damage_type")["caught"]
            .agg(["mean", "size"]).rename(columns={"mean": "recall", "size": "images"}).reset_index())


def train(ds: str, epochs: int | None = None) -> dict:
    """Fit on the labelled manifests, log and register the model, and mark it @challenger."""
    import mlflow
    from mlflow import MlflowClient

    from echelon.models.damage import images as im
    from echelon.models.damage import model as md
    from echelon.models.damage.pyfunc import log_damage_model

    paths = _manifests()
    epochs = epochs or get_settings().damage.epochs
    seed = get_settings().seed
    with tracking.run("damage", ds, "train", stage="train"):
        model, evaluation = md.train(im.read_manifest(paths["train"], labelled=True),
                                     im.read_manifest(paths["gallery"]),
                                     im.read_manifest(paths["valid"], labelled=True),
                                     epochs=epochs, seed=seed, target_fpr=target_fpr())
        mlflow.log_params({**model.meta, "target_fpr": target_fpr(), "threshold_rule": model.operating.rule,
                           **{f"{k}_manifest": str(v) for k, v in paths.items()}})
        log_evaluation(evaluation)
        info = log_damage_model(model, registered_model_name=MODEL_NAME, metadata={"ds": ds})
    version = str(info.registered_model_version)
    client = MlflowClient(tracking.configure())
    op = evaluation["operating"]
    for key, value in {"ds": ds, "valid_manifest": str(paths["valid"]), "threshold_rule": op["rule"],
                       "recall_at_target": f"{op['recall']:.6f}", "fpr_upper": f"{op['fpr_upper']:.6f}",
                       "bound_met": str(op["bound_met"]), "needed_negatives": str(op["needed_negatives"])}.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    tracking.set_alias(MODEL_NAME, tracking.CHALLENGER, version)
    return {"ds": ds, "version": version, "operating": evaluation["operating"]}


def recall_on(model, valid_manifest: Path) -> tuple[float, dict]:
    """Recall at the target FPR of a model on a validation manifest, threshold re-picked on it by the
    production rule (fusion.threshold_rule()), so champion and challenger are compared as they would run."""
    from echelon.models.damage import fusion as fz
    from echelon.models.damage import images as im

    rows, _ = im.validate(im.read_manifest(valid_manifest, labelled=True), known_items=set(model.galleries))
    signals = model.signals(im.load_many(list(rows["file"]), model.size), rows["item_id"])
    scores = model.decide(signals)["score"]
    operating = fz.operating_point(scores, rows["label"].astype(int), target_fpr())
    return operating.recall, operating.to_dict()


def evaluate_and_promote(ds: str) -> dict:
    """Score @challenger and @champion on the same validation set; @champion moves only if the
    challenger's recall at the target false-positive rate is higher."""
    import mlflow

    from echelon.models.damage.pyfunc import load_damage_model

    tracking.configure()
    challenger = tracking.alias_version(MODEL_NAME, tracking.CHALLENGER)
    champion = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if challenger is None:
        return {"ds": ds, "evaluated": False, "reason": "no challenger"}
    if champion is not None and champion.version == challenger.version:
        return {"ds": ds, "evaluated": False, "reason": "challenger is already champion"}
    valid = Path(challenger.tags.get("valid_manifest") or _manifests()["valid"])
    results = {}
    with tracking.run("damage", ds, "evaluate-and-promote", stage="evaluate"):
        for role, version in (("challenger", challenger), ("champion", champion)):
            if version is not None:
                results[role] = recall_on(load_damage_model(f"models:/{MODEL_NAME}/{version.version}"), valid)
                op = results[role][1]
                mlflow.log_metrics({f"{role}_recall_at_target": op["recall"], f"{role}_fpr": op["fpr"],
                                    f"{role}_fpr_upper": op["fpr_upper"], f"{role}_bound_met": float(op["bound_met"])})
        promoted = tracking.promote(MODEL_NAME, challenger.version, results["challenger"][0],
                                    results["champion"][0] if "champion" in results else None, lower_is_better=False)
        mlflow.log_params({"challenger_version": challenger.version, "valid_manifest": str(valid),
                           "threshold_rule": results["challenger"][1]["rule"],
                           "needed_negatives": results["challenger"][1]["needed_negatives"],
                           "champion_version": champion.version if champion else "none", "promoted": promoted})
    return {"ds": ds, "evaluated": True, "promoted": promoted, "valid_manifest": str(valid),
            **{f"{role}_recall": r[0] for role, r in results.items()}}


# -------------------------------------------------------------------------------------- batch side

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


def load_overrides() -> dict:
    from echelon.models.damage import gallery as gl

    folder = overrides_dir()
    out = {}
    for path in sorted(folder.glob("*.npz")) if folder.exists() else []:
        with np.load(path) as arrays:
            out.update(gl.from_arrays(arrays))
    return out


def pending_path() -> Path:
    """Per product, the batches in a row whose drift was held back (see model.refresh_drifted)."""
    return overrides_dir() / "pending.json"


def read_pending(path: Path) -> dict[str, list[str]]:
    return {str(k): [str(b) for b in v] for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def write_pending(path: Path, pending: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(json.dumps(pending, indent=2, sort_keys=True))
    os.replace(temp, path)


def save_override(gallery) -> Path:
    """Write a refreshed gallery atomically (temp file, then rename)."""
    from echelon.models.damage import gallery as gl

    folder = overrides_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{gallery.item_id}.npz"
    temp = folder / f".{gallery.item_id}.{os.getpid()}.npz"
    np.savez_compressed(temp, **gl.to_arrays({gallery.item_id: gallery}))
    os.replace(temp, target)
    return target


@functools.lru_cache(maxsize=2)
def _worker_model(model_uri: str):
    from echelon.models.damage.pyfunc import load_damage_model

    tracking.configure()
    model = load_damage_model(model_uri)
    model.galleries.update(load_overrides())
    return model


def signals_with_spark(rows: pd.DataFrame, model_uri: str, partitions: int | None = None) -> pd.DataFrame:
    """Per-image signals of the champion, computed by Spark over the image paths (jobs/damage/scores.py)."""
    return map_images_with_spark(rows, functools.partial(_score_chunk, model_uri), partitions)


def _score_chunk(model_uri: str, chunk: pd.DataFrame) -> pd.DataFrame:
    from echelon.models.damage import images as im

    model = _worker_model(model_uri)
    signals = model.signals(im.load_many(list(chunk["file"]), model.size), chunk["item_id"])
    return pd.concat([chunk[["image_id"]].reset_index(drop=True), signals], axis=1)


def score(batch: dict, use_spark: bool = True) -> dict:
    """Validate, score (Spark), refresh drifted galleries, publish damage_scores, write the sideline list."""
    from echelon.models.damage import images as im
    from echelon.models.damage import model as md
    from echelon.models.damage.pyfunc import load_damage_model

    started = time.time()
    uri, version = champion_uri()
    tracking.configure()
    model = load_damage_model(uri)
    overrides = load_overrides()
    galleries = {**model.galleries, **overrides}
    manifest = im.read_manifest(batch["manifest"])
    rows, quarantined = im.validate(manifest, known_items=set(galleries))
    signals = signals_with_spark(rows, uri) if use_spark and len(rows) else None
    scores, refreshed, pending = md.score_rows(model, rows, signals=signals, galleries=galleries,
                                               pending=read_pending(pending_path()), batch_id=batch["batch_id"])
    for gallery in refreshed.values():
        save_override(gallery)
    write_pending(pending_path(), pending)
    manifest_out = publish_batch(scores, batch, f"{MODEL_NAME}/{version}")
    folder = report_dir(batch["batch_id"])
    folder.mkdir(parents=True, exist_ok=True)
    scores[scores["decision"] == "sideline"].to_csv(folder / "sideline.csv", index=False)
    quarantined.to_csv(folder / "quarantine.csv", index=False)
    scores.merge(rows[["image_id", "file"]], on="image_id").to_csv(folder / "scores.csv", index=False)
    seconds = time.time() - started
    outcome = {**batch, "model_version": f"{MODEL_NAME}/{version}", "scored": len(scores),
               "quarantined": len(quarantined), "sidelined": int((scores["decision"] == "sideline").sum()),
               "refreshed": sorted(refreshed), "held": sorted(pending), "seconds": round(seconds, 1),
               "threshold": model.operating.threshold, "threshold_rule": model.operating.rule,
               "valid_fpr_upper": model.operating.fpr_upper, "bound_met": model.operating.bound_met,
               "images_per_second": round(len(rows) / max(seconds, 1e-9), 1), "partition_rows": manifest_out["rows"]}
    (folder / "outcome.json").write_text(json.dumps(outcome, indent=2))
    log.info("batch %s: %s", batch["batch_id"], outcome)
    return outcome


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


# --------------------------------------------------------------------------------------------- CLI

STEPS = {"world": world, "train": train, "evaluate_and_promote": evaluate_and_promote,
         "gate_manifest": gate_manifest, "score": score, "log_batch": log_batch}
BATCH_STEPS = {"gate_manifest", "score", "log_batch"}


def cli_step(args) -> int:
    ds = lake.parse_ds(args.ds)
    if args.step in BATCH_STEPS:
        result = STEPS[args.step](batch_info(ds, args.batch_id, args.manifest))
    else:
        result = STEPS[args.step](ds)
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from echelon.models.damage import tools

    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model folder from labelled manifests")
    p.add_argument("--train", required=True, type=Path, help="labelled manifest (image_id,path,item_id,label,damage_type)")
    p.add_argument("--gallery", required=True, type=Path, help="pristine images per item_id")
    p.add_argument("--output", required=True, type=Path, help="model folder to write")
    p.add_argument("--valid", type=Path, help="labelled validation manifest for the threshold (default: held out of --train)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=get_settings().seed)
    p.add_argument("--target-fpr", type=float, default=target_fpr())
    p.add_argument("--threshold-rule", choices=["bounded", "observed"], default=None,
                   help="bounded (default, ECHELON_DAMAGE_THRESHOLD_RULE): the 95%% Clopper-Pearson upper bound of "
                        "the false-positive rate <= the target; observed: the rate on the validation set <= the target")
    p.set_defaults(func=tools.cli_train)
    p = sub.add_parser("score", help="score a batch manifest with a model folder")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--batch", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path, help="CSV: image_id, score, decision, damage_type")
    p.add_argument("--no-refresh", action="store_true", help="do not refresh galleries of drifted products")
    p.set_defaults(func=tools.cli_score)
    p = sub.add_parser("world", help="generate a synthetic labelled image world")
    from echelon.jobs.damage import world as gen
    gen.add_arguments(p)
    p.set_defaults(func=gen.main)
    p = sub.add_parser("step", help="one pipeline step, exactly as the DAGs run it")
    p.add_argument("step", choices=list(STEPS))
    p.add_argument("--ds", required=True)
    p.add_argument("--batch-id")
    p.add_argument("--manifest")
    p.set_defaults(func=cli_step)


def main(args: argparse.Namespace) -> int:
    return int(args.func(args) or 0)
