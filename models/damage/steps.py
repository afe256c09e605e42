"""The damage pipelines, one function per DAG task, plus the `echelon damage` command. This module joins
the model code to the jobs layer (the synthetic world, the Spark scoring and the publish); the rest lives
in cohesive modules it re-exports for the DAGs:

    damage_training (weekly):  world -> train -> evaluate_and_promote      (training.py)
    damage_batches (a batch lands): gate_manifest -> score (Spark) -> log_batch   (batches.py, score here)
    the gallery overrides store (refreshed galleries, held drifts)        (overrides.py)
    `echelon damage train|score` on files, without the lake or MLflow    (tools.py)
    a tiny world and model for tests and a quick look                   (`tiny` here)

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
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from pathlib import Path

from echelon import lake, tracking
from echelon.catalog.damage import MANIFESTS, SCORES  # noqa: F401
from echelon.jobs.damage.scores import CONTRACT, map_images_with_spark, publish_batch  # noqa: F401
from echelon.models.damage.batches import (_score_chunk, batch_info, champion_uri, gate_manifest,  # noqa: F401
                                           log_batch, report_dir)
from echelon.models.damage.overrides import (load_overrides, overrides_dir, pending_path, read_pending,  # noqa: F401
                                             save_override, write_pending)
from echelon.models.damage.training import (MODEL_NAME, evaluate_and_promote, target_fpr, train,  # noqa: F401
                                            world_dir)
from echelon.settings import get_settings

log = logging.getLogger(__name__)


def world(ds: str) -> dict:
    """The synthetic labelled world the scheduled training uses by default (generated once per seed)."""
    from echelon.jobs.damage import world as gen

    root = world_dir()
    if not (root / "valid.csv").exists():
        sizes = get_settings().damage.world_sizes
        gen.generate(root, seed=get_settings().seed, **sizes)
    return {"ds": ds, "root": str(root)}


def signals_with_spark(rows, model_uri: str, partitions: int | None = None):
    """Per-image signals of the champion, computed by Spark over the image paths (jobs/damage/scores.py)."""
    return map_images_with_spark(rows, functools.partial(_score_chunk, model_uri), partitions)


def score(batch: dict, use_spark: bool = True) -> dict:
    """Validate, score (Spark), refresh drifted galleries, publish damage_scores, write the sideline list."""
    import pandas as pd

    from echelon.models.damage import images as im
    from echelon.models.damage import items, maps
    from echelon.models.damage import model as md
    from echelon.models.damage.pyfunc import load_damage_model

    started = time.time()
    uri, version = champion_uri()
    tracking.configure()
    model = load_damage_model(uri)
    overrides = load_overrides()
    galleries = {**model.galleries, **overrides}
    manifest = im.read_manifest(batch["manifest"])
    rows, quarantined = im.validate(manifest, known_items=set(galleries), recognise=True)
    rows, unready = items.prepare(rows, galleries, model.size)   # products recognised, views checked
    quarantined = pd.concat([quarantined, unready], ignore_index=True)
    signals = signals_with_spark(rows, uri) if use_spark and len(rows) else None
    scores, refreshed, pending = md.score_rows(model, rows, signals=signals, galleries=galleries,
                                               pending=read_pending(pending_path()), batch_id=batch["batch_id"])
    scores = items.apply_units(scores, rows, model.operating.threshold)
    for gallery in refreshed.values():
        save_override(gallery)
    write_pending(pending_path(), pending)
    manifest_out = publish_batch(scores, batch, f"{MODEL_NAME}/{version}")
    folder = report_dir(batch["batch_id"])
    folder.mkdir(parents=True, exist_ok=True)
    written = maps.write_maps(scores, dict(zip(rows["image_id"], rows["file"])), {**galleries, **refreshed},
                              model.size, folder / "maps")
    scores[scores["decision"] == "sideline"].merge(written, on="image_id", how="left").to_csv(
        folder / "sideline.csv", index=False)
    quarantined.to_csv(folder / "quarantine.csv", index=False)
    scores.merge(rows[["image_id", "file"]], on="image_id").to_csv(folder / "scores.csv", index=False)
    seconds = time.time() - started
    outcome = {**batch, "model_version": f"{MODEL_NAME}/{version}", "scored": len(scores),
               "quarantined": len(quarantined), "sidelined": int((scores["decision"] == "sideline").sum()),
               "refreshed": sorted(refreshed), "held": sorted(pending), "seconds": round(seconds, 1),
               "threshold": model.operating.threshold, "threshold_rule": model.operating.rule,
               "valid_fpr_upper": model.operating.fpr_upper, "bound_met": model.operating.bound_met,
               "images_per_second": round(len(rows) / max(seconds, 1e-9), 1), "partition_rows": manifest_out["rows"],
               "anomaly_maps": len(written)}
    (folder / "outcome.json").write_text(json.dumps(outcome, indent=2))
    log.info("batch %s: %s", batch["batch_id"], outcome)
    return outcome


# ------------------------------------------------------------------------- the tiny world and model
# For tests, the DAG test and a quick look by hand: the training pipeline in miniature (world -> train ->
# save), so it joins the two layers here, as the steps do.

TINY = dict(products=8, new_products=2, gallery=6, train=240, calib=150, valid=300, batch=120)


def tiny(root: Path, seed: int = 7, epochs: int = 3) -> tuple[Path, Path]:
    """(world folder, model folder) under `root`: a small synthetic world (jobs/damage/world.py) and a model
    trained on it for a few epochs, each created when missing; a lock lets several test modules (and
    processes) share one build per folder."""
    import fcntl

    from echelon.jobs.damage import world as gen
    from echelon.models.damage import images as im
    from echelon.models.damage import model as md

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world_dir, model_dir = root / "world", root / "model"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (world_dir / "batch.csv").exists():
            gen.generate(world_dir, seed=seed, **TINY)
        if not (model_dir / "model.json").exists():
            model, _ = md.train(im.read_manifest(world_dir / "train.csv", labelled=True),
                                im.read_manifest(world_dir / "gallery.csv"),
                                im.read_manifest(world_dir / "valid.csv", labelled=True), epochs=epochs, seed=seed)
            model.save(model_dir)
    return world_dir, model_dir


def tiny_one_thread(base: Path):
    """A generator for a test fixture: the tiny world and model under `base`/damage-tiny (shared by the test
    modules of one session), with torch on one thread meanwhile (the project's setting, ECHELON_TORCH_THREADS:
    more threads spin-wait on two shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tiny(Path(base) / "damage-tiny")
    finally:
        torch.set_num_threads(threads)


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
