"""Issue 18: a task's tables publish together or not at all (lake.transaction), and reads verify each
file against the manifest (sizes, parquet footers, SHA-256) instead of returning whatever is on disk."""
import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from echelon import lake

SALES, PLAN = lake.Table("raw", "test", "sales"), lake.Table("raw", "test", "plan")
DS = "2026-11-20"


def frame(n=5, offset=0):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "value": [float(k + offset) for k in range(n)]})


def publish_pair(offset):
    with lake.transaction(DS) as tx:
        return tx.publish(frame(offset=offset), SALES), tx.publish(frame(offset=offset), PLAN)


def test_a_transaction_commits_both_tables_and_leaves_nothing_behind(lake_dir):
    publish_pair(0)
    sales, plan = publish_pair(10)
    assert lake.read_manifest(SALES, DS) == sales and lake.read_manifest(PLAN, DS) == plan
    assert lake.read(PLAN, DS)["value"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert list((lake_dir / "_commits").iterdir()) == [] and list((lake_dir / "_staging").iterdir()) == []


def test_a_failing_second_table_puts_the_first_back(lake_dir):
    old = publish_pair(0)

    def refuse(staged):
        raise RuntimeError("plan gate refused")

    with pytest.raises(RuntimeError, match="plan gate refused"):
        with lake.transaction(DS) as tx:
            tx.publish(frame(offset=10), SALES)
            assert lake.read(SALES, DS)["value"].iloc[0] == 10.0   # this process sees its own swap
            tx.publish(frame(offset=10), PLAN, gate=refuse)
    assert (lake.read_manifest(SALES, DS), lake.read_manifest(PLAN, DS)) == old
    assert lake.read(SALES, DS)["value"].iloc[0] == 0.0
    assert list((lake_dir / "_commits").iterdir()) == [] and list((lake_dir / "_staging").iterdir()) == []


# Publishes sales in a transaction, says so, then waits to be killed before plan.
KILLED_BETWEEN_TABLES = """
import sys, time
import pandas as pd
from echelon import lake
frame = pd.DataFrame({"item_id": ["i0", "i1"], "value": [99.0, 98.0]})
with lake.transaction("2026-11-20") as tx:
    tx.publish(frame, lake.Table("raw", "test", "sales"))
    print("sales swapped", flush=True)
    time.sleep(120)
    tx.publish(frame, lake.Table("raw", "test", "plan"))
"""


@pytest.mark.parametrize("had_old", [True, False])
def test_a_task_killed_between_tables_leaves_the_old_pair(lake_dir, had_old):
    old = publish_pair(0) if had_old else None
    writer = subprocess.Popen([sys.executable, "-c", KILLED_BETWEEN_TABLES], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "ECHELON_LAKE": str(lake_dir)})
    try:
        assert writer.stdout.readline().strip() == "sales swapped"
        # the new sales are in place on disk, but uncommitted: other processes still see the old pair
        assert json.loads((SALES.partition(DS) / lake.MANIFEST).read_text())["rows"] == 2
        assert lake.exists(SALES, DS) == had_old
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    if had_old:
        assert (lake.read_manifest(SALES, DS), lake.read_manifest(PLAN, DS)) == old
        assert lake.read(SALES, DS)["value"].tolist() == frame()["value"].tolist()
        assert lake.partitions(SALES) == [DS]
    else:
        assert not lake.exists(SALES, DS) and lake.partitions(SALES) == []
    assert lake.recover() and list((lake_dir / "_commits").iterdir()) == []   # rolled back on disk too
    assert lake.exists(SALES, DS) == had_old
    if had_old:
        assert lake.read_manifest(SALES, DS) == old[0] and not list(SALES.root().glob(".ds=*"))
    retried = publish_pair(5)
    assert (lake.read_manifest(SALES, DS), lake.read_manifest(PLAN, DS)) == retried


def test_a_transaction_without_an_atomic_exchange_still_rolls_back(lake_dir, monkeypatch):
    old = publish_pair(0)
    monkeypatch.setattr(lake, "_exchange", lambda a, b: False)
    with pytest.raises(KeyError):
        with lake.transaction(DS) as tx:
            tx.publish(frame(offset=10), SALES)
            raise KeyError("boom")
    assert lake.read_manifest(SALES, DS) == old[0]
    assert publish_pair(3)[0] == lake.read_manifest(SALES, DS)


# ---- verified reads -------------------------------------------------------------------------------

def part_file(table):
    return next(table.partition(DS).glob("*.parquet"))


def both_readers(spark):
    """The two read paths: pandas (`read`) and Spark (`read_spark`, counted so that the executors read)."""
    return {"read": lambda: lake.read(SALES, DS), "read_spark": lambda: lake.read_spark(spark, SALES, DS).count()}


def test_the_manifest_lists_each_file_with_size_rows_and_hash(lake_dir):
    manifest = lake.publish(frame(), SALES, DS)
    (name, entry), = manifest["files"].items()
    assert name == "part-00000.parquet" and entry["rows"] == 5
    assert entry["bytes"] == part_file(SALES).stat().st_size and len(entry["sha256"]) == 64


