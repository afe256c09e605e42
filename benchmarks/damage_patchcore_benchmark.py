"""PatchCore-style anomaly score (models/damage/patchcore.py) on the real magnetic-tile photographs: AUROC and
recall at 1% / 0.1% false positives per defect type, for the supervised 64 px CNN, the patch bank with a
randomly initialised extractor, the same bank after self-supervised pretraining (SimCLR, Lightning), and the
fusion of the supervised score with each bank's score (fusion.fit_fusion on a calibration split).
Also: pretraining time, scoring throughput at 224 px on one thread, bank size and coreset radius, and
anomaly-map overlays of the highest-scored test images (benchmarks/results/damage_maps/).

    .venv/bin/python benchmarks/damage_patchcore_benchmark.py --out benchmarks/results [--steps 100]

The split is damage_benchmark.py's (seed 42): 150 defect-free gallery images, 300 defect-free + a third of the
defective ones to train the CNN (and, unlabelled, to pretrain the extractor), 200 defect-free + a third for
calibration, the rest for the test.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echelon.models.damage import fusion as fz
from echelon.models.damage import images as im
from echelon.models.damage import patchcore as pc
from echelon.models.damage import plots
from echelon.models.damage import supervised as sv

from damage_benchmark import conditions  # noqa: E402  (the run conditions, stated the same way)

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"
log = logging.getLogger("damage_patchcore_benchmark")


def split(seed: int):
    free = sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))
    defects = [(p, d.name) for d in sorted(TILES.glob("MT_*")) if d.name != "MT_Free" for p in sorted((d / "Imgs").glob("*.jpg"))]
    rng = np.random.default_rng(seed)
    free = [free[i] for i in rng.permutation(len(free))]
    defects = [defects[i] for i in rng.permutation(len(defects))]
    d1, d2 = len(defects) // 3, 2 * len(defects) // 3
    return {"gallery": free[:150], "train_free": free[150:450], "calib_free": free[450:650], "test_free": free[650:],
            "train_def": defects[:d1], "calib_def": defects[d1:d2], "test_def": defects[d2:]}


def rates(frame: pd.DataFrame, signals: list[str]) -> list[dict]:
    out = []
    for kind in ["all"] + sorted(set(frame["kind"]) - {"free"}):
        subset = frame if kind == "all" else frame[frame["kind"].isin(["free", kind])]
        for signal in signals:
            values = {"auroc": fz.auroc(subset[signal], subset["label"])}
            values.update({f"recall@{t:g}": fz.recall_at_fpr(subset[signal], subset["label"], t) for t in (0.001, 0.01)})
            out += [{"subset": kind, "signal": signal, "metric": m, "value": v} for m, v in values.items()]
    return out


def run(seed: int, steps: int, out: Path, bank_size: int, maps: int, pool: int, edge: int, random: bool) -> dict:
    parts = split(seed)
    files = {name: [p if isinstance(p, Path) else p[0] for p in value] for name, value in parts.items()}
    timing = {}

    # the supervised CNN at 64 px, as damage_benchmark.py trains it
    started = time.perf_counter()
    load = lambda paths: im.load_many([str(p) for p in paths], 64)  # noqa: E731
    net = sv.fit(np.concatenate([load(files["train_free"]), load(files["train_def"])]),
                 np.r_[np.zeros(len(files["train_free"])), np.ones(len(files["train_def"]))],
                 ["none"] * len(files["train_free"]) + ["hole"] * len(files["train_def"]), epochs=12, seed=seed)
    reference = float(np.median(fz.logit(sv.predict(net, load(files["gallery"]))[0])))
    timing["supervised_fit_seconds"] = round(time.perf_counter() - started, 1)

    # extractors: random initialisation, and self-supervised on the gallery and the (unlabelled) training images
    started = time.perf_counter()
    unlabelled = torch.cat([pc.load_tiles(p)[0] for p in files["gallery"] + files["train_free"] + files["train_def"]])
    timing["pretrain_tiles"] = len(unlabelled)
    extractors = {"patchcore_random": pc.pretrain(unlabelled, steps=0, seed=seed)[0]} if random else {}
    extractors["patchcore_ssl"], info = pc.pretrain(unlabelled, steps=steps, seed=seed)
    timing["pretrain_seconds"], timing["pretrain_steps"] = info["seconds"], info["steps"]
    timing["tiling_seconds"] = round(time.perf_counter() - started - info["seconds"], 1)

    sets = {"calib": (files["calib_free"], parts["calib_def"]), "test": (files["test_free"], parts["test_def"])}
    frames = {}
    for name, (free, defective) in sets.items():
        paths = list(free) + [p for p, _ in defective]
        frames[name] = pd.DataFrame({"file": [str(p) for p in paths],
                                     "label": np.r_[np.zeros(len(free)), np.ones(len(defective))].astype(int),
                                     "kind": ["free"] * len(free) + [k for _, k in defective]})
        frames[name]["score_supervised"] = sv.predict(net, load(paths))[0]
    banks, features = {}, {}
    for signal, extractor in extractors.items():
        started = time.perf_counter()
        gallery = [pc.interior(*pc.image_patches(extractor, p), edge) for p in files["gallery"]]
        banks[signal] = pc.build_bank("tile", gallery, size=bank_size, seed=seed, pool_size=pool)
        timing[f"{signal}_bank_seconds"] = round(time.perf_counter() - started, 1)
        timing[f"{signal}_coreset_radius"] = round(banks[signal].radius, 3)
        for name, frame in frames.items():
            started = time.perf_counter()
            feats = [pc.image_patches(extractor, p) for p in frame["file"]]
            frame[signal] = [banks[signal].z(pc.interior(f, shape, edge)) for f, shape in feats]
            if name == "test":
                timing[f"{signal}_images_per_second"] = round(len(frame) / (time.perf_counter() - started), 2)
                features[signal] = feats
    signals = ["score_supervised", *extractors]
    for signal in extractors:
        fusion = fz.fit_fusion(frames["calib"]["score_supervised"], frames["calib"][signal], np.full(len(frames["calib"]), reference),
                               frames["calib"]["label"])
        name = signal.replace("patchcore", "fusion")
        frames["test"][name] = fusion.score(frames["test"]["score_supervised"], frames["test"][signal],
                                            np.full(len(frames["test"]), reference))
        signals.append(name)
    table = pd.DataFrame(rates(frames["test"], signals))
    best = "patchcore_ssl" if steps else "patchcore_random"
    test = frames["test"].assign(_rank=frames["test"][best].rank(ascending=False))
    maps_dir = out / "damage_maps"
    for old in maps_dir.glob("*.png") if maps_dir.exists() else []:
        old.unlink()
    picks = list(test.nsmallest(maps, "_rank").index) + list(test[test["label"] == 0].nlargest(1, best).index)
    for i in dict.fromkeys(picks):
        f, shape = features[best][i]
        row = test.loc[i]
        bank = banks[best]
        plots.save_overlay(row["file"], plots.pristine_z(pc.anomaly_map(bank, f, shape), bank.mu, bank.sd),
                           maps_dir / f"{row['kind']}_{Path(row['file']).stem}.png", title=f"{row['kind']} z={row[best]:.1f}")
    meta = {"pool": pool, "edge": edge, "gallery": len(files["gallery"]), "test_free": len(files["test_free"]), "test_defect": len(parts["test_def"]),
            "bank_size": bank_size, "side": pc.SIDE, "maps": sorted(p.name for p in maps_dir.glob("*.png")), **timing}
    return {"table": table, "meta": meta}


def report(out: Path) -> str:
    """damage_patchcore.md from damage_patchcore.csv/.json (and the hand-written damage_patchcore_reading.md)."""
    meta = json.loads((out / "damage_patchcore.json").read_text())
    table = pd.read_csv(out / "damage_patchcore.csv")
    pivot = table.pivot_table(index="subset", columns=["signal", "metric"], values="value").round(3)
    lines = ["# Damage: PatchCore-style bank at 224 px on magnetic tile", "",
             f"`{meta['command']}`, seed {meta['seed']}, {meta['seconds']} s, load {meta['load_before']} -> "
             f"{meta['load_after']} on {meta['cores']} cores, torch on {meta['torch_threads']} thread. Gallery "
             f"{meta['gallery']} defect-free photos; test {meta['test_free']} defect-free + {meta['test_defect']} "
             f"defective (recall@0.001 is recall at zero false positives). Signals: `score_supervised` (64 px CNN), "
             f"`patchcore_random` / `patchcore_ssl` (bank of {meta['bank_size']} patches, extractor random or "
             f"SimCLR-pretrained for {meta['pretrain_steps']} steps), `fusion_*` (fusion.fit_fusion of the CNN "
             f"with that bank on the calibration split).", "", pivot.to_markdown(), "", "```",
             json.dumps({k: v for k, v in meta.items() if k not in ("command", "maps")}, indent=2), "```", "",
             "Anomaly maps of the top-scored test photos (and the top-scored defect-free one): "
             + ", ".join(f"[{m}](damage_maps/{m})" for m in meta["maps"]), ""]
    return with_reading(lines, out / "damage_patchcore_reading.md")


def with_reading(lines: list[str], reading: Path) -> str:
    """A results page: the generated lines, then the hand-written reading file when there is one."""
    return "\n".join(lines + ([reading.read_text()] if reading.exists() else []))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=100, help="self-supervised pretraining steps")
    parser.add_argument("--bank-size", type=int, default=3000)
    parser.add_argument("--pool", type=int, default=60_000, help="patches thinned at random before the coreset")
    parser.add_argument("--maps", type=int, default=6, help="anomaly-map overlays of the top-scored test images")
    parser.add_argument("--edge", type=int, default=0, help="tile-border cells left out of banks and scores")
    parser.add_argument("--no-random", action="store_true", help="skip the randomly initialised extractor")
    parser.add_argument("--report", action="store_true", help="only rebuild damage_patchcore.md from the result files")
    args = parser.parse_args()
    if args.report:
        (args.out / "damage_patchcore.md").write_text(report(args.out))
        return 0
    if not (TILES / "MT_Free").exists():
        print(f"magnetic tile data not found at {TILES} (expected MT_Free/ and MT_<defect>/ folders)")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sv.torch_threads()
    started, load = time.time(), os.getloadavg()[0]
    result = run(args.seed, args.steps, args.out, args.bank_size, args.maps, args.pool, args.edge, not args.no_random)
    result["table"].to_csv(args.out / "damage_patchcore.csv", index=False)
    meta = {"command": f"damage_patchcore_benchmark.py --steps {args.steps} --bank-size {args.bank_size} --pool {args.pool} --edge {args.edge}{' --no-random' if args.no_random else ''}", "seed": args.seed,
            **result["meta"], **conditions(started, load), "torch_threads": torch.get_num_threads()}
    (args.out / "damage_patchcore.json").write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "damage_patchcore.md").write_text(report(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
