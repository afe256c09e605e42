"""Anomaly maps an associate can read: every sidelined image with a heat map of where its anomaly score
came from (the per-patch nearest-neighbour distances to its product's gallery, gallery.anomaly_maps),
written as `<folder>/<image_id>.png` beside the decision (the batch report folder, which log_batch puts in
the MLflow run; or beside the file CLI's scores CSV). Each map is in pristine z units (plots.pristine_z: a
cell's distance standardised by its product's gallery scale, the worst-patch distance of pristine images) on
one fixed colour range with a colour bar (plots.Z_RANGE), so the same colour means the same distance on every
image and every product, cells that look pristine carry no heat, and a hot cell is where the score came from."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from echelon.models.damage import gallery as gl
from echelon.models.damage import images as im
from echelon.models.damage import plots


def write_maps(scores: pd.DataFrame, files: dict[str, str], galleries: dict[str, gl.Gallery], size: int,
               folder: Path, limit: int = 200) -> pd.DataFrame:
    """Overlays for the sidelined rows of `scores` (`image_id, item_id, score, decision`), at most `limit`
    (the highest scored); returns `image_id, anomaly_map` (the PNG's path)."""
    sidelined = scores[scores["decision"] == "sideline"].nlargest(limit, "score")
    if sidelined.empty:
        return pd.DataFrame({"image_id": pd.Series(dtype=object), "anomaly_map": pd.Series(dtype=object)})
    paths = [files[i] for i in sidelined["image_id"]]
    amaps = gl.anomaly_maps(galleries, list(sidelined["item_id"]), im.load_many(paths, size))
    written = []
    for row, path, amap in zip(sidelined.itertuples(), paths, amaps):
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(row.image_id)) + ".png"
        g = galleries[row.item_id]
        written.append(str(plots.save_overlay(path, plots.pristine_z(amap, g.mu, g.sd), folder / name,
                                              title=f"{row.item_id} score {row.score:.3f} {row.damage_type}")))
    return pd.DataFrame({"image_id": list(sidelined["image_id"]), "anomaly_map": written})
