"""Decomposition vs monolithic on generated placement instances, side by side in one run.

Each solve runs in its own process (so peak memory is that solve's own: ru_maxrss), one at a time, on the
same instance (seed 1), and reports objective, bound, gap, seconds and peak memory; the results table goes
to benchmarks/results/placement_scaling.{csv,md}. A case is ITEMSxFCSxREGIONS:METHODS, methods among
lagrangian (l) and monolithic (m). Where the monolithic model is not run, its size (variables, nonzeros)
and a memory estimate (peak RSS per nonzero of the largest monolithic solve measured in the run) are given.

    python benchmarks/placement_scaling.py --cases 2150x8x4:lm,100000x50x10:l --tol 5e-3 --limit 900
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ONE = """
import json, resource, sys, time
from echelon.models.placement.instance import generate
from echelon.models.placement import lagrangian, lp
items, facilities, regions, method, limit, tol = sys.argv[1:7]
t0 = time.time()
inst = generate(items=int(items), facilities=int(facilities), regions=int(regions), seed=1)
built = time.time() - t0
if method == "monolithic":
    r = lagrangian.monolithic(inst, time_limit_s=float(limit))
else:
    r = lagrangian.solve(inst, max_iter=200, tol=float(tol), time_limit_s=float(limit),
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
lp_items = sum(h.get("exact_items", 0) for h in r.history)
print(json.dumps({"objective": r.objective, "bound": r.bound, "gap": r.gap, "seconds": r.seconds,
                  "build_seconds": built, "iterations": r.iterations, "status": r.status,
                  "item_lp_solves": lp_items,
                  "max_capacity_violation": r.max_capacity_violation(inst),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def size(items, facilities, regions):
    """Variables, rows and nonzeros of the monolithic LP (lp.Layout and the one-item templates)."""
    from echelon.models.placement import lp
    from echelon.models.placement.instance import generate

    inst = generate(items=2, facilities=facilities, regions=regions, seed=1)
    lay = lp.layout_of(inst)
    (mr, _, _, kinds), (ur, _, _, _) = lp.templates(inst)
    return {"variables": items * lay.n, "rows": items * len(kinds) + lay.resources,
            "nonzeros": items * (len(mr) + len(ur))}


def one(items, facilities, regions, method, limit, tol):
    try:
        out = subprocess.run([sys.executable, "-c", ONE, str(items), str(facilities), str(regions), method,
                              str(limit), str(tol)], capture_output=True, text=True, timeout=limit + 900)
    except subprocess.TimeoutExpired:
        return {"status": f"killed after {limit + 900:.0f} s"}
    if out.returncode:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode
        return {"status": f"failed: {tail}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2150x8x4:lm,100000x50x10:l")
    parser.add_argument("--tol", type=float, default=5e-3, help="decomposition's gap target")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds per solve")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    rows = []
    for case in args.cases.split(","):
        dims, _, methods = case.partition(":")
        items, facilities, regions = (int(v) for v in dims.split("x"))
        for method in [{"l": "lagrangian", "m": "monolithic"}[m] for m in methods or "lm"]:
            load = os.getloadavg()
            row = {"items": items, "facilities": facilities, "regions": regions, "method": method,
                   **size(items, facilities, regions), "load_1m_before": round(load[0], 2),
                   **one(items, facilities, regions, method, args.limit, args.tol),
                   "load_1m_after": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    mono = table[(table["method"] == "monolithic") & table.get("objective", pd.Series(dtype=float)).notna()]
    if len(mono):
        ref = dict(zip(zip(mono["items"], mono["facilities"], mono["regions"]), mono["objective"]))
        table["vs_monolithic"] = [r["objective"] / ref[key] - 1 if (key := (r["items"], r["facilities"], r["regions"]))
                                  in ref and pd.notna(r.get("objective")) else None for _, r in table.iterrows()]
        secs = dict(zip(zip(mono["items"], mono["facilities"], mono["regions"]), mono["seconds"]))
        table["speedup"] = [secs[key] / r["seconds"] if (key := (r["items"], r["facilities"], r["regions"])) in secs
                            and r["method"] == "lagrangian" and pd.notna(r.get("seconds")) else None
                            for _, r in table.iterrows()]
        big = mono.loc[mono["nonzeros"].idxmax()]
        per_nz = big["peak_rss_mb"] / big["nonzeros"]
        table["monolithic_memory_estimate_gb"] = table["nonzeros"] * per_nz / 1024
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "placement_scaling.csv", index=False)
    print(table.to_string())


if __name__ == "__main__":
    main()
