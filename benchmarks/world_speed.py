"""How fast the synthetic world is generated with Spark on this machine (rows/s at 1M and 10M rows).

For each size it times:
  generate   the daily sales rows computed in full and discarded (Spark's `noop` sink), first on a
             new plan (cold: includes planning and compiling the stage) and then again (warm)
  + parquet  the same rows written as snappy parquet (what publishing costs before its manifest)
  world.run  the whole job (every table, manifests with checksums), for sizes up to --publish-up-to

    python benchmarks/world_speed.py [--sizes 1000000 10000000] [--master local[2]] [--publish-up-to N]

Writes benchmarks/results/world_speed.md. The machine may be shared: the load average before and
after each measurement is recorded next to it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from echelon.jobs.demand import world

RESULTS = Path(__file__).resolve().parent / "results" / "world_speed.md"
BASE = world.WorldConfig(locations=10, start=dt.date(2024, 1, 1), end=dt.date(2026, 11, 20), seed=42)


def config_for(rows: int) -> world.WorldConfig:
    """A world of about `rows` history rows: 10 locations x 1055 days, items scaled to fit (new items
    have no rows before their launch, on average half their period: about 6% fewer rows)."""
    per_item = BASE.locations * BASE.history_days * (1.0 - BASE.new_item_share / 2)
    return replace(BASE, items=max(1, round(rows / per_item)))


def load() -> str:
    return "{:.1f}".format(os.getloadavg()[0])


def measure(spark, cfg: world.WorldConfig, scratch: Path, publish: bool) -> dict:
    """Seconds for each step on one world (see the module docstring)."""
    out = {"items": cfg.items, "load_before": load()}
    frame = world.sales_extract(world.daily_frame(spark, cfg))
    for run in ("cold", "warm"):
        began = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        out[f"generate_{run}_s"] = time.perf_counter() - began

    target = scratch / f"sales_{cfg.items}"
    began = time.perf_counter()
    world.sales_extract(world.daily_frame(spark, cfg)).write.mode("overwrite").parquet(str(target))
    out["parquet_s"] = time.perf_counter() - began
    out["rows"] = spark.read.parquet(str(target)).count()
    out["parquet_mb"] = sum(p.stat().st_size for p in target.glob("*.parquet")) / 2**20
    shutil.rmtree(target, ignore_errors=True)

    if publish:
        saved = os.environ.get("ECHELON_LAKE")
        os.environ["ECHELON_LAKE"] = str(scratch / f"lake_{cfg.items}")   # never the project's own lake
        try:
            began = time.perf_counter()
            world.run(cfg, spark=spark, log=lambda message: print("   ", message))
            out["publish_s"] = time.perf_counter() - began
        finally:
            os.environ.pop("ECHELON_LAKE") if saved is None else os.environ.update(ECHELON_LAKE=saved)
            shutil.rmtree(scratch / f"lake_{cfg.items}", ignore_errors=True)
    out["load_after"] = load()
    return out


def report(results: list[dict], master: str, cores: int) -> str:
    import pyspark

    lines = [
        "# Synthetic world generation speed",
        "",
        f"Measured {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} with `python benchmarks/world_speed.py` on "
        f"{platform.machine()} Linux, {cores} cores visible to Spark (`{master}`), pyspark {pyspark.__version__}, "
        f"Java 17. Each world: 10 locations x {BASE.history_days} days ({BASE.start}..{BASE.end}), items scaled "
        "to the row count. The machine is shared with other work: the 1-minute load average before/after "
        "each measurement is shown (load above the core count means the numbers are pessimistic).",
        "",
        "| rows | items | generate cold (s) | generate warm (s) | warm rows/s | + parquet write (s) "
        "| parquet rows/s | parquet MiB | full `world.run` (s) | load before/after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        publish = f"{r['publish_s']:.1f}" if "publish_s" in r else "-"
        lines.append(
            f"| {r['rows']:,} | {r['items']:,} | {r['generate_cold_s']:.1f} | {r['generate_warm_s']:.1f} "
            f"| {r['rows'] / r['generate_warm_s']:,.0f} | {r['parquet_s']:.1f} | {r['rows'] / r['parquet_s']:,.0f} "
            f"| {r['parquet_mb']:.0f} | {publish} | {r['load_before']} / {r['load_after']} |")
    lines += [
        "",
        "generate: every row computed (hash-based draws, prices, promotions, demand, stockouts) and discarded "
        "through Spark's `noop` sink; cold is the first run of a new plan (Spark plans and compiles the stage: "
        "a few seconds whatever the size), warm the same plan again. parquet: the same rows generated again and "
        "written as snappy parquet (rows arrive sorted by item, location and day, so they compress well). "
        "full `world.run`: all eight tables published to the lake, including the manifest checksum that "
        "`echelon.lake` computes on the driver with pandas.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--publish-up-to", type=int, default=2_000_000,
                        help="also time the whole job (world.run) for sizes up to this many rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from echelon.spark import get_spark

    spark = get_spark("echelon-world-bench", master=args.master)
    cores = spark.sparkContext.defaultParallelism
    # Warm up the JVM and the code cache on a tiny world so the first size is not charged for it.
    world.sales_extract(world.daily_frame(spark, replace(BASE, items=2))).write.format("noop").mode("overwrite").save()
    results = []
    with tempfile.TemporaryDirectory(prefix="world_speed_") as scratch:
        for rows in args.sizes:
            cfg = config_for(rows)
            print(f"world_speed: ~{rows:,} rows ({cfg.items} items x {cfg.locations} locations x "
                  f"{cfg.history_days} days) ...", flush=True)
            result = measure(spark, cfg, Path(scratch), rows <= args.publish_up_to)
            print(f"world_speed: {result['rows']:,} rows: generate {result['generate_cold_s']:.1f}s cold, "
                  f"{result['generate_warm_s']:.1f}s warm ({result['rows'] / result['generate_warm_s']:,.0f} rows/s), "
                  f"parquet {result['parquet_s']:.1f}s, load {result['load_before']}/{result['load_after']}",
                  flush=True)
            results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(results, args.master, cores))
    print(f"world_speed: wrote {args.out}")


if __name__ == "__main__":
    main()
