"""Damage benchmark: accuracy on a held-out synthetic set and on the real magnetic-tile images, and
throughput of the full scoring path (decode + CNN + gallery + fusion).

    .venv/bin/python benchmarks/damage_benchmark.py --out benchmarks/results [--quick]

Writes damage_synthetic.csv (AUROC, recall at 0.1% / 1% FPR per signal and damage type),
damage_magnetic_tile.csv, damage_throughput.csv and damage_benchmark.md.
Magnetic tile data: Huang, Qiu, Yuan, "Surface defect saliency of magnetic tile", The Visual Computer 2020.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.models.damage import fusion as fz
from echelon.models.damage import gallery as gl
from echelon.models.damage import images as im
from echelon.models.damage import model as md
from echelon.models.damage import supervised as sv
from echelon.models.damage import world

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"
SIGNALS = {"supervised": "score_supervised", "anomaly": "score_anomaly", "fusion": "score"}


def rates(scores: pd.DataFrame, label_col="label") -> dict:
    out = {}
    for name, column in SIGNALS.items():
        out[(name, "auroc")] = fz.auroc(scores[column], scores[label_col])
        for target in (0.001, 0.01):
            out[(name, f"recall@{target:g}")] = fz.recall_at_fpr(scores[column], scores[label_col], target)
    return out


def synthetic(root: Path, quick: bool, seed: int) -> tuple[pd.DataFrame, dict, md.DamageModel, pd.DataFrame]:
    sizes = dict(products=16, new_products=4, gallery=8, train=600, calib=400, valid=1500, batch=2000) if quick else \
        dict(products=24, new_products=4, gallery=8, train=900, calib=500, valid=3000, batch=3000)
    if not (root / "batch.csv").exists():
        world.generate(root, seed=seed, batch_damage_rate=0.1, **sizes)   # held-out test: 10% damaged, to measure recall
    model, evaluation = md.train(im.read_manifest(root / "train.csv", True), im.read_manifest(root / "gallery.csv"),
                                 im.read_manifest(root / "valid.csv", True), epochs=16, seed=seed)
    test = im.read_manifest(root / "batch.csv", True)
    rows, _ = im.validate(test, known_items=set(model.galleries))
    scored, _ = md.score_rows(model, rows, refresh=False)
    scored = scored.merge(rows[["image_id", "label", "damage_type", "hazard"]].rename(columns={"damage_type": "true_type"}),
                          on="image_id")
    table = []
    overall = rates(scored)
    for (signal, metric), value in overall.items():
        table.append({"subset": "all", "signal": signal, "metric": metric, "value": value})
    pristine = scored[scored["label"] == 0]
    for kind in sorted(scored.loc[scored["label"] == 1, "true_type"].unique()):
        subset = pd.concat([pristine, scored[scored["true_type"] == kind]])
        for (signal, metric), value in rates(subset).items():
            table.append({"subset": kind, "signal": signal, "metric": metric, "value": value})
    # damage-like artwork: pristine hard negatives vs all damaged
    hazard = pd.concat([pristine[pristine["hazard"] != "none"], scored[scored["label"] == 1]])
    for (signal, metric), value in rates(hazard).items():
        table.append({"subset": "artwork_hard_negatives", "signal": signal, "metric": metric, "value": value})
    # sideline rates at the model's own threshold (picked on the validation set)
    op = model.operating
    flags = {"pristine_sideline_rate": pristine["decision"].eq("sideline").mean(),
             "artwork_sideline_rate": pristine.loc[pristine["hazard"] != "none", "decision"].eq("sideline").mean(),
             "damaged_recall_at_threshold": scored.loc[scored["label"] == 1, "decision"].eq("sideline").mean(),
             "threshold": op.threshold, "valid_fpr": op.fpr, "valid_fpr_upper": op.fpr_upper,
             "valid_negatives": op.negatives, "valid_recall": op.recall, "needed_negatives": op.needed_negatives,
             "test_images": len(scored), "test_damaged": int(scored["label"].sum())}
    return pd.DataFrame(table), flags, model, rows


def redesign_check(model: md.DamageModel, root: Path, seed: int) -> dict:
    """A redesigned product's pristine batch: sideline rate without and with the gallery refresh."""
    catalog = world.make_products(len(model.galleries), seed)
    target = [world.redesign(p) for p in catalog if p.item_id in model.galleries][:3]
    frame = pd.concat([world.write_set(root / "redesign", f"r{p.item_id}", [p], 30, 0.0, seed) for p in target])
    frame["file"] = [str((root / "redesign" / p).resolve()) for p in frame["path"]]
    frame = frame.reset_index(drop=True)
    plain, _ = md.score_rows(model, frame, refresh=False)
    fresh, refreshed = md.score_rows(model, frame, refresh=True)
    return {"redesign_images": len(frame), "redesign_sideline_rate_without_refresh": plain["decision"].eq("sideline").mean(),
            "redesign_sideline_rate_with_refresh": fresh["decision"].eq("sideline").mean(),
            "products_refreshed": len(refreshed)}


