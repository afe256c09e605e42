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
hard-links files of an earlier partition, with their rows and row-hash sums from its manifest (`row_sums`), so
only the new rows are written, gated and hashed; the checksum equals that of the rows written in one piece.

A task killed at any point (even SIGKILL) leaves at most debris in _staging/ (or an aside `.ds=...old`
folder), which is never read. Debris names carry the publisher's pid and host, and every publish deletes
the debris of publishers on this host that are no longer alive (`sweep_debris`).

Several tables of one task publish together or not at all (`transaction`): each is staged, gated and
swapped in as above, but its old copy is kept and the swap recorded in a commit record
(<lake>/_commits/<id>.json, written before the swap). Deleting the record is the commit. While a record
exists, readers in other processes (`read`, `read_spark`, `exists`, `partitions`, `read_manifest`) see the
old copies; an error inside the transaction swaps them back, and a killed publisher's record is rolled back
by the next publish on this host (or by `recover`).

Reads verify: the manifest lists every part file with its size, rows and SHA-256 (written at publish);
`read` and `read_spark` check them before reading (sizes and parquet footers always, SHA-256 up to
HASH_ON_READ_MAX_BYTES a partition) and raise LakeError naming the table and partition on a missing, extra,
truncated, swapped or altered file. Staged
files and folders are fsynced before the swap, and the parent folder after it.

Size: the lake's whole contract (layout, publish with segments and carried files, transactions, verified
reads, debris) in one module; a publish is one sequence (stage, segment, gate, carry, describe, swap, sweep).
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
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pandas as pd

from echelon.catalog.table import Table  # noqa: F401  (lake.Table: the type every table is)
from echelon.settings import get_settings

MANIFEST = "_manifest.json"
COMMITS = "_commits"


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
    """Published partition dates of a table, sorted (those of uncommitted transactions excluded)."""
    root = table.root()
    if not root.exists():
        return []
    found = sorted(p.name[3:] for p in root.glob("ds=*") if (p / MANIFEST).exists())
    pending = _pending_parts()
    if pending:
        found = sorted({ds for ds in found if (str(table), ds) not in pending}
                       | {ds for (name, ds) in pending if name == str(table) and folder(table, ds) is not None})
    return found


def folder(table: Table, ds: str) -> Path | None:
    """The folder holding the committed partition (None: not published). Normally table.partition(ds);
    while another process's transaction over it is uncommitted, the old copy it keeps aside."""
    target = table.partition(ds)
    part = _pending_parts().get((str(table), parse_ds(ds)))
    if part is None or part["owner"] == _owner_tag():
        return target if (target / MANIFEST).exists() else None
    aside = Path(part["aside"]) if part["aside"] else None
    if _manifest_commit(target) == part["commit"]:          # swapped in, not committed: the old copy
        return aside if aside is not None and (aside / MANIFEST).exists() else None
    if (target / MANIFEST).exists():                         # not swapped yet
        return target
    if aside is not None and (aside / MANIFEST).exists() and _manifest_commit(aside) != part["commit"]:
        return aside                                         # moved aside, the new one not yet renamed in
    return None


def exists(table: Table, ds: str) -> bool:
    return folder(table, ds) is not None


def read_manifest(table: Table, ds: str) -> dict:
    found = folder(table, ds)
    if found is None:
        raise LakeError(f"{table} has no published partition ds={parse_ds(ds)} (looked in {table.partition(ds)})")
    return json.loads((found / MANIFEST).read_text())


