"""The damage model: supervised CNN + product galleries + fusion + operating threshold, as one folder.

    MODEL_DIR/
      supervised.pt    the CNN's weights and hyper-parameters
      gallery.npz      every product's patch bank and z-scale (see gallery.py)
      model.json       fusion weights, the operating point, image size, training metadata

`train` builds it from manifests; `DamageModel.score` scores validated manifest rows; `score_batch`
adds the batch-level step: products whose pristine look drifted (a redesign) get a refreshed gallery
before their images are judged, so a new packaging design does not flood the sideline queue.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echelon.models.damage import calibration as cb
from echelon.models.damage import fusion as fz
from echelon.models.damage import gallery as gl
from echelon.models.damage import images as im
from echelon.models.damage import items
from echelon.models.damage import supervised as sv
from echelon.catalog.damage import DAMAGE_TYPES

log = logging.getLogger(__name__)
OUTPUT = ["image_id", "item_id", "score_supervised", "score_anomaly", "score", "decision", "damage_type"]


@dataclass
class DamageModel:
    net: sv.DamageNet
    galleries: dict[str, gl.Gallery]
    fusion: fz.Fusion
    operating: fz.Operating
    size: int = 64
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------------------------ scoring
    def signals(self, images: np.ndarray, item_ids, galleries: dict[str, gl.Gallery] | None = None) -> pd.DataFrame:
        """Per-image supervised probability, type guess, gallery z-score and the product's classifier
        reference (no decision yet). Torch runs on sv.scoring_threads() (1), in Spark workers and outside."""
        sv.scoring_threads()
        galleries = galleries or self.galleries
        p, types = sv.predict(self.net, images)
        z = gl.scores(galleries, list(item_ids), images)
        reference = [galleries[item].reference for item in item_ids]
        return pd.DataFrame({"score_supervised": p, "score_anomaly": z, "supervised_reference": reference,
                             "type_index": types})

    def decide(self, signals: pd.DataFrame) -> pd.DataFrame:
        """Fuse the signals and apply the operating threshold."""
        out = signals.copy()
        out["score"] = self.fusion.score(out["score_supervised"], out["score_anomaly"], out["supervised_reference"])
        sideline = out["score"] > self.operating.threshold
        out["decision"] = np.where(sideline, "sideline", "pass")
        out["damage_type"] = np.where(sideline, [DAMAGE_TYPES[int(i)] for i in out["type_index"]], "none")
        return out.drop(columns=["type_index", "supervised_reference"])

    def score_files(self, rows: pd.DataFrame, galleries=None) -> pd.DataFrame:
        """Score validated manifest rows (`file`, `item_id`) without gallery refresh."""
        images = im.load_many(list(rows["file"]), self.size)
        return self.decide(self.signals(images, rows["item_id"], galleries))

    # -------------------------------------------------------------------------------- persistence
    def save(self, folder: Path | str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"state": self.net.state_dict(), "hparams": dict(self.net.hparams)}, folder / "supervised.pt")
        np.savez_compressed(folder / "gallery.npz", **gl.to_arrays(self.galleries))
        (folder / "model.json").write_text(json.dumps(
            {"fusion": self.fusion.to_dict(), "operating": self.operating.to_dict(), "size": self.size,
             "damage_types": DAMAGE_TYPES, "meta": self.meta}, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> "DamageModel":
        folder = Path(folder)
        if not (folder / "model.json").exists():
            raise FileNotFoundError(f"{folder} is not a damage model folder (no model.json); "
                                    f"create one with `echelon damage train`")
        spec = json.loads((folder / "model.json").read_text())
        saved = torch.load(folder / "supervised.pt", weights_only=True)
        net = sv.DamageNet(**saved["hparams"])
        net.load_state_dict(saved["state"])
        with np.load(folder / "gallery.npz") as arrays:
            galleries = gl.from_arrays(arrays)
        return cls(net.eval(), galleries, fz.Fusion(**spec["fusion"]), fz.Operating(**spec["operating"]),
                   spec["size"], spec.get("meta", {}))


# ------------------------------------------------------------------------------------ batch scoring

PERSIST = 2   # batches in a row a drift the classifier calls damage must last before the gallery follows it


def refresh_drifted(model: DamageModel, rows: pd.DataFrame, signals: pd.DataFrame, galleries: dict[str, gl.Gallery],
                    pending: dict[str, list[str]] | None = None, batch_id: str = "batch", persist: int = PERSIST
                    ) -> tuple[pd.DataFrame, dict[str, gl.Gallery], dict[str, list[str]]]:
    """Detect products whose pristine look drifted in this batch, extend their galleries from the batch,
    and recompute those products' signals (leave-one-out for the images that became references).

    Drifted: the gallery says so (median z, see gallery.drifted), or the product's median image would be
    sidelined: damage is rare, so that is a look the model does not know (a redesign that stays close to
    its gallery but makes the classifier fire).

    Guard: a batch in which most images of a product are damaged (a crushed pallet) drifts too, and
    refreshing from it would make that damage the reference. So a drifted product is refreshed at once
    only when its drift looks like a redesign on two counts: it is uniform (gallery.uniform_drift: a new
    design moves every image, a damaged shipment leaves its undamaged units near the gallery), and the
    classifier, read alone (the fused score of the product's median image as if it matched its gallery,
    z = 0), passes it. Otherwise the images are judged against the old gallery (damage is sidelined, so
    an associate sees it) and the gallery follows only when the drift persists for `persist` batches in
    a row, as a redesign does and a damaged shipment does not. `pending` lists, per product, the ids of the batches
    in a row held so far (a re-run of the same batch does not count twice); the updated lists are
    returned with the signals and the refreshed galleries."""
    signals = signals.copy()
    signals["gallery_refreshed"] = False
    pending = {item: list(ids) for item, ids in (pending or {}).items()}
    groups = rows.groupby("item_id").groups
    by_item = {item: signals.loc[idx, "score_anomaly"].to_numpy() for item, idx in groups.items()}
    fused = model.decide(signals)["score"]
    classifier = model.decide(signals.assign(score_anomaly=0.0))["score"]
    flooded = [item for item, idx in groups.items()
               if len(idx) >= gl.MIN_IMAGES and float(fused[idx].median()) > model.operating.threshold]
    candidates = sorted(set(gl.drifted(by_item)) | set(flooded))
    damage_like = {item for item in candidates if not gl.uniform_drift(by_item[item])
                   or float(classifier[groups[item]].median()) > model.operating.threshold}
    refreshed = {}
    for item in candidates:
        held = sorted(set(pending.get(item, [])) | {str(batch_id)})
        if item in damage_like and len(held) < persist:
            pending[item] = held
            log.warning("gallery of %s NOT refreshed: %d images drifted (z quartiles %s) but not like a redesign "
                        "(uneven drift, or the classifier calls the median image damaged); held %d of %d batches "
                        "(a damaged shipment, or old and new stock mixed?)", item, len(groups[item]),
                        np.round(np.quantile(by_item[item], [0.25, 0.5, 0.75]), 1).tolist(), len(held), persist)
            continue
        pending.pop(item, None)
        idx = rows.index[rows["item_id"] == item]
        images = im.load_many(list(rows.loc[idx, "file"]), model.size)
        ids = list(rows.loc[idx, "image_id"])
        new = gl.refresh(item, images, ids, signals.loc[idx, "score_supervised"].to_numpy(), previous=galleries[item])
        features = gl.patch_features(images)
        members = {image_id: k for k, image_id in enumerate(new.image_ids)}
        signals.loc[idx, "score_anomaly"] = [new.z(features[k], exclude=members.get(i)) for k, i in enumerate(ids)]
        signals.loc[idx, "supervised_reference"] = new.reference
        signals.loc[idx, "gallery_refreshed"] = True
        refreshed[item] = new
        log.warning("gallery refreshed for %s: median z %.1f over %d images in this batch, median image %s, "
                    "%s (a redesign?)", item, float(np.median(by_item[item])), len(idx),
                    "sidelined" if item in flooded else "passed",
                    f"drift held for {persist} batches" if item in damage_like else "uniform drift, classifier passes")
    judged = {item for item, idx in groups.items() if len(idx) >= gl.MIN_IMAGES}
    for item in (set(pending) & judged) - set(candidates):   # seen again, looking as before: a one-off batch
        pending.pop(item)
    return signals, refreshed, pending


def score_rows(model: DamageModel, rows: pd.DataFrame, signals: pd.DataFrame | None = None, refresh: bool = True,
               galleries: dict[str, gl.Gallery] | None = None, pending: dict[str, list[str]] | None = None,
               batch_id: str = "batch", persist: int = PERSIST
               ) -> tuple[pd.DataFrame, dict[str, gl.Gallery], dict[str, list[str]]]:
    """Score validated rows (`image_id, item_id, file`) as one batch. `signals` may come precomputed
    (from Spark, in the same row order). Returns the scores, any refreshed galleries and the updated
    held drifts (see refresh_drifted; pass them back with the next batch)."""
    galleries = galleries or model.galleries
    rows = rows.reset_index(drop=True)
    if signals is None:
        signals = model.signals(im.load_many(list(rows["file"]), model.size), rows["item_id"], galleries)
    signals = signals.reset_index(drop=True)
    refreshed, pending = {}, dict(pending or {})
    if refresh and len(rows):
        signals, refreshed, pending = refresh_drifted(model, rows, signals, galleries, pending, batch_id, persist)
    scores = pd.concat([rows[["image_id", "item_id"]], model.decide(signals)], axis=1)
    if "gallery_refreshed" not in scores:
        scores["gallery_refreshed"] = False
    return scores, refreshed, pending


def score_batch(model: DamageModel, manifest: pd.DataFrame, root=None, refresh: bool = True,
                overrides: dict[str, gl.Gallery] | None = None, pending: dict[str, list[str]] | None = None,
                batch_id: str = "batch"):
    """Validate and score a whole batch (products recognised where item_id is empty, a unit's views fused:
    items.py). Returns (scores, quarantined, refreshed galleries, held drifts: see refresh_drifted)."""
    galleries = {**model.galleries, **(overrides or {})}
    started = time.time()
    rows, quarantined = im.validate(manifest, root, known_items=set(galleries), recognise=True)
    rows, unready = items.prepare(rows, galleries, model.size)   # products recognised, views checked
    quarantined = pd.concat([quarantined, unready], ignore_index=True)
    scores, refreshed, pending = score_rows(model, rows, refresh=refresh, galleries=galleries, pending=pending,
                                            batch_id=batch_id)
    scores = items.apply_units(scores, rows, model.operating.threshold).assign(file=rows["file"].to_numpy())
    seconds = time.time() - started
    log.info("scored %d images (%d quarantined) in %.1f s, %.0f img/s; %d sidelined", len(scores),
             len(quarantined), seconds, len(scores) / max(seconds, 1e-9), int((scores["decision"] == "sideline").sum()))
    return scores, quarantined, refreshed, pending


# ------------------------------------------------------------------------------------------ training

def build_galleries(rows: pd.DataFrame, size: int, net: sv.DamageNet) -> dict[str, gl.Gallery]:
    """Every product's gallery from its usable gallery rows (see `gallery_rows`), with the classifier's
    reference on its images."""
    images = im.load_many(list(rows["file"]), size)
    p, _ = sv.predict(net, images)
    galleries = {}
    for item, idx in rows.groupby("item_id").groups.items():
        galleries[str(item)] = gl.build(str(item), images[idx], list(rows["image_id"].iloc[idx]),
                                        reference=float(np.median(fz.logit(p[idx]))))
    return galleries


def gallery_rows(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable rows of a gallery manifest: pristine, of products with at least 3 images."""
    rows, quarantined = im.validate(manifest)
    if "label" in rows:   # a gallery holds pristine images only
        rows = rows[rows["label"].fillna(0).astype(int) == 0]
    counts = rows["item_id"].value_counts()
    for item, count in counts[counts < 3].items():
        log.warning("item %s has only %d gallery images: left out (its images will be quarantined)", item, count)
    rows = rows[rows["item_id"].map(counts) >= 3].reset_index(drop=True)
    if rows.empty:
        raise ValueError("the gallery manifest gives no product at least 3 usable pristine images")
    return rows, quarantined