def magnetic_tile(seed: int, size: int = 64) -> pd.DataFrame:
    """Defect-free vs defective tiles: gallery of defect-free images, supervised CNN on a training split."""
    free = sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))
    defects = [(p, d.name) for d in sorted(TILES.glob("MT_*")) if d.name != "MT_Free" for p in sorted((d / "Imgs").glob("*.jpg"))]
    rng = np.random.default_rng(seed)
    free = [free[i] for i in rng.permutation(len(free))]
    defects = [defects[i] for i in rng.permutation(len(defects))]
    # MT_Free holds ~950 jpg photos (the png files are masks): 150 gallery, 300 train, 200 calibration, the rest test
    gallery_files, train_free, calib_free, test_free = free[:150], free[150:450], free[450:650], free[650:]
    d1, d2 = len(defects) // 3, 2 * len(defects) // 3
    train_def, calib_def, test_def = defects[:d1], defects[d1:d2], defects[d2:]
    load = lambda files: im.load_many([str(f) for f in files], size)  # noqa: E731
    gallery = gl.build("tile", load(gallery_files), [f.name for f in gallery_files])
    net = sv.fit(np.concatenate([load(train_free), load([p for p, _ in train_def])]),
                 np.r_[np.zeros(len(train_free)), np.ones(len(train_def))], ["none"] * len(train_free) + ["hole"] * len(train_def),
                 epochs=12, seed=seed)
    model = md.DamageModel(net, {"tile": gallery}, fz.Fusion([0, 0, 0], 0), None, size)

    def signals(free_files, defect_files):
        images = np.concatenate([load(free_files), load([p for p, _ in defect_files])])
        out = model.signals(images, ["tile"] * len(images))
        out["label"] = np.r_[np.zeros(len(free_files)), np.ones(len(defect_files))].astype(int)
        out["kind"] = ["free"] * len(free_files) + [k for _, k in defect_files]
        return out

    calib = signals(calib_free, calib_def)
    fusion = fz.fit_fusion(calib["score_supervised"], calib["score_anomaly"], calib["label"])
    test = signals(test_free, test_def)
    test["score"] = fusion.score(test["score_supervised"], test["score_anomaly"])
    rows = [{"subset": "all", "signal": s, "metric": m, "value": v} for (s, m), v in rates(test).items()]
    for kind in sorted(set(test["kind"]) - {"free"}):
        subset = test[test["kind"].isin(["free", kind])]
        rows += [{"subset": kind, "signal": s, "metric": m, "value": v} for (s, m), v in rates(subset).items()]
    meta = {"gallery": len(gallery_files), "test_free": len(test_free), "test_defect": len(test_def)}
    return pd.DataFrame(rows).assign(**{k: v for k, v in meta.items()})


def throughput(model: md.DamageModel, rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for threads in (1, 2):
        import torch

        torch.set_num_threads(threads)
        for batch in (1, 16, 64, 256):
            chunk = rows.head(max(batch, 256 if batch < 256 else batch))
            started = time.perf_counter()
            for start in range(0, len(chunk), batch):
                md.score_rows(model, chunk.iloc[start:start + batch], refresh=False)
            seconds = time.perf_counter() - started
            out.append({"threads": threads, "batch_size": batch, "images": len(chunk),
                        "images_per_second": len(chunk) / seconds})
    return pd.DataFrame(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--work", type=Path, default=Path("var/bench/damage"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sv.torch_threads()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    table, flags, model, rows = synthetic(args.work / "world", args.quick, args.seed)
    table.to_csv(args.out / "damage_synthetic.csv", index=False)
    flags.update(redesign_check(model, args.work, args.seed))
    speed = throughput(model, rows)
    speed.to_csv(args.out / "damage_throughput.csv", index=False)
    tiles = magnetic_tile(args.seed) if (TILES / "MT_Free").exists() else None
    if tiles is not None:
        tiles.to_csv(args.out / "damage_magnetic_tile.csv", index=False)
    pivot = lambda t: t.pivot_table(index=["subset"], columns=["signal", "metric"], values="value").round(3)  # noqa: E731
    lines = ["# Damage benchmark", "", f"`benchmarks/damage_benchmark.py{' --quick' if args.quick else ''}`, seed {args.seed}, "
             f"{time.time() - started:.0f} s on the shared 2-core machine, torch threads 1, 64 px.", "",
             "## Synthetic held-out set (AUROC, recall at 0.1% and 1% FPR; each damage type vs all pristine)", "",
             pivot(table).to_markdown(), "", "## Operating point and hard cases", "", "```", json.dumps(flags, indent=2, default=float), "```",
             "", "## Throughput (full scoring path: decode + CNN + gallery + fusion)", "", speed.round(1).to_markdown(index=False)]
    if tiles is not None:
        lines += ["", "## Magnetic tile (Huang et al. 2020): defect-free vs defective, gallery of defect-free images", "",
                  f"gallery {int(tiles['gallery'].iloc[0])}, test {int(tiles['test_free'].iloc[0])} free + "
                  f"{int(tiles['test_defect'].iloc[0])} defective", "", pivot(tiles[["subset", "signal", "metric", "value"]]).to_markdown()]
    (args.out / "damage_benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
