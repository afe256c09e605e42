"""Decomposition vs monolithic on generated placement instances of growing size, side by side.

Each solve runs in its own process (so peak memory is that solve's own: ru_maxrss), on the same
instance, and reports objective, bound, gap, seconds and peak memory; the results table goes to
benchmarks/results/placement_scaling.{csv,md}.

    python benchmarks/placement_scaling.py --sizes 100,300,1000,3000 --facilities 10 --regions 6 \
        --monolithic-max 3000 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ONE = """
import json, resource, sys, time
from echelon.models.placement.instance import generate
from echelon.models.placement import lagrangian, lp
items, facilities, regions, method, limit = sys.argv[1:6]
t0 = time.time()
inst = generate(items=int(items), facilities=int(facilities), regions=int(regions), seed=1)
built = time.time() - t0
if method == "monolithic":
    r = lagrangian.monolithic(inst, time_limit_s=float(limit))
else:
    r = lagrangian.solve(inst, max_iter=80, tol=float(sys.argv[6]), time_limit_s=float(limit), progress=lambda m: None)
print(json.dumps({"objective": r.objective, "bound": r.bound, "gap": r.gap, "seconds": r.seconds,
                  "build_seconds": built, "iterations": r.iterations, "status": r.status,
                  "variables": int(len(inst.item_ids) * lp.layout_of(inst).n),
                  "max_capacity_violation": r.max_capacity_violation(inst),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def one(items, facilities, regions, method, limit, tol):
    out = subprocess.run([sys.executable, "-c", ONE, str(items), str(facilities), str(regions), method, str(limit),
                          str(tol)], capture_output=True, text=True, timeout=limit + 600)
    if out.returncode:
        return {"status": f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000,3000")
    parser.add_argument("--facilities", type=int, default=10)
    parser.add_argument("--regions", type=int, default=6)
    parser.add_argument("--monolithic-max", type=int, default=3000)
    parser.add_argument("--tol", type=float, default=5e-3, help="decomposition's gap target")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per solve")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    rows = []
    for items in [int(s) for s in args.sizes.split(",")]:
        for method in ("lagrangian", "monolithic"):
            if method == "monolithic" and items > args.monolithic_max:
                rows.append({"items": items, "method": method, "status": "not run (above --monolithic-max)"})
                continue
            t0 = time.time()
            row = {"items": items, "facilities": args.facilities, "regions": args.regions, "method": method,
                   **one(items, args.facilities, args.regions, method, args.limit, args.tol)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    mono = table[table["method"] == "monolithic"].set_index("items")["objective"] if "objective" in table else None
    if mono is not None:
        table["vs_monolithic"] = [(r["objective"] / mono[r["items"]] - 1) if r["items"] in mono.index and
                                  pd.notna(r.get("objective")) and pd.notna(mono.get(r["items"])) else None
                                  for _, r in table.iterrows()]
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "placement_scaling.csv", index=False)
    header = (f"# Placement: decomposition vs monolithic\n\nMachine: {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}; generated instances (seed 1), {args.facilities} FCs, "
              f"{args.regions} regions, 5 scenarios, HiGHS through MathOpt; decomposition gap target {args.tol:.1%}.\n\n")
    (args.out / "placement_scaling.md").write_text(header + table.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(table.to_string())


if __name__ == "__main__":
    main()
