"""`echelon checksums`: the before/after comparison of every published partition (issue 17)."""
import json

import pandas as pd
import pytest

from echelon import checksums, cli, lake
from echelon.catalog.demand import RAW_SALES
from echelon.catalog.placement import PLAN


def frame(offset=0):
    return pd.DataFrame({"item_id": ["a", "b"], "target": [1.0 + offset, 2.0]})


def test_same_rows_compare_identical_and_a_changed_row_is_named(lake_dir, tmp_path, capsys):
    lake.publish(frame(), RAW_SALES, "2026-11-20")
    lake.publish(frame(), PLAN, "2026-11-20")
    assert cli.main(["checksums", "dump", "--output", str(tmp_path / "before.json")]) == 0
    before = json.loads((tmp_path / "before.json").read_text())
    assert sorted(before) == ["published/placement/placement_plan/ds=2026-11-20", "raw/demand/sales/ds=2026-11-20"]

    lake.publish(frame().iloc[::-1], RAW_SALES, "2026-11-20")   # same rows, another order: same table
    after = checksums.dump(lake_dir)
    assert checksums.compare(before, after) == []

    lake.publish(frame(offset=1), PLAN, "2026-11-20")
    lake.publish(frame(), RAW_SALES, "2026-11-21")
    (tmp_path / "after.json").write_text(json.dumps(checksums.dump(lake_dir)))
    capsys.readouterr()
    assert cli.main(["checksums", "compare", str(tmp_path / "before.json"), str(tmp_path / "after.json")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["new after: raw/demand/sales/ds=2026-11-21",
                   "differs: published/placement/placement_plan/ds=2026-11-20 (rows 2 -> 2)"]


def test_a_file_that_is_not_a_dump_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(SystemExit) as stop:
        cli.main(["checksums", "compare", str(tmp_path / "bad.json"), str(tmp_path / "bad.json")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and "not a checksum dump" in err[0]
