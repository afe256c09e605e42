"""Anomaly-map overlays on the real magnetic-tile photographs from the production anomaly path (the 64 px
gallery of gallery.py, rendered by maps/plots in pristine z units with a colour bar): the top-scored
defective test photos of each defect type and the top-scored defect-free ones, so a person can judge
whether the heat sits on the defect. Same split as damage_benchmark.py / damage_patchcore_benchmark.py.

    .venv/bin/python benchmarks/damage_maps_tiles.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from echelon.models.damage import gallery as gl
from echelon.models.damage import images as im
from echelon.models.damage import plots

from damage_patchcore_benchmark import TILES, split  # noqa: E402  (the same split)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--per-type", type=int, default=1, help="overlays per defect type (top scored)")
    args = parser.parse_args()
    if not (TILES / "MT_Free").exists():
        print(f"magnetic tile data not found at {TILES} (expected MT_Free/ and MT_<defect>/ folders)")
        return 2
    parts = split(args.seed)
    gallery = gl.build("tile", im.load_many([str(p) for p in parts["gallery"]], 64), [p.stem for p in parts["gallery"]])
    files = [str(p) for p in parts["test_free"]] + [str(p) for p, _ in parts["test_def"]]
    kinds = np.array(["free"] * len(parts["test_free"]) + [k for _, k in parts["test_def"]])
    images = im.load_many(files, 64)
    z = gl.scores({"tile": gallery}, ["tile"] * len(files), images)
    folder = args.out / "damage_maps_gallery"
    for old in folder.glob("*.png") if folder.exists() else []:
        old.unlink()
    picks = [int(i) for kind in sorted(set(kinds)) for i in np.flatnonzero(kinds == kind)[np.argsort(-z[kinds == kind])][:args.per_type]]
    picks += [int(i) for i in np.flatnonzero(kinds == "free")[np.argsort(-z[kinds == "free"])][args.per_type:args.per_type + 1]]
    amaps = gl.anomaly_maps({"tile": gallery}, ["tile"] * len(picks), images[picks])
    written = []
    for i, amap in zip(picks, amaps):
        target = folder / f"{kinds[i]}_{Path(files[i]).stem}.png"
        plots.save_overlay(files[i], plots.pristine_z(amap, gallery.mu, gallery.sd), target,
                           title=f"{kinds[i]}  image z={z[i]:.1f}")
        written.append({"file": target.name, "kind": str(kinds[i]), "z": round(float(z[i]), 2),
                        "rank_among_test": int((z > z[i]).sum()) + 1})
    (folder / "maps.json").write_text(json.dumps(written, indent=2) + "\n")
    print(json.dumps(written, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
