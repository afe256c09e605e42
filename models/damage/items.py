"""Items as the booth sees them: several views (cameras) of one physical item, and the product recognised
from its appearance when a manifest row has no `item_id`.

Views: a manifest may carry a `unit_id` column; rows sharing a unit_id are views of one physical item. The
item's decision fuses its views by the maximum of their fused scores: damage shows on the side a camera
sees, so one view that shows it must be enough (a mean would dilute a defect seen by one camera of four).
Every view carries the item's decision, and a view sidelined for another view's defect takes that view's
damage_type (the published scores keep one vocabulary). The price: a pristine item gets k chances to be
sidelined, so at most k times the per-view false-positive rate (union bound); the threshold stays the
per-view one (benchmarks/results/damage_views.json measures both rates).
Bad input, each quarantining the unit's rows with a reason: views that name different products, or mix
greyscale and colour cameras (the models were calibrated per camera type, one kind per item). An image
far more (or less) elongated than its batch's median (`check_shapes`) is quarantined as well.

Recognition: an image without an item_id is compared with every product's gallery (gallery.Gallery.z, the
same patch distance the anomaly score uses); the nearest product wins, with a confidence: the softmax over
products of -z (temperature 1). Below `MIN_CONFIDENCE`, or when even the nearest product is far
(z above `MAX_Z`: a product the booth has never seen), the row is quarantined with the candidates named.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from echelon.models.damage import gallery as gl
from echelon.models.damage import images as im

# On the tiny test world's pristine images: known products' nearest z at most 2.9 (120 images, 99% right,
# 85% above the confidence); a product with its gallery removed: median z 2.1-6.3 against the others, with
# confidence 0.25-0.52 except one look-alike pair (0.91 at z 2.1, the one it is confused with).
MIN_CONFIDENCE, MAX_Z = 0.8, 3.5
ASPECT_FACTOR = 3.0   # an image this much more (or less) elongated than its batch's median is quarantined


def recognise(galleries: dict[str, gl.Gallery], images: np.ndarray) -> pd.DataFrame:
    """Per image: the nearest product, its z, the runner-up, and the confidence (see the module docstring)."""
    items = sorted(galleries)
    if not items:
        raise ValueError("product recognition needs at least one product gallery")
    z = np.column_stack([gl.scores(galleries, [item] * len(images), images) for item in items]) if len(images) \
        else np.zeros((0, len(items)))
    order = np.argsort(z, axis=1)
    logits = -z - (-z).max(axis=1, keepdims=True)
    confidence = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    best = order[:, 0] if len(images) else np.zeros(0, dtype=int)
    second = order[:, 1] if len(items) > 1 and len(images) else best
    rows = np.arange(len(images))
    return pd.DataFrame({"item_id": [items[i] for i in best], "z": z[rows, best],
                         "runner_up": [items[i] for i in second], "runner_up_z": z[rows, second],
                         "confidence": confidence[rows, best]})


def identify(rows: pd.DataFrame, galleries: dict[str, gl.Gallery], size: int,
             min_confidence: float = MIN_CONFIDENCE, max_z: float = MAX_Z) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill the empty item_ids of validated `rows` by recognition (images loaded at `size`). Returns (rows
    with `item_id`, `recognised` and `recognition_confidence`, quarantined rows with a `reason`)."""
    rows = rows.reset_index(drop=True).copy()
    missing = rows["item_id"].isna() | (rows["item_id"].astype(str).str.strip() == "")
    rows["recognised"] = missing
    rows["recognition_confidence"] = np.where(missing, np.nan, 1.0)
    if not missing.any():
        return rows, rows.iloc[:0].assign(reason=pd.Series(dtype=object))
    found = recognise(galleries, im.load_many(list(rows.loc[missing, "file"]), size))
    where = rows.index[missing]
    rows.loc[where, "item_id"] = found["item_id"].to_numpy()
    rows.loc[where, "recognition_confidence"] = found["confidence"].to_numpy()
    reasons = pd.Series(None, index=rows.index, dtype=object)
    for index, hit in zip(where, found.itertuples()):
        if hit.z > max_z:
            reasons[index] = (f"no item_id and no known product looks like it: nearest {hit.item_id!r} at z "
                              f"{hit.z:.1f} (above {max_z:g})")
        elif hit.confidence < min_confidence:
            reasons[index] = (f"no item_id and the product is uncertain: {hit.item_id!r} (z {hit.z:.1f}) or "
                              f"{hit.runner_up!r} (z {hit.runner_up_z:.1f}), confidence {hit.confidence:.2f} "
                              f"below {min_confidence:g}")
    bad = reasons.notna()
    return rows[~bad].reset_index(drop=True), rows[bad].assign(reason=reasons[bad]).reset_index(drop=True)