def read(table: Table, ds: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one published partition into pandas, with its `ds` column, verified against its manifest."""
    found = verified(table, ds, hashes=True)
    try:
        frame = pd.read_parquet(found, columns=columns)
    except (OSError, ValueError) as error:   # pyarrow's ArrowInvalid is a ValueError
        raise LakeError(f"{table} ds={parse_ds(ds)}: unreadable parquet in {found}: {error}") from error
    frame.insert(0, "ds", parse_ds(ds))
    return frame


def read_spark(spark, table: Table, ds: str):
    """Read one published partition as a Spark DataFrame, with its `ds` column. Its files are verified on
    the driver first, as `read` does (sizes, footer rows, SHA-256): a file swapped, truncated or altered
    after publish is a LakeError here, not a Spark traceback or wrong rows at the first action."""
    from pyspark.sql import functions as F

    found = verified(table, ds, hashes=True)
    return spark.read.parquet(str(found)).withColumn("ds", F.lit(parse_ds(ds)))


def file_entries(staged: Path, known: dict[str, dict] | None = None) -> dict[str, dict]:
    """{relative path: {bytes, rows, sha256}} of every parquet file of a staged partition. known: entries
    of carried files from their own partition's manifest, taken as they are where the size still matches
    (a hard link of a published file: hashing it again would read the whole carried history)."""
    import pyarrow.parquet as pq

    entries = {}
    for path in sorted(staged.rglob("*.parquet")):
        name = str(path.relative_to(staged))
        entry = (known or {}).get(name)
        if entry and entry.get("bytes") == path.stat().st_size and "sha256" in entry and "rows" in entry:
            entries[name] = {"bytes": entry["bytes"], "sha256": entry["sha256"], "rows": entry["rows"]}
            continue
        entries[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path),
                         "rows": pq.read_metadata(path).num_rows}
    return entries


def _carried_entries(carry: dict[str, tuple[Path, list]]) -> dict[str, dict]:
    """The manifest entries of carried files, read from the manifests of the partitions they come from."""
    manifests, known = {}, {}
    for name, (source, _) in carry.items():
        folder = Path(source).parent
        if folder not in manifests:
            try:
                manifests[folder] = json.loads((folder / MANIFEST).read_text()).get("files") or {}
            except (OSError, ValueError):
                manifests[folder] = {}
        if Path(source).name in manifests[folder]:
            known[name] = manifests[folder][Path(source).name]
    return known


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Reading a partition hashes its files only up to this size (a second pass over the bytes); a larger one is
# checked by file sizes and parquet footers only, which still catch a swapped, truncated or missing file.
HASH_ON_READ_MAX_BYTES = 1 << 30


def verified(table: Table, ds: str, hashes: bool = True) -> Path:
    """The partition's folder after checking its files against the manifest (manifests written before
    per-file entries existed are checked for their total rows only). Raises LakeError naming the table,
    the partition and the file."""
    import pyarrow.parquet as pq

    ds = parse_ds(ds)
    found = folder(table, ds)
    if found is None:
        raise LakeError(f"{table} has no published partition ds={ds} (looked in {table.partition(ds)})")
    manifest = json.loads((found / MANIFEST).read_text())
    where = f"{table} ds={ds}"
    present = {str(p.relative_to(found)): p for p in found.rglob("*.parquet")}
    expected = manifest.get("files")
    if expected is not None and set(present) != set(expected):
        raise LakeError(f"{where}: files differ from the manifest (missing {sorted(set(expected) - set(present))}, "
                        f"unexpected {sorted(set(present) - set(expected))}) in {found}")
    rows = 0
    hashes = hashes and sum(p.stat().st_size for p in present.values()) <= HASH_ON_READ_MAX_BYTES
    for name, path in sorted(present.items()):
        entry = (expected or {}).get(name, {})
        if entry and path.stat().st_size != entry["bytes"]:
            raise LakeError(f"{where}: {name} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}")
        try:
            count = pq.read_metadata(path).num_rows
        except (OSError, ValueError) as error:
            raise LakeError(f"{where}: {name} is not readable parquet ({error})") from error
        if entry and count != entry["rows"]:
            raise LakeError(f"{where}: {name} has {count} rows, the manifest says {entry['rows']}")
        if entry and hashes and _sha256(path) != entry["sha256"]:
            raise LakeError(f"{where}: {name} does not match its checksum in the manifest (altered or corrupt)")
        rows += count
    if rows != manifest.get("rows", rows):
        raise LakeError(f"{where}: {rows} rows in its files, the manifest says {manifest['rows']} ({found})")
    return found


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
    batch size. Each file's [rows, sum] is computed once, batch by batch (memory bounded by one batch), and
    recorded in the manifest at publish (`files[name].row_sum`); a folder that has a manifest (a published
    partition) is described from those per-file sums, each file checked against its recorded size and
    SHA-256 (a stream of bytes, no pandas), and only a file without a recorded sum, or one that no longer
    matches, is hashed row by row again. known: {file name: [rows, sum]} of files not to read again
    (carried); per_file: also return `row_sums`, each file's [rows, sum]."""
    import pyarrow.dataset as pads

    folder = Path(folder)
    dataset = pads.dataset(str(folder), format="parquet")
    known = {**recorded_sums(folder), **(known or {})}
    rows, checksum, files = 0, 0, {}
    for path in sorted(dataset.files):
        name = Path(path).name
        files[name] = list(known[name]) if name in known else list(_hash_sum(Path(path), batch_rows))
        rows += files[name][0]
        checksum = (checksum + files[name][1]) % 2**64
    schema = {field.name: str(field.type) for field in dataset.schema}
    digest = hashlib.sha256(f"{checksum}:{json.dumps(schema, sort_keys=True)}".encode()).hexdigest()
    return {"rows": rows, "schema": schema, "checksum": digest, **({"row_sums": files} if per_file else {})}