def test_a_file_swapped_for_another_with_fewer_rows_is_refused(lake_dir, spark):
    lake.publish(frame(240), SALES, DS)
    frame(236).to_parquet(part_file(SALES), index=False)
    for reader in both_readers(spark).values():
        with pytest.raises(lake.LakeError, match=r"raw/test/sales ds=2026-11-20: part-00000.parquet has \d+ bytes"):
            reader()


def test_a_file_swapped_for_one_of_the_same_size_and_rows_is_refused_by_both_readers(lake_dir, spark):
    """Sizes and footers agree (another partition's file of the same shape): only the hash tells."""
    lake.publish(frame(240), SALES, DS)
    other = lake.Table("raw", "test", "other")
    lake.publish(frame(240).assign(item_id=lambda f: f["item_id"].str.replace("i", "j")), other, DS)
    entry = lake.read_manifest(SALES, DS)["files"]["part-00000.parquet"]
    assert lake.read_manifest(other, DS)["files"]["part-00000.parquet"]["bytes"] == entry["bytes"]
    part_file(SALES).write_bytes(part_file(other).read_bytes())
    for reader in both_readers(spark).values():
        with pytest.raises(lake.LakeError, match="raw/test/sales ds=2026-11-20: part-00000.parquet does not match "
                                                 "its checksum"):
            reader()


def test_an_altered_file_of_the_same_size_and_rows_is_refused(lake_dir, spark):
    lake.publish(frame(), SALES, DS)
    path = part_file(SALES)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF                     # one flipped byte in a data page: same size, same footer
    path.write_bytes(bytes(data))
    for reader in both_readers(spark).values():
        with pytest.raises(lake.LakeError, match="part-00000.parquet does not match its checksum"):
            reader()


def test_a_truncated_file_is_a_lake_error_not_an_arrow_traceback(lake_dir, spark):
    lake.publish(frame(), SALES, DS)
    path = part_file(SALES)
    entry = lake.read_manifest(SALES, DS)["files"]["part-00000.parquet"]
    path.write_bytes(path.read_bytes()[: entry["bytes"] // 2])
    for reader in both_readers(spark).values():
        with pytest.raises(lake.LakeError, match="raw/test/sales ds=2026-11-20: part-00000.parquet has"):
            reader()


def test_a_missing_or_extra_file_is_refused(lake_dir):
    lake.publish(frame(), SALES, DS)
    frame().to_parquet(SALES.partition(DS) / "part-00001.parquet", index=False)
    with pytest.raises(lake.LakeError, match=r"files differ from the manifest \(missing \[\], unexpected \['part-00001"):
        lake.read(SALES, DS)
    for name in ("part-00000.parquet", "part-00001.parquet"):
        (SALES.partition(DS) / name).unlink()
    with pytest.raises(lake.LakeError, match=r"missing \['part-00000.parquet'\]"):
        lake.read(SALES, DS)


def test_spark_written_partitions_verify_too(lake_dir, spark):
    manifest = lake.publish(spark.createDataFrame(frame(50)).repartition(3), SALES, DS)
    assert sum(e["rows"] for e in manifest["files"].values()) == 50
    assert lake.read_spark(spark, SALES, DS).count() == 50 and len(lake.read(SALES, DS)) == 50


# ---- adopted by the jobs: callouts' day of logs ----------------------------------------------------

def test_a_callouts_day_whose_clicks_fail_their_gate_keeps_the_old_impressions(lake_dir, spark, tmp_path):
    """Impressions and the catalog pass their gates and are swapped in, then the clicks gate refuses a click
    for an unknown impression: the whole day is rolled back to what was published before."""
    from echelon.catalog.callouts import CATALOG, CLICKS, IMPRESSIONS
    from echelon.expectations.gate import GateFailed
    from echelon.jobs.callouts import ingest

    def logs(folder, n, clicked):
        folder.mkdir()
        pd.DataFrame({"impression_id": [f"i{k}" for k in range(n)], "segment": "s1", "callout_id": "c0",
                      "layout_id": "h0-b0-i0-r0", "position": 1, "propensity": 0.5,
                      "shown_at": f"{DS}T10:00:00Z"}).to_csv(folder / "impressions.csv", index=False)
        pd.DataFrame({"impression_id": clicked, "clicked_at": f"{DS}T11:00:00Z"}).to_csv(folder / "clicks.csv", index=False)
        return folder

    ingest.run(DS, logs=logs(tmp_path / "good", 3, ["i0"]))
    before = {str(t): lake.read_manifest(t, DS) for t in (IMPRESSIONS, CATALOG, CLICKS)}
    with pytest.raises(GateFailed, match="callouts"):
        ingest.run(DS, logs=logs(tmp_path / "bad", 5, ["i1", "ghost"]))
    assert {str(t): lake.read_manifest(t, DS) for t in (IMPRESSIONS, CATALOG, CLICKS)} == before
    assert len(lake.read(IMPRESSIONS, DS)) == 3 and list((lake_dir / "_commits").iterdir()) == []
