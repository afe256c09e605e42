"""Hand-crafted multi-scale filter-bank patch features on the real magnetic-tile photographs (no network, no
downloaded weights): is this a patch scorer that sees real defects? Measured per defect type, AUROC and recall
at 1% / 0.1% false positives, on the calibration and the test split of damage_patchcore_benchmark.py.

Features, per image (greyscale, longer side turned horizontal, resized to SIDE x SIDE): divided by its median
(exposure), then by a wide Gaussian blur of itself (illumination, sigma SIDE/16): r. Maps: r - 1; black and
white top-hats of r at 5, 11 and 21 px (dark / bright spots and lines narrower than that); deviation from a
31 px vertical running mean (the tiles' vertical grinding streaks removed); smoothed |d/dy| and |d/dx|; local
standard deviation; the illumination's own shape (uneven lighting). Cells of CELL x CELL px carry each map's
mean and max, half-averaged with their 3x3 neighbourhood. Scores: kNN distance of each cell (standardised by
the gallery's cell statistics) to a random 30,000-cell bank of the 150 gallery photos, or one Gaussian's
Mahalanobis distance (PaDiM without positions: the tiles are not aligned); image score = worst cells.
Options measured: leave `edge` border cells out; leave out cells in or near the dark background (illumination
below `mask` relative to the image mean).

    .venv/bin/python benchmarks/damage_filters_benchmark.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from echelon.models.damage import fusion as fz

from damage_benchmark import conditions  # noqa: E402
from damage_patchcore_benchmark import TILES, split  # noqa: E402

SIDE, CELL, BANK = 256, 8, 30_000


def load(path) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.convert("L")
    if grey.size[1] > grey.size[0]:
        grey = grey.transpose(Image.Transpose.ROTATE_90)
    return np.asarray(grey.resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float32) / 255.0


def gblur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(3 * sigma) * 2 + 1
    g = torch.exp(-(torch.arange(k) - k // 2).float() ** 2 / (2 * sigma * sigma))
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k))
    return F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1))


def dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    x = F.max_pool2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), (1, k), 1)
    return F.max_pool2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), (k, 1), 1)


def erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -dilate(-x, k)


def maps(x: torch.Tensor) -> torch.Tensor:
    """(n, 1, S, S) -> (n, 12, S, S) filter responses; channel 11 is the illumination shape."""
    x = x / x.flatten(1).median(1).values.clamp_min(0.02).view(-1, 1, 1, 1)
    illum = gblur(x, SIDE / 16)
    r = x / illum.clamp_min(0.02)
    out = [r - 1]
    for k in (5, 11, 21):
        out += [erode(dilate(r, k), k) - r, r - dilate(erode(r, k), k)]
    out.append(F.avg_pool2d(F.pad(r, (0, 0, 15, 15), mode="replicate"), (31, 1), 1) - r)
    gy = F.pad(r[..., 1:, :] - r[..., :-1, :], (0, 0, 0, 1))
    gx = F.pad(r[..., :, 1:] - r[..., :, :-1], (0, 1, 0, 0))
    mean = gblur(r, 2)
    out += [gblur(gy.abs(), 1.5), gblur(gx.abs(), 1.5), (gblur(r * r, 2) - mean * mean).clamp_min(0).sqrt(),
            illum / illum.flatten(1).mean(1).view(-1, 1, 1, 1) - 1]
    return torch.cat(out, 1)


def cells(m: torch.Tensor) -> torch.Tensor:
    f = torch.cat([F.avg_pool2d(m, CELL), F.max_pool2d(m, CELL)], 1)
    return 0.5 * f + 0.5 * F.avg_pool2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), 3, 1)


def features(paths) -> torch.Tensor:
    x = torch.as_tensor(np.stack([load(p) for p in paths]))[:, None]
    return torch.cat([cells(maps(chunk)) for chunk in x.split(32)])


def scores(feats: dict, edge: int, mask: float | None, seed: int) -> dict[str, dict[str, np.ndarray]]:
    def cut(x):
        return x[..., edge:x.shape[-2] - edge, edge:x.shape[-1] - edge] if edge else x

    def valid(x):
        if mask is None:
            return torch.ones(len(x), cut(x).shape[-2] * cut(x).shape[-1])
        v = (x[:, 11:12] > mask).float()
        return cut(-F.max_pool2d(-v, 5, 1, 2)).flatten(1)

    flat = {k: cut(v).flatten(2).transpose(1, 2) for k, v in feats.items()}
    g = flat["gallery"].reshape(-1, flat["gallery"].shape[-1])
    mu, sd = g.mean(0), g.std(0) + 1e-6
    g = (g - mu) / sd
    icov = torch.linalg.inv(torch.cov(g.T) + 0.01 * torch.eye(g.shape[1]))
    bank = g[torch.randperm(len(g), generator=torch.Generator().manual_seed(seed))[:BANK]]
    out = {}
    for name, x in flat.items():
        if name == "gallery":
            continue
        x = (x - mu) / sd
        n, cells_, d = x.shape
        keep = valid(feats[name])
        mah = ((x @ icov) * x).sum(-1) * keep
        nn = torch.cat([torch.cdist(c, bank).min(1).values for c in x.reshape(-1, d).split(16384)]).reshape(n, cells_) * keep
        out[name] = {"knn_top3": nn.topk(3, 1).values.mean(1).numpy(), "gauss_max": mah.max(1).values.numpy()}
    return out


def run(seed: int) -> tuple[pd.DataFrame, dict]:
    parts = split(seed)
    started = time.perf_counter()
    files = {"gallery": parts["gallery"], "calib_free": parts["calib_free"], "test_free": parts["test_free"],
             "calib_def": [p for p, _ in parts["calib_def"]], "test_def": [p for p, _ in parts["test_def"]]}
    feats = {k: features(v) for k, v in files.items()}
    seconds = time.perf_counter() - started
    rows = []
    for edge, mask in [(0, None), (3, None), (1, -0.35), (1, -0.2)]:
        result = scores(feats, edge, mask, seed)
        for part in ("calib", "test"):
            kinds = np.array([k for _, k in parts[f"{part}_def"]])
            for signal in result[f"{part}_free"]:
                free, bad = result[f"{part}_free"][signal], result[f"{part}_def"][signal]
                for kind in ["all", *sorted(set(kinds))]:
                    b = bad if kind == "all" else bad[kinds == kind]
                    s, y = np.r_[free, b], np.r_[np.zeros(len(free)), np.ones(len(b))].astype(int)
                    values = {"auroc": fz.auroc(s, y), **{f"recall@{t:g}": fz.recall_at_fpr(s, y, t) for t in (0.001, 0.01)}}
                    rows += [{"config": f"edge{edge}" + (f"_mask{mask:g}" if mask is not None else ""), "split": part,
                              "signal": signal, "subset": kind, "metric": m, "value": v} for m, v in values.items()]
    n = sum(len(v) for v in files.values())
    return pd.DataFrame(rows), {"images": n, "feature_seconds": round(seconds, 1),
                                "feature_images_per_second": round(n / seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not (TILES / "MT_Free").exists():
        print(f"magnetic tile data not found at {TILES} (expected MT_Free/ and MT_<defect>/ folders)")
        return 2
    torch.manual_seed(args.seed)
    started, load = time.time(), os.getloadavg()[0]
    table, meta = run(args.seed)
    table.to_csv(args.out / "damage_filters.csv", index=False)
    meta = {"command": "damage_filters_benchmark.py", "seed": args.seed, "side": SIDE, "cell": CELL, "bank": BANK,
            **meta, **conditions(started, load), "torch_threads": torch.get_num_threads()}
    (args.out / "damage_filters.json").write_text(json.dumps(meta, indent=2) + "\n")
    auroc = table[(table["metric"] != "recall@0.001")].pivot_table(index=["config", "split", "signal"],
                                                                   columns=["subset", "metric"], values="value").round(3)
    reading = args.out / "damage_filters_reading.md"
    (args.out / "damage_filters.md").write_text(
        "# Damage: filter-bank patch features at 256 px on magnetic tile\n\n" + f"```\n{json.dumps(meta, indent=2)}\n```\n\n"
        + auroc.to_markdown() + "\n\n" + (reading.read_text() if reading.exists() else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
