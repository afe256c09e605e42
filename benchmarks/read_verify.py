"""What verified reads cost (issue 18): a partition's files checked against its manifest before a read, by
sizes and parquet footers only, and with each file's SHA-256 too (what `lake.read` and `lake.read_spark` do
up to `lake.HASH_ON_READ_MAX_BYTES` a partition), beside the read itself (pandas, and a Spark count).

    .venv/bin/python benchmarks/read_verify.py [--rows 4000000] [--files 8] [--out benchmarks/results]

Writes read_verify.md: the partition's size, each check's median of 3 (seconds) and its share of the read."""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def timed(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="echelon-read-verify-"))
    os.environ["ECHELON_LAKE"] = str(work / "lake")
    from echelon import lake
    from echelon.spark import get_spark

    table, ds = lake.Table("features", "bench", "wide"), "2026-11-20"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"item_id": rng.integers(0, 50_000, args.rows).astype(str),
                          "day": rng.integers(0, 730, args.rows), **{f"x{k}": rng.random(args.rows) for k in range(6)}})
    spark = get_spark("read-verify", master="local[2]")
    lake.publish(spark.createDataFrame(frame).repartition(args.files), table, ds)
    del frame
    size = sum(p.stat().st_size for p in table.partition(ds).glob("*.parquet"))
    rows = {
        "sizes + footers (no hash)": timed(lambda: lake.verified(table, ds, hashes=False)),
        "sizes + footers + SHA-256": timed(lambda: lake.verified(table, ds, hashes=True)),
        "lake.read (pandas, verified)": timed(lambda: lake.read(table, ds)),
        "lake.read_spark + count (verified)": timed(lambda: lake.read_spark(spark, table, ds).count()),
        "spark.read.parquet + count (no check)": timed(lambda: spark.read.parquet(str(table.partition(ds))).count()),
    }
    spark.stop()
    hashing = rows["sizes + footers + SHA-256"] - rows["sizes + footers (no hash)"]
    lines = ["# Verified reads: what the check costs", "",
             f"`benchmarks/read_verify.py --rows {args.rows} --files {args.files}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on the shared 2-core machine (other sessions' "
             f"work beside). One partition of {args.rows:,} rows x 8 columns in {args.files} part files, "
             f"{size / 2**20:.0f} MiB of parquet. Median of 3, seconds.", "",
             "| what | seconds |", "|---|---:|", *[f"| {k} | {v:.3f} |" for k, v in rows.items()], "",
             f"Hashing adds {hashing:.2f} s ({size / 2**20 / max(hashing, 1e-9):.0f} MiB/s) to a read of this "
             f"partition. Partitions over {lake.HASH_ON_READ_MAX_BYTES / 2**30:.0f} GiB are checked by sizes and "
             "footers only. A Spark count reads only the footers, so on a count the hash is most of the verified "
             "read; a job that reads the rows pays it once, on the driver, before its executors start."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "read_verify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