def check_views(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows (validated: `file`, `item_id`, optional `unit_id`) whose unit's views agree on the product and on
    the camera kind (greyscale or colour); the others quarantined, every view of the unit, with the reason."""
    if "unit_id" not in rows or rows.empty:
        return rows, rows.iloc[:0].assign(reason=pd.Series(dtype=object))
    rows = rows.reset_index(drop=True)
    units = rows["unit_id"].fillna("").astype(str)
    modes = [_mode(f) for f in rows["file"]]
    reasons = pd.Series(None, index=rows.index, dtype=object)
    for unit, idx in rows[units != ""].groupby(units[units != ""]).groups.items():
        products = sorted(set(rows.loc[idx, "item_id"].astype(str)))
        kinds = sorted({modes[i] for i in idx})
        if len(products) > 1:
            reasons[idx] = f"views of unit {unit!r} name different products {products}"
        elif len(kinds) > 1:
            reasons[idx] = f"views of unit {unit!r} mix greyscale and colour cameras ({', '.join(kinds)})"
    bad = reasons.notna()
    return rows[~bad].reset_index(drop=True), rows[bad].assign(reason=reasons[bad]).reset_index(drop=True)


def check_shapes(rows: pd.DataFrame, factor: float = ASPECT_FACTOR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose aspect ratio (longer side / shorter side) is within `factor` of the batch's median; the
    others quarantined: the scorer squares every image, and a photo far more elongated than its batch is
    squashed out of recognition (a panorama, a strip, or a frame from another camera set-up)."""
    if rows.empty:
        return rows, rows.iloc[:0].assign(reason=pd.Series(dtype=object))
    rows = rows.reset_index(drop=True)
    sizes = [_size(f) for f in rows["file"]]
    aspect = np.array([max(w, h) / min(w, h) for w, h in sizes])
    median = float(np.median(aspect))
    odd = (aspect > median * factor) | (aspect < median / factor)
    reasons = pd.Series([f"aspect {w}x{h} ({a:.1f}:1) far from the batch's median {median:.1f}:1 (more than "
                         f"{factor:g}x): a different camera set-up?" for (w, h), a in zip(sizes, aspect)], index=rows.index)
    return rows[~odd].reset_index(drop=True), rows[odd].assign(reason=reasons[odd]).reset_index(drop=True)


def _size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _mode(path) -> str:
    with Image.open(path) as image:
        return "greyscale" if image.mode == "L" else "colour"


def fuse_views(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per unit (rows without a unit_id are units of one view): the maximum of its views' fused scores, the
    view it came from, the number of views, and the decision against the per-view threshold."""
    frame = scores.reset_index(drop=True)
    units = frame["unit_id"].fillna("").astype(str) if "unit_id" in frame else pd.Series("", index=frame.index)
    frame["unit"] = np.where(units != "", units, "image:" + frame["image_id"].astype(str))
    worst = frame.loc[frame.groupby("unit")["score"].idxmax()]
    out = worst[["unit", "item_id", "score", "image_id"]].rename(columns={"image_id": "worst_view"})
    out["views"] = frame.groupby("unit").size().reindex(out["unit"]).to_numpy()
    out["decision"] = np.where(out["score"] > threshold, "sideline", "pass")
    return out.reset_index(drop=True)


def prepare(rows: pd.DataFrame, galleries: dict[str, gl.Gallery], size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validated rows -> (rows ready to score: shapes like the batch's, products recognised where the manifest
    gave none, units whose views agree; the quarantined ones with their reasons)."""
    rows, odd = check_shapes(rows)
    rows, unknown = identify(rows, galleries, size)
    rows, mixed = check_views(rows)
    return rows, pd.concat([odd, unknown, mixed], ignore_index=True)


def apply_units(scores: pd.DataFrame, rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per-image scores -> the same rows where every view of a unit carries its unit's fused decision (so a
    sidelined item's views all reach the associate; a view sidelined for another's defect takes that view's
    damage_type) and `unit_id`, `unit_score`; no unit_id: unchanged."""
    if "unit_id" not in rows:
        return scores
    scores = scores.assign(unit_id=rows["unit_id"].to_numpy())
    units = fuse_views(scores, threshold)
    key = np.where(scores["unit_id"].fillna("").astype(str) != "", scores["unit_id"].fillna("").astype(str),
                   "image:" + scores["image_id"].astype(str))
    fused = units.set_index("unit")
    scores["unit_score"] = fused["score"].reindex(key).to_numpy()
    sideline = fused["decision"].reindex(key).to_numpy() == "sideline"
    newly = sideline & (scores["decision"] != "sideline")
    worst_type = scores.set_index("image_id")["damage_type"].reindex(fused["worst_view"].reindex(key)).to_numpy()
    scores["decision"] = np.where(sideline, "sideline", "pass")
    scores["damage_type"] = np.where(newly, worst_type, scores["damage_type"])   # the item's type: its worst view's
    return scores
