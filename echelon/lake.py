"""The lake: parquet tables partitioned by date, published atomically with a manifest.

Layout: <lake>/<layer>/<domain>/<table>/ds=YYYY-MM-DD/ holding part files and _manifest.json.
The `ds` value lives in the folder name only (as Hive partitioning expects); readers add it back.

Publishing a partition (see `publish`):
  1. write the frame to <lake>/_staging/<uuid>/ (pandas or Spark, same result),
  2. run the table's gate on what was written; a failure raises and publishes nothing,
  3. write the manifest (rows, schema, order-independent content checksum),
  4. swap: the staged folder and the published one are exchanged in one atomic rename (Linux
     renameat2 RENAME_EXCHANGE), then the old copy is deleted; where the exchange is unsupported, the old
     folder is renamed aside and the staged one renamed into place. A reader sees the old partition or
     the new one, never a half-written one.

Incremental partitions: publish writes files `<segment>-part-...` per value of `segment_by` (Spark), `carry`
hard-links files of an earlier partition, with their rows and row-hash sums from its manifest (`files`), so
only the new rows are written, gated and hashed; the checksum equals that of the rows written in one piece.

A task killed at any point (even SIGKILL) leaves at most debris in _staging/ (or an aside `.ds=...old`
folder), which is never read. Debris names carry the publisher's pid and host, and every publish deletes
the debris of publishers on this host that are no longer alive (`sweep_debris`).

Size: publishing is one transaction (stage, segment, gate, carry, describe, swap, sweep); its steps stay together.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Callable

import pandas as pd

from echelon.catalog.table import Table  # noqa: F401  (lake.Table: the type every table is)
from echelon.settings import get_settings

MANIFEST = "_manifest.json"


class LakeError(RuntimeError):
    """A partition that is missing, unreadable or does not match its manifest."""


def parse_ds(ds: str | dt.date) -> str:
    """Normalise a partition date to YYYY-MM-DD, rejecting anything else with a clear error."""
    if isinstance(ds, dt.datetime):
        raise ValueError(f"partition date must be a date, not a timestamp: {ds!r}")
    if isinstance(ds, dt.date):
        return ds.isoformat()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(ds)):
            raise ValueError
        return dt.date.fromisoformat(str(ds)).isoformat()
    except ValueError:
        raise ValueError(f"partition date must be YYYY-MM-DD, got {ds!r}") from None


def partitions(table: Table) -> list[str]:
    """Published partition dates of a table, sorted."""
    root = table.root()
    if not root.exists():
        return []
    return sorted(p.name[3:] for p in root.glob("ds=*") if (p / MANIFEST).exists())


def exists(table: Table, ds: str) -> bool:
    return (table.partition(ds) / MANIFEST).exists()


def read_manifest(table: Table, ds: str) -> dict:
    path = table.partition(ds) / MANIFEST
    if not path.exists():
        raise LakeError(f"{table} has no published partition ds={parse_ds(ds)} (looked in {path.parent})")
    return json.loads(path.read_text())


def read(table: Table, ds: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one published partition into pandas, with its `ds` column."""
    read_manifest(table, ds)  # raises a clear error when the partition is absent
    frame = pd.read_parquet(table.partition(ds), columns=columns)
    frame.insert(0, "ds", parse_ds(ds))
    return frame


def read_spark(spark, table: Table, ds: str):
    """Read one published partition as a Spark DataFrame, with its `ds` column."""
    from pyspark.sql import functions as F

    read_manifest(table, ds)
    return spark.read.parquet(str(table.partition(ds))).withColumn("ds", F.lit(parse_ds(ds)))


def _is_spark(frame) -> bool:
    return type(frame).__module__.startswith("pyspark")


SEGMENT_WRITES = {"spark.sql.optimizer.plannedWrite.enabled": "false", "spark.sql.maxConcurrentOutputFileWriters": "4"}


def _write_segments(frame, staging: Path, segment_by: str) -> None:
    """Spark: write the frame's rows as files `<segment value>-<part file>` directly under staging, one
    set per value of the column segment_by (which is not stored)."""
    conf = frame.sparkSession.conf    # a writer per segment at once, instead of a sort of every row by segment
    saved = {key: conf.get(key, None) for key in SEGMENT_WRITES}
    for key, value in SEGMENT_WRITES.items():
        conf.set(key, value)
    try:
        frame.write.mode("overwrite").partitionBy(segment_by).parquet(str(staging / "_segments"))
    finally:
        for key, value in saved.items():
            conf.unset(key) if value is None else conf.set(key, value)
    for folder in (staging / "_segments").glob(f"{segment_by}=*"):
        value = folder.name.split("=", 1)[1]
        for part in folder.glob("*.parquet"):
            os.rename(part, staging / f"{value}-{part.name}")
    shutil.rmtree(staging / "_segments")


def _write_staging(frame, ds: str, staging: Path, segment_by: str | None = None) -> None:
    """Write the frame's rows (without `ds`) as parquet under staging; reject rows of another date."""
    if _is_spark(frame):
        from pyspark.sql import functions as F

        if "ds" in frame.columns:
            wrong = frame.where(F.col("ds").cast("string") != ds).limit(5).collect()
            if wrong:
                raise LakeError(f"rows for another date in partition ds={ds}: {[r.asDict() for r in wrong]}")
            frame = frame.drop("ds")
        if segment_by:
            _write_segments(frame, staging, segment_by)
        else:
            frame.write.mode("overwrite").parquet(str(staging))
    else:
        if "ds" in frame.columns:
            wrong = frame[frame["ds"].astype(str) != ds]
            if len(wrong):
                raise LakeError(f"rows for another date in partition ds={ds}:\n{wrong.head().to_string()}")
            frame = frame.drop(columns="ds")
        staging.mkdir(parents=True)
        frame.to_parquet(staging / "part-00000.parquet", index=False)


