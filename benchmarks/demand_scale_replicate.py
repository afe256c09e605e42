"""A larger demand feature partition made of copies of a smaller one, for the training steps' scale runs.

Generating, ingesting and building the features of a 3,600-series world takes most of an hour on the shared
2-core machine; the training night's cost depends on the partition's rows, series and columns, not on
their values. This writes `copies` copies of the feature partition of ds from one var folder into
another (item ids suffixed `-r<k>`, so items x copies x locations series), published through the lake
(manifest, checksums), for `benchmarks/demand_scale.py --steps train ...` to run on. The category
aggregates stay those of the source world (every copy of an item is in its category), so the numbers
are about time and memory, not accuracy.

    python benchmarks/demand_scale_replicate.py --source /tmp/w/var_360 --target /tmp/w/var_3600 --copies 10
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DS = "2026-11-20"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="var folder holding the feature partition")
    parser.add_argument("--target", type=Path, required=True, help="var folder to publish the copies into")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--ds", default=DS)
    args = parser.parse_args(argv)
    if args.copies < 1:
        print(f"--copies must be >= 1, got {args.copies}", file=sys.stderr)
        return 2
    folder = args.source / "lake" / "features" / "demand" / "sales_features" / f"ds={args.ds}"
    if not folder.is_dir():
        print(f"--source: no feature partition at {folder}", file=sys.stderr)
        return 2
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    os.environ["ECHELON_VAR"] = str(args.target)
    from echelon import lake
    from echelon.catalog.demand import FEATURES

    started = time.time()
    table = pads.dataset(str(folder), format="parquet").to_table()
    table = table.drop_columns([c for c in ("_segment", "ds") if c in table.column_names])
    index = table.column_names.index("item_id")
    copies = [table.set_column(index, "item_id", pc.binary_join_element_wise(table["item_id"], pa.scalar(f"-r{k}"), ""))
              for k in range(args.copies)]
    frame = pa.concat_tables(copies).to_pandas()
    del copies, table
    manifest = lake.publish(frame, FEATURES, args.ds, extra={"replicated_from": str(folder), "copies": args.copies})
    print(f"{FEATURES} ds={args.ds} under {args.target}: {manifest['rows']:,} rows "
          f"({args.copies} copies) in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