def recorded_sums(folder: Path) -> dict[str, list]:
    """{file name: [rows, sum]} from the folder's manifest, for the files whose size and SHA-256 still match
    their manifest entry (the per-file checksums written at publish); {} without a manifest."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for name, entry in (manifest.get("files") or {}).items():
        sums = entry.get("row_sum")
        path = Path(folder) / name
        if (sums is not None and path.is_file() and path.stat().st_size == entry["bytes"]
                and _sha256(path) == entry["sha256"]):
            found[Path(name).name] = [entry["rows"], sums]
    return found


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
    recover(lake)
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under root (children first), so a power cut after the swap cannot leave
    a renamed partition whose files are empty."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        _fsync(path)
    _fsync(root)


def _stage(frame, table: Table, ds: str, gate, extra: dict | None, params: dict | None,
           lake: Path, commit: str | None = None, segment_by: str | None = None,
           carry: dict[str, tuple[Path, list]] | None = None) -> tuple[Path, dict]:
    """Write, gate and describe one partition under _staging/; the staged folder (fsynced) and its manifest.
    Carried files are hard-linked after the gate ran on the new rows (they were gated when first published)."""
    if gate is True:
        gate = gate_of(table, ds, params)
    staging = lake / "_staging" / f"{table.layer}.{table.domain}.{table.name}.{ds}.{uuid.uuid4().hex}.{_owner_tag()}"
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
        described = describe(staging, known=known, per_file=True)
        files = file_entries(staging, known=_carried_entries(carry))
        sums = described.pop("row_sums") if not (segment_by or carry) else described["row_sums"]
        for name, entry in files.items():   # each file's row-hash sum: later describes read no rows
            entry["row_sum"] = sums[Path(name).name][1]
        manifest = {"table": str(table), "ds": ds, **described, "files": files,
                    "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "code_version": code_version(), **({"commit": commit} if commit else {}), **(extra or {})}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _fsync_tree(staging)
        return staging, manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(frame, table: Table, ds: str, gate: Callable[[Path], None] | bool | None = None,
            extra: dict | None = None, params: dict | None = None, segment_by: str | None = None,
            carry: dict[str, tuple[Path, list]] | None = None) -> dict:
    """Stage, gate, then atomically swap one partition into place. Returns the manifest.

    `gate=True` runs the table's own suite from its catalog entry (with run-time `params`); a callable
    receives the staged folder and raises to stop the publish (see echelon.expectations.gate).
    segment_by, carry ({file name: (published file, [rows, sum])}): see the module docstring; carried files
    are linked after the gate ran on the new rows (they were gated when first published)."""
    ds = parse_ds(ds)
    settings = get_settings()
    sweep_debris(table, settings.lake)
    staging, manifest = _stage(frame, table, ds, gate, extra, params, settings.lake, segment_by=segment_by,
                               carry=carry)
    try:
        target = table.partition(ds)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and _exchange(staging, target):
            _fsync(target.parent)
            return manifest   # staging now holds the old partition: deleted below
        aside = target.with_name(f".{target.name}.old.{uuid.uuid4().hex}.{_owner_tag()}")
        if target.exists():
            os.rename(target, aside)
        os.rename(staging, target)
        _fsync(target.parent)
        shutil.rmtree(aside, ignore_errors=True)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---- transactions: several tables, one commit ---------------------------------------------------------

def _manifest_commit(path: Path) -> str | None:
    try:
        return json.loads((path / MANIFEST).read_text()).get("commit")
    except (OSError, ValueError):
        return None


def _commit_records(lake: Path | None = None) -> list[tuple[Path, dict]]:
    root = (lake or get_settings().lake) / COMMITS
    records = []
    for path in sorted(root.glob("*.json")) if root.exists() else []:
        try:
            records.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue   # being replaced right now: the next look sees it whole
    return records


def _pending_parts(lake: Path | None = None) -> dict[tuple[str, str], dict]:
    """(table, ds) -> the uncommitted swap of some transaction (with its commit id and owner)."""
    return {(part["table"], part["ds"]): {**part, "commit": record["id"], "owner": record["owner"]}
            for _, record in _commit_records(lake) for part in record["parts"]}


def _write_record(path: Path, record: dict) -> None:
    """Replace the commit record atomically (write aside, fsync, rename, fsync the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record, indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, path)
    _fsync(path.parent)


