"""Decomposition vs monolithic on generated placement instances, side by side in one run.

Each solve runs in its own process (so peak memory is that solve's own: ru_maxrss), one at a time, on the
same instance (seed 1), and reports objective, bound, gap, seconds and peak memory; the results table goes
to benchmarks/results/placement_scaling.{csv,md}. A case is ITEMSxFCSxREGIONS:METHODS, methods among
lagrangian (l) and monolithic (m). Every row gives the monolithic model's size and memory estimate
(`lp.monolithic_size`: 0.49 kB per nonzero, measured); a monolithic solve whose estimate exceeds
`--memory-gb` is not attempted (the row says so). Decomposition rows add the strategy chosen
(`lagrangian.strategy`), iterations per second over the first and second half of the run and the slowest
iteration (an iteration must not slow down as the run goes on), and CPU seconds.

    python benchmarks/placement_scaling.py --name placement_shapes --cases 300x5x4:lm,... --tol 5e-3 --limit 600

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

import numpy as np
import pandas as pd

ONE = """
import json, resource, sys, time
if sys.argv[8] == "cpu":
    time.time = time.process_time      # every deadline and budget in the solve on this process's CPU seconds
import numpy as np
from echelon.models.placement.instance import generate
from echelon.models.placement import lagrangian, lp
items, facilities, regions, method, limit, tol, memory = sys.argv[1:8]
t0 = time.time()
inst = generate(items=int(items), facilities=int(facilities), regions=int(regions), seed=1)
built = time.time() - t0
extra = {}
if method == "monolithic":
    try:
        r = lagrangian.monolithic(inst, time_limit_s=float(limit), memory_gb=float(memory))
    except lp.TooLarge as error:
        print(json.dumps({"status": "not run: " + str(error).split(" and ")[0].split(") ")[-1]}))
        sys.exit(0)
else:
    s = lagrangian.strategy(inst)
    extra = {"subproblems": s.subproblems, "prices": s.prices}
    r = lagrangian.solve(inst, max_iter=200, tol=float(tol), time_limit_s=float(limit),
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
    extra["polished_items"] = r.history[-1].get("polished_items", 0)
    loop = [h for h in r.history if not h.get("recovered")]
    secs = np.diff([0.0] + [h["seconds"] for h in loop])
    half = max(1, len(secs) // 2)
    extra.update({"first_iteration_s": float(secs[1] if len(secs) > 1 else secs[0]),
                  "iterations_per_s_first_half": float(half / secs[:half].sum()) if len(secs) else None,
                  "iterations_per_s_second_half": float((len(secs) - half) / secs[half:].sum()) if len(secs) > half else None,
                  "slowest_iteration_s": float(secs[1:].max()) if len(secs) > 1 else float(secs.max())})
lp_items = sum(h.get("exact_items", 0) for h in r.history)
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"objective": r.objective, "bound": r.bound, "gap": r.gap, "seconds": r.seconds,
                  "cpu_seconds": use.ru_utime + use.ru_stime,
                  "build_seconds": built, "iterations": r.iterations, "status": r.status,
                  "item_lp_solves": lp_items, **extra,
                  "max_capacity_violation": r.max_capacity_violation(inst),
                  "peak_rss_mb": use.ru_maxrss / 1024}))
"""


def size(items, facilities, regions):
    """Variables, rows, nonzeros and estimated memory of the monolithic LP (`lp.monolithic_size`)."""
    from echelon.models.placement import lp
    from echelon.models.placement.instance import generate

    return lp.monolithic_size(generate(items=items, facilities=facilities, regions=regions, seed=1))


def one(items, facilities, regions, method, limit, tol, memory, clock="wall", log=None):
    wait = limit + 900 if clock == "wall" else 20 * limit + 900      # (CPU seconds come slowly on a busy machine)
    if log:
        with open(log, "a") as handle:
            handle.write(f"--- {items}x{facilities}x{regions} {method} ({clock} clock)\n")
    try:
        with open(log or os.devnull, "a") as handle:             # progress lines as they come
            out = subprocess.run([sys.executable, "-c", ONE, str(items), str(facilities), str(regions), method,
                                  str(limit), str(tol), str(memory), clock], stdout=subprocess.PIPE,
                                 stderr=handle if log else subprocess.PIPE, text=True, timeout=wait)
    except subprocess.TimeoutExpired:
        return {"status": f"killed after {wait:.0f} s"}
    if out.returncode:
        err = out.stderr if not log else Path(log).read_text()           # (with a log, the error is its last line)
        tail = err.strip().splitlines()[-1] if (err or "").strip() else out.returncode
        return {"status": f"failed: {tail}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2150x8x4:lm,100000x50x10:l")
    parser.add_argument("--tol", type=float, default=5e-3, help="decomposition's gap target")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds per solve")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="placement_scaling", help="results file name (csv)")
    parser.add_argument("--append", action="store_true", help="add the rows to the existing results file")
    parser.add_argument("--memory-gb", type=float, default=6.0,
                        help="monolithic solves whose estimated memory exceeds this are not run (said in the row)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the solve's deadlines and budgets count its own CPU seconds (time.process_time), "
                             "what a dedicated machine would give it; for a machine shared with other jobs")
    parser.add_argument("--log", type=Path, help="append each solve's progress lines here")
    args = parser.parse_args(argv)
    rows = []
    for case in args.cases.split(","):
        dims, _, methods = case.partition(":")
        items, facilities, regions = (int(v) for v in dims.split("x"))
        for method in [{"l": "lagrangian", "m": "monolithic"}[m] for m in methods or "lm"]:
            load = os.getloadavg()
            row = {"items": items, "facilities": facilities, "regions": regions, "method": method,
                   **size(items, facilities, regions), "load_1m_before": round(load[0], 2),
                   "clock": args.clock,
                   **one(items, facilities, regions, method, args.limit, args.tol, args.memory_gb, args.clock,
                         args.log),
                   "load_1m_after": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    if args.append and (args.out / f"{args.name}.csv").exists():
        table = pd.concat([pd.read_csv(args.out / f"{args.name}.csv"), table], ignore_index=True)
    objective = table["objective"] if "objective" in table.columns else pd.Series(np.nan, index=table.index)
    mono = table[(table["method"] == "monolithic") & objective.notna()]
    if len(mono):
        ref = dict(zip(zip(mono["items"], mono["facilities"], mono["regions"]), mono["objective"]))
        table["vs_monolithic"] = [r["objective"] / ref[key] - 1 if (key := (r["items"], r["facilities"], r["regions"]))
                                  in ref and pd.notna(r.get("objective")) else None for _, r in table.iterrows()]
        secs = dict(zip(zip(mono["items"], mono["facilities"], mono["regions"]), mono["seconds"]))
        table["speedup"] = [secs[key] / r["seconds"] if (key := (r["items"], r["facilities"], r["regions"])) in secs
                            and r["method"] == "lagrangian" and pd.notna(r.get("seconds")) else None
                            for _, r in table.iterrows()]
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{args.name}.csv", index=False)
    print(table.to_string())


if __name__ == "__main__":
    main()
