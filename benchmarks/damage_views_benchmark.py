"""Several views per item (models/damage/items.py): the fused decision (worst view) against one view alone.

On the tiny synthetic world (`tiny` in models/damage/steps.py), each damaged validation image becomes an item seen by
two cameras: the damaged image and a pristine image of the same product (the other camera does not see the
damage); each pristine item is two pristine images of its product. Scored with the tiny model's per-view
threshold: recall and pristine-item sideline rate when the decision reads one view picked at random (a
one-camera booth) versus both views fused by their maximum.

    .venv/bin/python benchmarks/damage_views_benchmark.py --out benchmarks/results [--work var/bench/damage-views]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.models.damage import images as im
from echelon.models.damage import items
from echelon.models.damage import model as md
from echelon.models.damage import steps
from echelon.models.damage import supervised as sv


def measure(work: Path, seed: int = 0) -> dict:
    world_dir, model_dir = steps.tiny(work)
    model = md.DamageModel.load(model_dir)
    rows, _ = im.validate(im.read_manifest(world_dir / "valid.csv", labelled=True), known_items=set(model.galleries))
    scored = rows.assign(score=model.score_files(rows)["score"].to_numpy(), label=rows["label"].astype(int))
    rng = np.random.default_rng(seed)
    units = []
    for item, group in scored.groupby("item_id"):
        pristine = group[group["label"] == 0]
        if len(pristine) < 2:
            continue
        for k, damaged in enumerate(group[group["label"] == 1].itertuples()):
            other = pristine.iloc[rng.integers(len(pristine))]
            units.append((f"{item}-d{k}", 1, damaged.score, other["score"]))
        shuffled = pristine.sample(frac=1, random_state=seed)
        for k in range(len(shuffled) // 2):
            units.append((f"{item}-p{k}", 0, shuffled.iloc[2 * k]["score"], shuffled.iloc[2 * k + 1]["score"]))
    frame = pd.DataFrame(units, columns=["unit", "label", "view_a", "view_b"])
    threshold = model.operating.threshold
    one = np.where(rng.random(len(frame)) < 0.5, frame["view_a"], frame["view_b"])
    long = pd.DataFrame({"unit_id": np.repeat(frame["unit"].to_numpy(), 2), "image_id": np.arange(2 * len(frame)).astype(str),
                         "item_id": "x", "score": np.ravel(np.column_stack([frame["view_a"], frame["view_b"]]))})
    fused = items.fuse_views(long, threshold).set_index("unit").loc[frame["unit"], "score"].to_numpy()
    out = {"items_damaged": int(frame["label"].sum()), "items_pristine": int((frame["label"] == 0).sum()),
           "threshold": threshold}
    for name, score in (("one_view", one), ("fused_max", fused)):
        sidelined = score > threshold
        out[f"{name}_recall"] = float(sidelined[frame["label"] == 1].mean())
        out[f"{name}_pristine_sideline_rate"] = float(sidelined[frame["label"] == 0].mean())
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--work", type=Path, default=Path("var/bench/damage-views"))
    args = parser.parse_args()
    sv.torch_threads()
    started, load = time.time(), os.getloadavg()[0]
    result = measure(args.work)
    result.update({"seconds": round(time.time() - started), "load_before": round(load, 1),
                   "load_after": round(os.getloadavg()[0], 1), "cores": os.cpu_count()})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "damage_views.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
