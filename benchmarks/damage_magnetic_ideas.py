"""Cheap ideas for the anomaly score on the real magnetic-tile photographs (issue 21), measured side by side
on damage_benchmark.py's split (seed 42): AUROC and recall at 1% / 0.1% false positives per defect type, for
each anomaly variant alone and fused with the 64 px supervised CNN (fusion.fit_fusion on the calibration split;
the test split is used for nothing but the numbers).

    .venv/bin/python benchmarks/damage_magnetic_ideas.py --out benchmarks/results [--ideas base,per_setup,...]

Variants of the production gallery score (gallery.py: 6x6 exposure-normalised patches at `size` px, nearest
neighbour to the product's bank, mean of the top-3 patch distances, z against the gallery's leave-one-out):
- `base`: one bank of the 150 gallery photos (what damage_benchmark.py's `anomaly` is).
- `per_setup`: one bank per lighting set-up (exp1..exp6, in every photo's name), z per set-up: each photo is
  compared only with defect-free photos shot under the same light.
- `+train`: the gallery also holds the 300 defect-free training photos (the natural gallery: every pristine
  photo that is not calibration or test).
- `size`: 64 or 128 px squares.
Writes damage_magnetic_ideas.csv (one row per idea, subset, signal, metric) and damage_magnetic_ideas.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from echelon.models.damage import fusion as fz
from echelon.models.damage import gallery as gl
from echelon.models.damage import images as im
from echelon.models.damage import plots
from echelon.models.damage import supervised as sv

from damage_benchmark import conditions  # noqa: E402
from damage_patchcore_benchmark import rates, split, with_reading  # noqa: E402

log = logging.getLogger("damage_magnetic_ideas")
POSITION = gl.POSITION


def setup_of(path) -> str:
    """The lighting set-up a magnetic-tile photo was shot under: exp0..exp6 in its name."""
    found = re.match(r"(exp\d+)_", Path(path).name)
    return found.group(1) if found else "exp?"


def foreground(images: np.ndarray, edge: int) -> torch.Tensor:
    """(n, patches) True where a patch of gl.patch_features lies wholly on the tile: the dark background strip
    (below 40% of the photo's median brightness) and the outer `edge` rings of patches are left out."""
    grey = torch.as_tensor(images, dtype=torch.float32).mean(dim=1, keepdim=True)
    grey = F.avg_pool2d(grey, 2)
    bright = (grey > 0.4 * grey.flatten(1).median(dim=1).values[:, None, None, None]).float()
    inside = F.unfold(bright, gl.PATCH, stride=gl.STRIDE).min(dim=1).values > 0       # (n, L)
    side = int(round(inside.shape[1] ** 0.5))
    ring = torch.zeros(side, side, dtype=torch.bool)
    ring[edge:side - edge, edge:side - edge] = True
    return inside & ring.reshape(1, -1)


def equalise(images: np.ndarray) -> np.ndarray:
    """Per photo, grey levels replaced by their rank (histogram equalisation): lighting set-ups and exposure
    map onto one scale."""
    grey = images.mean(axis=1)
    flat = grey.reshape(len(grey), -1)
    ranks = flat.argsort(axis=1).argsort(axis=1).astype(np.float32) / (flat.shape[1] - 1)
    return np.repeat(ranks.reshape(grey.shape)[:, None], 3, axis=1) * 0.9 + 0.1


def masked_scores(bank: torch.Tensor, query: torch.Tensor, valid: torch.Tensor, top: int, chunk: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(query), chunk):
        q = query[start:start + chunk]
        nearest = torch.cdist(q.reshape(-1, q.shape[-1]), bank).min(dim=1).values.reshape(len(q), -1)
        nearest = torch.where(valid[start:start + chunk], nearest, torch.full_like(nearest, -1.0))
        out.append(nearest.topk(top, dim=1).values.clamp_min(0).mean(dim=1))
    return torch.cat(out).double().numpy()


def thinned(bank: torch.Tensor, cap: int | None, seed: int = 0) -> torch.Tensor:
    """At most `cap` rows of the bank, drawn at random (None: all)."""
    if cap is None or len(bank) <= cap:
        return bank
    return bank[torch.from_numpy(np.random.default_rng(seed).choice(len(bank), cap, replace=False))]


def flexible(gallery_files, sets: dict, size: int, per_setup: bool, edge: int, top: int, eq: bool, cache: dict,
             folds: int = 5, cap: int | None = None, maps: dict | None = None) -> dict:
    """The gallery score with a foreground mask (`edge` >= 0; -1: every patch), top-k and equalisation; z per
    bank from `folds`-fold scores of the bank's own photos (each fold against the others)."""
    def prepared(files):
        names = tuple(map(str, files))
        if (size, names) not in cache:
            cache[(size, names)] = im.load_many(list(names), size)
        images = cache[(size, names)]
        key = (size, eq, gl.POSITION, names)
        if key not in cache:
            feats = gl.patch_features(equalise(images) if eq else images)
            if np.allclose(images[:, 0], images[:, 1]) and np.allclose(images[:, 0], images[:, 2]):
                # greyscale photos: the three channels are copies, so one channel times sqrt(3) gives the same
                # distances at a third of the cost
                plane = gl.PATCH * gl.PATCH
                feats = torch.cat([feats[..., :plane] * 3 ** 0.5, feats[..., 3 * plane:]], dim=-1).contiguous()
            cache[key] = feats
        valid = foreground(images, edge) if edge >= 0 else torch.ones(cache[key].shape[:2], dtype=torch.bool)
        return cache[key], valid

    keys = np.array([setup_of(f) if per_setup else "tile" for f in gallery_files])
    feats, valid = prepared(gallery_files)
    banks = {}
    for key in sorted(set(keys)):
        idx = np.flatnonzero(keys == key)
        if len(idx) < folds:
            continue
        fold = np.arange(len(idx)) % folds
        raw = np.concatenate([masked_scores(thinned(feats[idx[fold != f]].reshape(-1, feats.shape[-1]), cap),
                                            feats[idx[fold == f]], valid[idx[fold == f]], top) for f in range(folds)])
        banks[key] = (thinned(feats[idx].reshape(-1, feats.shape[-1]), cap), float(np.median(raw)),
                      float(max(raw.std(ddof=1), 1e-3)))
    biggest = max(banks, key=lambda k: len(banks[k][0]))
    out = {}
    for name, files in sets.items():
        qf, qv = prepared(files)
        items = np.array([(setup_of(f) if per_setup else "tile") for f in files])
        items = np.where(np.isin(items, list(banks)), items, biggest)
        z = np.zeros(len(files))
        for key in set(items):
            where = np.flatnonzero(items == key)
            bank, mu, sd = banks[key]
            z[where] = (masked_scores(bank, qf[where], qv[where], top) - mu) / sd
        out[name] = z
        if maps is not None and name in maps:     # {set: z -> [(index, png path, title)]}: heat maps of those photos
            for i, target, title in maps[name](z):
                bank, mu, sd = banks[items[i]]
                near = torch.cdist(qf[i], bank).min(dim=1).values
                amap = plots.pristine_z(torch.where(qv[i], near, torch.full_like(near, mu)).numpy(), mu, sd)
                side = int(round(len(amap) ** 0.5))
                plots.save_overlay(files[i], amap.reshape(side, side), target, title=title)
    return out


def anomaly(gallery_files, sets: dict, size: int, per_setup: bool, cache: dict) -> dict:
    """z of every image of `sets` against the gallery (one bank, or one per lighting set-up)."""
    def images(files):
        key = (size, tuple(map(str, files)))
        if key not in cache:
            cache[key] = im.load_many([str(f) for f in files], size)
        return cache[key]

    keys = [setup_of(f) if per_setup else "tile" for f in gallery_files]
    gallery_images = images(gallery_files)
    galleries = {}
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        if len(idx) >= 3:
            galleries[key] = gl.build(key, gallery_images[idx], [str(i) for i in idx])
    out = {}
    for name, files in sets.items():
        items = [(setup_of(f) if per_setup else "tile") for f in files]
        items = [k if k in galleries else max(galleries, key=lambda g: len(galleries[g].image_ids)) for k in items]
        out[name] = gl.scores(galleries, items, images(files))
    return out


def map_picks(z, labels, kinds, files, folder: Path, idea: str, count: int = 3) -> list:
    """The `count` highest-scored defect-free and defective test photos: (index, png path, title)."""
    picks = []
    for label in (0, 1):
        where = np.flatnonzero(np.asarray(labels) == label)
        for i in where[np.argsort(-z[where])[:count]]:
            kind = kinds[i]
            picks.append((i, folder / f"{idea}_{kind}_{Path(files[i]).stem}.png", f"{idea} {kind} z={z[i]:.1f}"))
    return picks


def report(out: Path) -> str:
    """damage_magnetic_ideas.md from every damage_magnetic_ideas*.csv/.json run file in `out` (one run per file
    pair, its load stated), plus the hand-written damage_magnetic_ideas_reading.md."""
    lines = ["# Damage: cheap ideas for the anomaly score on magnetic tile (issue 21)", "",
             "Split of damage_benchmark.py (seed 42): gallery 150 defect-free photos (`+train`: and the 300 defect-free "
             "training photos), calibration 200 defect-free + 1/3 of the defective (fits each fusion), test "
             "302 defect-free + 131 defective. `anomaly`: the variant alone; `fusion`: fusion.fit_fusion of the 64 px "
             "CNN (same CNN scores for every idea of a run) with that variant. r@1% = recall at 1% false positives "
             "on the test split; per-type columns: anomaly AUROC of that defect type vs all defect-free test photos.", ""]
    for meta_file in sorted(out.glob("damage_magnetic_ideas*.json")):
        meta = json.loads(meta_file.read_text())
        table = pd.read_csv(meta_file.with_suffix(".csv"))
        lines += [f"## `{meta['command']}`", "", f"seed {meta['seed']}, {meta['seconds']} s, load {meta['load_before']} -> "
                  f"{meta['load_after']} on {meta['cores']} cores." + (f" Note: {meta['note']}." if "note" in meta else ""), ""]
        wide = table.pivot_table(index="idea", columns=["subset", "signal", "metric"], values="value", sort=False)
        rows = []
        for idea in dict.fromkeys(table["idea"]):
            r = wide.loc[idea]
            row = {"idea": idea, "anomaly AUROC": r[("all", "anomaly", "auroc")],
                   "anomaly r@1%": r[("all", "anomaly", "recall@0.01")], "fusion AUROC": r[("all", "fusion", "auroc")],
                   "fusion r@1%": r[("all", "fusion", "recall@0.01")], "CNN AUROC": r[("all", "supervised", "auroc")]}
            row.update({kind.replace("MT_", ""): r[(kind, "anomaly", "auroc")]
                        for kind in sorted(set(table["subset"]) - {"all"})})
            rows.append(row)
        lines += [pd.DataFrame(rows).round(3).to_markdown(index=False), ""]
    return with_reading(lines, out / "damage_magnetic_ideas_reading.md")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", default="", help="suffix of this run's result files (one pair per run)")
    parser.add_argument("--report", action="store_true", help="only rebuild damage_magnetic_ideas.md")
    parser.add_argument("--maps", default="", help="ideas (flexible ones) whose top-scored test photos get heat maps")
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping the CNN's scores between runs")
    parser.add_argument("--ideas", default="base,per_setup,base+train,per_setup+train,per_setup+train@128,base@128")
    args = parser.parse_args()
    if args.report:
        (args.out / "damage_magnetic_ideas.md").write_text(report(args.out))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sv.torch_threads()
    started, load = time.time(), os.getloadavg()[0]
    parts = split(args.seed)
    files = {k: [p if isinstance(p, Path) else p[0] for p in v] for k, v in parts.items()}
    sets = {"calib": files["calib_free"] + files["calib_def"], "test": files["test_free"] + files["test_def"]}
    labels = {"calib": np.r_[np.zeros(len(files["calib_free"])), np.ones(len(files["calib_def"]))].astype(int),
              "test": np.r_[np.zeros(len(files["test_free"])), np.ones(len(files["test_def"]))].astype(int)}
    kinds = {"calib": ["free"] * len(files["calib_free"]) + [k for _, k in parts["calib_def"]],
             "test": ["free"] * len(files["test_free"]) + [k for _, k in parts["test_def"]]}

    # the supervised CNN at 64 px, trained as damage_benchmark.py trains it (its test/calibration outputs are
    # kept in --cache so later idea runs of the same seed fuse with the same CNN)
    t0 = time.perf_counter()
    cached = args.cache / f"damage_magnetic_ideas_cnn_seed{args.seed}.npz" if args.cache else None
    if cached is not None and cached.exists():
        saved = np.load(cached)
        supervised, reference = {"calib": saved["calib"], "test": saved["test"]}, float(saved["reference"])
    else:
        load64 = lambda paths: im.load_many([str(p) for p in paths], 64)  # noqa: E731
        net = sv.fit(np.concatenate([load64(files["train_free"]), load64(files["train_def"])]),
                     np.r_[np.zeros(len(files["train_free"])), np.ones(len(files["train_def"]))],
                     ["none"] * len(files["train_free"]) + ["hole"] * len(files["train_def"]), epochs=12, seed=args.seed)
        reference = float(np.median(fz.logit(sv.predict(net, load64(files["gallery"]))[0])))
        supervised = {name: sv.predict(net, load64(f))[0] for name, f in sets.items()}
        if cached is not None:
            np.savez(cached, reference=reference, **supervised)
    timing = {"supervised_fit_seconds": round(time.perf_counter() - t0, 1)}

    rows, cache = [], {}
    for idea in args.ideas.split(","):
        t0 = time.perf_counter()
        name, _, size = idea.partition("@")
        size = int(size or 64)
        gallery = files["gallery"] + (files["train_free"] if "+train" in name else [])
        tokens = dict(re.findall(r"(mask|top|eq|pos|cap)(\d*)", name))
        gl.POSITION = int(tokens["pos"]) / 10 if tokens.get("pos") else POSITION
        if tokens:
            maps = {"test": lambda z, idea=idea: map_picks(z, labels["test"], kinds["test"], sets["test"], args.out / "damage_maps_ideas", idea)} \
                if idea in args.maps.split(",") else None
            z = flexible(gallery, sets, size, name.startswith("per_setup"), int(tokens.get("mask") or -1),
                         int(tokens.get("top") or gl.TOP), "eq" in tokens, cache,
                         cap=int(tokens["cap"]) * 1000 if tokens.get("cap") else None, maps=maps)
        else:
            z = anomaly(gallery, sets, size, name.startswith("per_setup"), cache)
        fusion = fz.fit_fusion(supervised["calib"], z["calib"], np.full(len(z["calib"]), reference), labels["calib"])
        frame = pd.DataFrame({"label": labels["test"], "kind": kinds["test"], "supervised": supervised["test"],
                              "anomaly": z["test"],
                              "fusion": fusion.score(supervised["test"], z["test"], np.full(len(z["test"]), reference))})
        table = pd.DataFrame(rates(frame, ["supervised", "anomaly", "fusion"])).assign(idea=idea)
        rows.append(table)
        seconds = round(time.perf_counter() - t0, 1)
        timing[f"{idea}_seconds"] = seconds
        summary = table[table["subset"] == "all"].set_index(["signal", "metric"])["value"].round(3).to_dict()
        log.info("%s (%.0f s): %s", idea, seconds, summary)
        pd.concat(rows).to_csv(args.out / f"damage_magnetic_ideas{args.name}.csv", index=False)
    meta = {"command": f"damage_magnetic_ideas.py --ideas {args.ideas}", "seed": args.seed,
            "gallery": len(files["gallery"]), "train_free": len(files["train_free"]),
            "test_free": len(files["test_free"]), "test_defect": len(files["test_def"]), **timing,
            **conditions(started, load)}
    (args.out / f"damage_magnetic_ideas{args.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "damage_magnetic_ideas.md").write_text(report(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
