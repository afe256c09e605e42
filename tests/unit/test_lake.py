"""The lake's publish contract: atomic swap, idempotent re-runs, manifests, partition isolation, and a
publisher SIGKILLed mid-write leaving nothing visible."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from echelon import lake

TABLE = lake.Table("raw", "test", "things")


def frame(n=5, offset=0):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "value": [float(k + offset) for k in range(n)]})


def test_publish_writes_partition_and_manifest(lake_dir):
    manifest = lake.publish(frame(), TABLE, "2026-11-20")
    assert manifest["rows"] == 5
    assert manifest["schema"] == {"item_id": "string", "value": "double"}
    on_disk = json.loads((TABLE.partition("2026-11-20") / lake.MANIFEST).read_text())
    assert on_disk["checksum"] == manifest["checksum"]
    back = lake.read(TABLE, "2026-11-20")
    assert list(back.columns) == ["ds", "item_id", "value"] and (back["ds"] == "2026-11-20").all()
    assert lake.partitions(TABLE) == ["2026-11-20"]


def test_republish_replaces_only_its_partition(lake_dir):
    lake.publish(frame(), TABLE, "2026-11-20")
    other = lake.publish(frame(offset=10), TABLE, "2026-11-21")
    replaced = lake.publish(frame(3, offset=100), TABLE, "2026-11-20")
    assert replaced["rows"] == 3
    assert lake.read(TABLE, "2026-11-20")["value"].tolist() == [100.0, 101.0, 102.0]
    assert lake.read_manifest(TABLE, "2026-11-21")["checksum"] == other["checksum"]
    assert not list(TABLE.root().glob(".ds=*")), "the old copy is removed after the swap"


def test_checksum_ignores_row_order_but_not_content(lake_dir):
    a = lake.publish(frame(), TABLE, "2026-11-20")["checksum"]
    b = lake.publish(frame().iloc[::-1], TABLE, "2026-11-21")["checksum"]
    c = lake.publish(frame(offset=1), TABLE, "2026-11-22")["checksum"]
    assert a == b and a != c


def test_checksum_streams_batch_by_batch_whatever_the_split(tmp_path):
    """describe reads batch by batch (bounded memory); the checksum does not depend on the batch size,
    the split of rows into files or their order -- also for an integer column whose nulls fall in some
    batches only (plain to_pandas would make those batches float64) -- and still sees a changed value."""
    whole = pd.DataFrame({"item_id": [f"i{k % 7}" for k in range(50)], "value": [k / 3 for k in range(50)],
                          "when": pd.date_range("2026-01-01", periods=50).date,
                          "count": pd.array([None if k == 45 else k for k in range(50)], dtype="Int64"),
                          "note": [None if k % 5 else f"n{k}" for k in range(50)]})
    split, single, changed = tmp_path / "split", tmp_path / "single", tmp_path / "changed"
    for folder in (split, single, changed):
        folder.mkdir()
    for k, start in enumerate(range(0, 50, 20)):
        whole.iloc[start:start + 20].to_parquet(split / f"part-{k}.parquet", index=False)
    whole.iloc[::-1].to_parquet(single / "part-0.parquet", index=False)
    whole.assign(count=whole["count"].where(whole.index != 3, 4)).to_parquet(changed / "part-0.parquet", index=False)
    small, large, one = lake.describe(split, batch_rows=3), lake.describe(split), lake.describe(single, batch_rows=7)
    assert small == large == one and small["rows"] == 50
    assert small["schema"] == {"item_id": "string", "value": "double", "when": "date32[day]", "count": "int64",
                               "note": "string"}
    assert lake.describe(changed)["checksum"] != small["checksum"]


def test_failed_gate_publishes_nothing_and_keeps_old(lake_dir):
    before = lake.publish(frame(), TABLE, "2026-11-20")

    def reject(staged):
        assert any(staged.glob("*.parquet")), "the gate sees the staged files"
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        lake.publish(frame(offset=5), TABLE, "2026-11-20", gate=reject)
    assert lake.read_manifest(TABLE, "2026-11-20") == before
    assert not any((lake_dir / "_staging").iterdir()), "staging is cleaned up"


def test_rows_for_another_date_are_rejected(lake_dir):
    bad = frame().assign(ds="2026-11-19")
    with pytest.raises(lake.LakeError, match="another date"):
        lake.publish(bad, TABLE, "2026-11-20")
    assert not lake.exists(TABLE, "2026-11-20")


def test_partition_dates_are_validated(lake_dir):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        lake.publish(frame(), TABLE, "20261120")
    with pytest.raises(lake.LakeError, match="no published partition ds=2026-01-01"):
        lake.read(TABLE, "2026-01-01")


def test_spark_and_pandas_writes_give_the_same_manifest(lake_dir, spark):
    pdf = frame(50)
    from_pandas = lake.publish(pdf, TABLE, "2026-11-20")
    from_spark = lake.publish(spark.createDataFrame(pdf).repartition(3), TABLE, "2026-11-21")
    assert from_pandas["checksum"] == from_spark["checksum"]
    assert lake.read_spark(spark, TABLE, "2026-11-21").count() == 50


# A publisher of a partition large enough that writing it takes seconds (a pandas frame: no JVM to start).
KILLED_WRITER = """
import sys
import numpy as np, pandas as pd
from echelon import lake
rows = int(sys.argv[1])
rng = np.random.default_rng(0)
frame = pd.DataFrame({"item_id": rng.integers(0, 10**9, rows), "value": rng.random(rows)})
lake.publish(frame, lake.Table("raw", "test", "things"), "2026-11-20")
"""


def test_publisher_killed_mid_write_leaves_the_old_partition_and_a_retry_succeeds(lake_dir):
    before = lake.publish(frame(), TABLE, "2026-11-20")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, "3000000"],
                              env={**os.environ, "ECHELON_LAKE": str(lake_dir)}, stderr=subprocess.PIPE, text=True)
    staging = lake_dir / "_staging"
    try:
        while not list(staging.glob("raw.test.things.2026-11-20.*/*.parquet")):   # its part file is being written
            assert writer.poll() is None, f"the writer ended before it could be killed:\n{writer.stderr.read()}"
            time.sleep(0.01)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    debris = list(staging.iterdir())
    assert [p.name.rpartition("@")[0].rpartition(".")[2] for p in debris] == [str(writer.pid)], debris

    # readers see the old partition, whole, and its manifest unchanged
    assert lake.read_manifest(TABLE, "2026-11-20") == before
    assert lake.read(TABLE, "2026-11-20")["value"].tolist() == frame()["value"].tolist()
    assert lake.partitions(TABLE) == ["2026-11-20"]
    assert lake.describe(TABLE.partition("2026-11-20"))["checksum"] == before["checksum"]

    # the retry publishes, and sweeps the dead writer's staging folder away
    retried = lake.publish(frame(7, offset=1), TABLE, "2026-11-20")
    assert lake.read_manifest(TABLE, "2026-11-20") == retried and retried["rows"] == 7
    assert list(staging.iterdir()) == [] and list(TABLE.root().glob(".ds=*")) == []


def test_sweep_leaves_the_staging_of_live_publishers(lake_dir):
    live = lake_dir / "_staging" / f"raw.test.things.2026-11-20.{'0' * 32}.{os.getpid()}@{socket.gethostname()}"
    foreign = lake_dir / "_staging" / f"raw.test.things.2026-11-20.{'1' * 32}.1@another-host"
    for folder in (live, foreign):
        folder.mkdir(parents=True)
    lake.publish(frame(), TABLE, "2026-11-20")
    assert live.exists() and foreign.exists(), "a publisher still writing (or on another host) is never disturbed"


def test_publish_without_an_atomic_exchange_falls_back_to_rename_aside(lake_dir, monkeypatch):
    lake.publish(frame(), TABLE, "2026-11-20")
    monkeypatch.setattr(lake, "_exchange", lambda a, b: False)   # e.g. a filesystem without renameat2
    replaced = lake.publish(frame(2, offset=50), TABLE, "2026-11-20")
    assert lake.read_manifest(TABLE, "2026-11-20") == replaced
    assert lake.read(TABLE, "2026-11-20")["value"].tolist() == [50.0, 51.0]
    assert list(TABLE.root().glob(".ds=*")) == [] and list((lake_dir / "_staging").iterdir()) == []


def test_a_partition_carries_an_earlier_ones_segment_files_as_hard_links(lake_dir, spark):
    """segment_by writes one set of files per segment (the column not stored); carry hard-links files of an
    earlier partition with their recorded sums: the same rows and checksum as writing them all anew."""
    from pyspark.sql import functions as F

    old, new = frame(20), frame(6, offset=100).assign(item_id=lambda f: "n" + f["item_id"])
    segment = F.when(F.col("value") < 10, F.lit("low")).otherwise(F.lit("high"))
    first = lake.publish(spark.createDataFrame(old).withColumn("seg", segment), TABLE, "2026-11-20", segment_by="seg")
    names = set(first["row_sums"])
    assert names and all(n.startswith(("low-", "high-")) for n in names)
    assert set(lake.read(TABLE, "2026-11-20").columns) == {"ds", "item_id", "value"}
    low = {n: (TABLE.partition("2026-11-20") / n, s) for n, s in first["row_sums"].items() if n.startswith("low-")}
    gated = []
    second = lake.publish(spark.createDataFrame(new).withColumn("seg", F.lit("new")), TABLE, "2026-11-21",
                          segment_by="seg", carry=low, gate=lambda staged: gated.append(len(pd.read_parquet(staged))))
    assert gated == [6]                                       # the gate saw the new rows only
    whole = pd.concat([old[old["value"] < 10], new], ignore_index=True)
    assert second["checksum"] == lake.publish(whole, TABLE, "2026-11-22")["checksum"]
    assert second["rows"] == len(whole) == len(lake.read(TABLE, "2026-11-21"))
    for name, (source, _) in low.items():
        assert (TABLE.partition("2026-11-21") / name).stat().st_ino == source.stat().st_ino


def test_describe_of_a_published_partition_uses_the_manifests_per_file_sums(lake_dir, monkeypatch):
    """describe() reads no rows of a published partition: each file's [rows, row-hash sum] is in the manifest
    (checked against the file's size and SHA-256); a file that no longer matches is hashed again."""
    published = lake.publish(frame(), TABLE, "2026-11-20")
    assert all("row_sum" in entry for entry in published["files"].values())
    folder = TABLE.partition("2026-11-20")
    real_hash_sum, hashed = lake._hash_sum, []
    monkeypatch.setattr(lake, "_hash_sum", lambda path, rows: hashed.append(path.name) or real_hash_sum(path, rows))
    assert lake.describe(folder)["checksum"] == published["checksum"] and hashed == []
    (part,) = folder.glob("*.parquet")
    frame(offset=1).drop(columns="ds", errors="ignore").to_parquet(part, index=False)   # altered in place
    assert lake.describe(folder)["checksum"] != published["checksum"] and hashed == [part.name]
