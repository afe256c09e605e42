"""Checksums of every published partition of a lake, and the comparison of two such lists: the check that a
refactor changed no published table (issue 17: run `make run` or a domain's dag.test() on the same seed
before and after, then compare).

    echelon checksums dump [--lake DIR] --output before.json
    echelon checksums compare before.json after.json      # exit 1 and one line per difference

A partition's checksum is the one its manifest recorded at publish time (echelon.lake.describe: rows,
schema and an order-independent content hash), so dumping reads only the manifests."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from echelon.lake import MANIFEST
from echelon.settings import get_settings


def dump(lake: Path) -> dict[str, dict]:
    """{"<layer>/<domain>/<table>/ds=<ds>": {"rows": n, "checksum": sha}} for every published partition."""
    found = {}
    for manifest in sorted(lake.glob(f"*/*/*/ds=*/{MANIFEST}")):
        partition = manifest.parent
        if partition.relative_to(lake).parts[0].startswith("_"):
            continue   # _staging debris is never read
        data = json.loads(manifest.read_text())
        found[str(partition.relative_to(lake))] = {"rows": data["rows"], "checksum": data["checksum"]}
    return found


def compare(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """One line per partition that is missing, new, or whose rows or content differ."""
    lines = [f"missing after: {k}" for k in sorted(before.keys() - after.keys())]
    lines += [f"new after: {k}" for k in sorted(after.keys() - before.keys())]
    lines += [f"differs: {k} (rows {before[k]['rows']} -> {after[k]['rows']})"
              for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    d = sub.add_parser("dump", help="write the checksums of every published partition")
    d.add_argument("--lake", type=Path, help="the lake folder (default: ECHELON_LAKE's)")
    d.add_argument("--output", type=Path, required=True)
    c = sub.add_parser("compare", help="compare two dumps; exit 1 when they differ")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"echelon checksums: {path}: not a checksum dump ({error})", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: argparse.Namespace) -> int:
    if args.action == "dump":
        lake = args.lake or get_settings().lake
        if not lake.is_dir():
            print(f"echelon checksums: --lake {lake}: no such folder", file=sys.stderr)
            return 2
        found = dump(lake)
        args.output.write_text(json.dumps(found, indent=1, sort_keys=True))
        print(f"{len(found)} partitions -> {args.output}")
        return 0
    lines = compare(_load(args.before), _load(args.after))
    print("\n".join(lines) if lines else "identical")
    return 1 if lines else 0