def labelled(manifest, known: set[str], size: int, name: str):
    rows, quarantined = im.validate(manifest, known_items=known)
    if len(quarantined):
        log.warning("%s: %d images quarantined, e.g. %s", name, len(quarantined),
                    quarantined[["image_id", "reason"]].head(3).to_dict("records"))
    rows["label"] = rows["label"].astype(int)
    if not set(rows["label"].unique()) <= {0, 1}:
        raise ValueError(f"{name}: label must be 0 or 1, got {sorted(rows['label'].unique())}")
    return rows, im.load_many(list(rows["file"]), size)


def train(train_manifest: pd.DataFrame, gallery_manifest: pd.DataFrame, valid_manifest: pd.DataFrame | None = None,
          size: int = 64, epochs: int = 8, seed: int = 0, target_fpr: float = 0.001, calib_share: float = 0.3,
          width: int = 16, threshold_rule: str | None = None) -> tuple[DamageModel, dict]:
    """Fit the whole model. Returns it and an evaluation dict (per-image validation scores included).
    The threshold follows `threshold_rule` (default fusion.threshold_rule(): "bounded")."""
    started = time.time()
    reference_rows, _ = gallery_rows(gallery_manifest)
    rows, images = labelled(train_manifest, set(reference_rows["item_id"]), size, "train")
    fit_rows, rest = cb.split(rows.assign(_i=np.arange(len(rows))), calib_share, seed)
    calib_rows, held_rows = cb.split(rest, cb.HOLDBACK_SHARE, seed + 1)   # held back: checks the operating point
    reference_rows = cb.without(reference_rows, rest)   # calibration and held-back images are in no gallery
    net = sv.fit(images[fit_rows["_i"]], fit_rows["label"], fit_rows["damage_type"], epochs=epochs, seed=seed,
                 width=width)
    galleries = build_galleries(reference_rows, size, net)
    placeholder = DamageModel(net, galleries, fz.Fusion([0.0, 0.0, 0.0], 0.0), None, size)
    calib = placeholder.signals(images[calib_rows["_i"]], calib_rows["item_id"])
    fusion = fz.fit_fusion(calib["score_supervised"], calib["score_anomaly"], calib["supervised_reference"],
                           calib_rows["label"])
    if valid_manifest is not None:
        valid_rows, valid_images = labelled(valid_manifest, set(galleries), size, "valid")
        cb.refuse_overlap(valid_rows, reference_rows, "valid")
        valid = placeholder.signals(valid_images, valid_rows["item_id"])
    else:
        valid_rows, valid = calib_rows, calib
    valid = valid.assign(score=fusion.score(valid["score_supervised"], valid["score_anomaly"], valid["supervised_reference"]),
                         label=valid_rows["label"].to_numpy(), damage_type=valid_rows["damage_type"].to_numpy(),
                         image_id=valid_rows["image_id"].to_numpy(), item_id=valid_rows["item_id"].to_numpy())
    operating = fz.operating_point(valid["score"], valid["label"], target_fpr, threshold_rule)
    held = placeholder.signals(images[held_rows["_i"]], held_rows["item_id"])
    held_scores = fusion.score(held["score_supervised"], held["score_anomaly"], held["supervised_reference"])
    holdback = cb.holdback_check(held_scores, held_rows["label"], operating.threshold,
                                 max(operating.target_fpr, operating.fpr_upper), operating.confidence)
    (log.info if holdback.passed else log.error)("damage model: %s", holdback.message)
    meta = {"seed": seed, "epochs": epochs, "width": width, "train_images": len(fit_rows),
            "calib_images": len(calib_rows), "holdback_images": len(held_rows), "valid_images": len(valid),
            "products": len(galleries), "gallery_images": len(reference_rows),
            "fit_seconds": round(time.time() - started, 1), "holdback": holdback.to_dict()}
    model = DamageModel(net, galleries, fusion, operating, size, meta)
    evaluation = {"operating": operating.to_dict(), "holdback": holdback.to_dict(), "valid": valid, **evaluate(valid)}
    log.info("damage model: %s; %s threshold %.4f -> FPR %.4f (95%% upper %.4f, %s the target %g), recall %.3f "
             "on %d pristine + %d damaged (%d pristine needed)", meta, operating.rule, operating.threshold,
             operating.fpr, operating.fpr_upper, "within" if operating.bound_met else "above", operating.target_fpr,
             operating.recall, operating.negatives, operating.positives, operating.needed_negatives)
    return model, evaluation


def evaluate(scored: pd.DataFrame, targets=(0.001, 0.01)) -> dict:
    """AUROC and recall at each target FPR for each signal, overall and per damage type."""
    out = {}
    for signal in ("score_supervised", "score_anomaly", "score"):
        out[f"{signal}_auroc"] = fz.auroc(scored[signal], scored["label"])
        for target in targets:
            out[f"{signal}_recall_at_{target:g}"] = fz.recall_at_fpr(scored[signal], scored["label"], target)
    return out