def _nullable(arrow_type):
    """Integer and boolean columns as pandas' nullable dtypes: plain to_pandas turns them into float64
    or object only where a null occurs, so a batch with a null and one without would hash differently."""
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return pd.api.types.pandas_dtype(str(arrow_type).replace("int", "Int").replace("uInt", "UInt"))
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


def _hash_sum(path: Path, batch_rows: int) -> tuple[int, int]:
    """Rows and the sum (mod 2^64) of the row hashes of one parquet file, read batch by batch."""
    import pyarrow.parquet as pq

    rows, total = 0, 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        if batch.num_rows:
            frame = batch.to_pandas(types_mapper=_nullable)
            hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype="uint64")
            total = (total + int(hashes.sum(dtype="uint64"))) % 2**64
            rows += batch.num_rows
    return rows, total


def describe(folder: Path, batch_rows: int = 65_536, known: dict | None = None, per_file: bool = False) -> dict:
    """Rows, schema and an order-independent checksum of a folder of parquet files.

    The checksum is the sum (mod 2^64) of one hash per row (pandas' row hash, integers and booleans as
    nullable dtypes), so the same rows give the same checksum whatever the file split, row order or
    batch size. Read batch by batch: memory stays bounded by one batch whatever the partition's size
    (a 36,000-series feature partition is ~25 GB in pandas). known: {file name: [rows, sum]} of files not
    to read again (carried); per_file: also return `files`, each file's [rows, sum]."""
    import pyarrow.dataset as pads

    dataset = pads.dataset(str(folder), format="parquet")
    known = known or {}
    rows, checksum, files = 0, 0, {}
    for path in sorted(dataset.files):
        name = Path(path).name
        files[name] = list(known[name]) if name in known else list(_hash_sum(Path(path), batch_rows))
        rows += files[name][0]
        checksum = (checksum + files[name][1]) % 2**64
    schema = {field.name: str(field.type) for field in dataset.schema}
    digest = hashlib.sha256(f"{checksum}:{json.dumps(schema, sort_keys=True)}".encode()).hexdigest()
    return {"rows": rows, "schema": schema, "checksum": digest, **({"files": files} if per_file else {})}


def _owner_tag() -> str:
    """Suffix of every staging/aside folder: who wrote it, so a later publish can tell debris of the dead."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _owner_alive(name: str) -> bool:
    """False only for a folder written by a process on this host that no longer exists."""
    left, sep, host = name.rpartition("@")
    pid = left.rpartition(".")[2]
    if not sep or not pid.isdigit() or host != socket.gethostname():
        return True   # another host's, or an older naming: never touched
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_debris(table: Table, lake: Path | None = None) -> list[Path]:
    """Delete what killed publishers on this host left behind: their _staging/ folders and the table's
    aside `.ds=...old` folders. Never read by anyone; returns what was removed."""
    lake = lake or get_settings().lake
    candidates = [*(lake / "_staging").glob("*@*"), *table.root(lake).glob(".ds=*.old.*@*")]
    removed = [p for p in candidates if not _owner_alive(p.name)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing folders in one atomic step (Linux renameat2); False where that is unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def publish(frame, table: Table, ds: str, gate: Callable[[Path], None] | bool | None = None,
            extra: dict | None = None, params: dict | None = None, segment_by: str | None = None,
            carry: dict[str, tuple[Path, list]] | None = None) -> dict:
    """Stage, gate, then atomically swap one partition into place. Returns the manifest.

    `gate=True` runs the table's own suite from its catalog entry (with run-time `params`); a callable
    receives the staged folder and raises to stop the publish (see echelon.expectations.gate).
    segment_by, carry ({file name: (published file, [rows, sum])}): see the module docstring; carried files
    are linked after the gate ran on the new rows (they were gated when first published)."""
    ds = parse_ds(ds)
    if gate is True:
        gate = gate_of(table, ds, params)
    settings = get_settings()
    sweep_debris(table, settings.lake)
    staging = (settings.lake / "_staging" /
               f"{table.layer}.{table.domain}.{table.name}.{ds}.{uuid.uuid4().hex}.{_owner_tag()}")
    try:
        _write_staging(frame, ds, staging, segment_by)
        if gate is not None:
            gate(staging)
        carry = carry or {}
        for name, (source, _) in carry.items():
            if (staging / name).exists():
                raise LakeError(f"carried file {name} clashes with a new file of {table} ds={ds}")
            os.link(source, staging / name)
        known = {name: sums for name, (_, sums) in carry.items()}
        described = describe(staging, known=known, per_file=bool(segment_by or carry))
        manifest = {"table": str(table), "ds": ds, **described,
                    "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "code_version": code_version(), **(extra or {})}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        target = table.partition(ds)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and _exchange(staging, target):
            return manifest   # staging now holds the old partition: deleted below
        aside = target.with_name(f".{target.name}.old.{uuid.uuid4().hex}.{_owner_tag()}")
        if target.exists():
            os.rename(target, aside)
        os.rename(staging, target)
        shutil.rmtree(aside, ignore_errors=True)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def gate_of(table: Table, ds: str, params: dict | None = None) -> Callable[[Path], None]:
    """The table's gate from its catalog entry: its suite run on the staged partition."""
    if not table.suite:
        raise LakeError(f"{table} has no expectation suite in its catalog entry (echelon/catalog/{table.domain}.py)")
    from echelon.expectations.gate import gate

    return gate(table.suite, table, ds, params)


def code_version() -> str:
    """The git commit of the code (or ECHELON_CODE_VERSION, set in images built without .git)."""
    if get_settings().code_version:
        return get_settings().code_version
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=get_settings().home,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
