"""Bad input to capacity rounds: the file front (`echelon capacity clear` / `period`).

Where each rule is tested (so that no case needs a Spark world of its own):
- every bad request the issue lists (negative/zero fees or volumes, unknown sellers or storage types,
  duplicate ids, requests after the cut-off, missing columns), missing/negative/NaN program capacity and
  negative or missing utilisation: on the pure functions, tests/unit/test_capacity_mechanism.py;
- at the level of the lake, ONE bad round that fails at the loader (steps.requests) and at clearing
  (capacity_prices missing) with a message naming table, partition and problems, leaving every published
  partition byte-identical (manifest checksum), and the Great Expectations gate's own catch of an unknown
  seller: tests/dag/test_capacity_e2e.py, on the published November round the end-to-end test builds
  anyway (before the DAG closes that period);
- a round re-run after its period closed, and a closed period's statements never rewritten: also there.
"""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BIN = Path(sys.executable).parent


def cli(*args):
    """`echelon capacity ...` in-process: the console script's own entry point, without a new interpreter."""
    from echelon.cli import main

    return main(["capacity", *map(str, args)])


def test_clear_and_period_on_files_reproduce_the_worked_example(tmp_path):
    rows = [("r1", "S_A", "standard", 6, 5000, "2026-11-01T10:00:00Z"), ("r2", "S_B", "standard", 3, 4000, "2026-11-01T11:00:00Z")]
    later = [("r3", "S_C", "standard", 7, 3000, "2026-11-08T10:00:00Z"), ("r4", "S_D", "standard", 4, 3000, "2026-11-08T11:00:00Z")]
    columns = ["request_id", "seller_id", "storage_type", "max_fee_per_cuft", "cuft_requested", "submitted_at"]
    for name, data in (("w1", rows), ("w2", later)):
        pd.DataFrame(data, columns=columns).to_csv(tmp_path / f"{name}.csv", index=False)
        assert cli("clear", "--requests", tmp_path / f"{name}.csv", "--capacity", "5000", "--output", tmp_path / name) == 0
    assert json.loads((tmp_path / "w1" / "summary.json").read_text())["clearing_price"] == 6.0
    summary = json.loads((tmp_path / "w2" / "summary.json").read_text())
    assert (summary["clearing_price"], summary["granted_cuft"], summary["capacity_cuft"]) == (4.0, 5000.0, 5000.0)
    grants = pd.read_csv(tmp_path / "w1" / "grants.csv")
    assert list(grants.columns[:3]) == ["request_id", "cuft_granted", "fee_per_cuft"]
    pd.DataFrame({"seller_id": ["S_A"], "incremental_sales": [300000.0]}).to_csv(tmp_path / "sales.csv", index=False)
    assert cli("period", "--rounds", tmp_path / "w1", tmp_path / "w2", "--incremental-sales", tmp_path / "sales.csv",
               "--output", tmp_path / "period") == 0
    seller_a = pd.read_csv(tmp_path / "period" / "statements.csv").set_index("seller_id").loc["S_A"]
    assert (seller_a["fee"], seller_a["credit"], seller_a["net_charge"]) == (20000.0, 20000.0, 0.0)


def test_clear_on_a_bad_file_names_the_problem_and_writes_nothing(tmp_path, capsys):
    pd.DataFrame({"request_id": ["a", "a"], "seller_id": ["S1", "S2"], "storage_type": "standard",
                  "max_fee_per_cuft": [5.0, -1.0], "cuft_requested": [10.0, 10.0],
                  "submitted_at": "2026-11-01T00:00:00Z"}).to_csv(tmp_path / "bad.csv", index=False)
    # the installed console script, once: a failing exit status with the problems on stderr
    out = subprocess.run([str(BIN / "echelon"), "capacity", "clear", "--requests", str(tmp_path / "bad.csv"),
                          "--capacity", "100", "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "duplicate request_id" in out.stderr and "negative, zero or infinite fees" in out.stderr, out.stderr[-2000:]
    assert out.stderr.startswith("echelon capacity: RequestError:") and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "out").exists()
    assert cli("clear", "--requests", tmp_path / "bad.csv", "--capacity", "-5", "--output", tmp_path / "out") == 2
    assert "echelon capacity: CapacityError: program capacity" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