def _roll_back(record: dict) -> None:
    """Put back every old copy a transaction swapped out; drop the partitions it created."""
    for part in reversed(record["parts"]):
        target, aside = Path(part["target"]), Path(part["aside"]) if part["aside"] else None
        if _manifest_commit(target) != record["id"]:
            continue   # never swapped in
        if aside is not None and aside.exists() and _exchange(aside, target):
            shutil.rmtree(aside, ignore_errors=True)
            continue
        debris = target.with_name(f".{target.name}.old.{uuid.uuid4().hex}.{_owner_tag()}")
        os.rename(target, debris)
        if aside is not None and aside.exists():
            os.rename(aside, target)
        shutil.rmtree(debris, ignore_errors=True)


def recover(lake: Path | None = None) -> list[str]:
    """Roll back the transactions of killed publishers on this host; returns their ids."""
    undone = []
    for path, record in _commit_records(lake):
        if not _owner_alive(path.stem):
            _roll_back(record)
            path.unlink(missing_ok=True)
            undone.append(record["id"])
    return undone


class Transaction:
    """Publishes made through `publish` are swapped in at once but committed together (see `transaction`)."""

    def __init__(self, ds: str, lake: Path):
        self.ds, self.lake = parse_ds(ds), lake
        self.id = f"{uuid.uuid4().hex}.{_owner_tag()}"
        self.path = lake / COMMITS / f"{self.id}.json"
        self.record = {"id": self.id, "owner": _owner_tag(), "ds": self.ds, "parts": []}
        self.manifests: dict[str, dict] = {}

    def publish(self, frame, table: Table, gate: Callable[[Path], None] | bool | None = None,
                extra: dict | None = None, params: dict | None = None, segment_by: str | None = None,
                carry: dict[str, tuple[Path, list]] | None = None) -> dict:
        sweep_debris(table, self.lake)
        staging, manifest = _stage(frame, table, self.ds, gate, extra, params, self.lake, commit=self.id,
                                   segment_by=segment_by, carry=carry)
        target = table.partition(self.ds, self.lake)
        target.parent.mkdir(parents=True, exist_ok=True)
        had_old = (target / MANIFEST).exists()
        aside = staging if had_old else None   # after the exchange the staged folder holds the old copy
        self.record["parts"].append({"table": str(table), "ds": self.ds, "target": str(target),
                                     "aside": str(aside) if aside else None})
        _write_record(self.path, self.record)   # before the swap: a kill after it is rolled back
        if had_old and not _exchange(staging, target):   # no atomic exchange here: aside, then in
            aside = self.lake / "_staging" / f"old.{uuid.uuid4().hex}.{_owner_tag()}"
            self.record["parts"][-1]["aside"] = str(aside)
            _write_record(self.path, self.record)
            os.rename(target, aside)
            os.rename(staging, target)
        elif not had_old:
            if target.exists():
                shutil.rmtree(target)   # a folder without a manifest: never published
            os.rename(staging, target)
        _fsync(target.parent)
        self.manifests[str(table)] = manifest
        return manifest

    def commit(self) -> None:
        self.path.unlink()   # the commit point
        _fsync(self.path.parent)
        for part in self.record["parts"]:
            if part["aside"]:
                shutil.rmtree(part["aside"], ignore_errors=True)

    def abort(self) -> None:
        _roll_back(self.record)
        self.path.unlink(missing_ok=True)


@contextmanager
def transaction(ds: str):
    """`with lake.transaction(ds) as tx: tx.publish(frame, TABLE, gate=...)` for each table of a task: all
    of them are committed when the block ends, or none (an error rolls them back; a kill is rolled back by
    the next publish). Gates of later tables see the earlier ones' new partitions (same process)."""
    lake = get_settings().lake
    recover(lake)
    tx = Transaction(ds, lake)
    try:
        yield tx
    except BaseException:
        tx.abort()
        raise
    tx.commit()


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
