"""Issue 18 item 4: every bad input ends in one line naming the input and exit status 2 (never a traceback,
never a wrong answer), and nothing already published changes. benchmarks/reliability.py runs the same cases
as console commands and records them in benchmarks/results/reliability.md."""
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from echelon import cli, lake

ECHELON = Path(sys.executable).parent / "echelon"
LATIN1 = "item_id,timestamp,target\ncaf\xe9,2024-01-01,1\n".encode("latin-1")


LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ (DEBUG|INFO|WARNING) ")   # echelon.cli's LOG_FORMAT


def one_line(capsys) -> str:
    """The error output without log lines: exactly one line, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not LOG_LINE.match(line)]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ---- the CLI itself --------------------------------------------------------------------------------

def test_a_malformed_date_is_one_line_and_exit_2(capsys):
    assert cli.main(["demand", "summary", "--ds", "2026/11/20"]) == 2
    assert one_line(capsys) == ("echelon demand: ValueError: partition date must be YYYY-MM-DD, got '2026/11/20'")


def test_an_unexpected_error_is_one_line_with_the_way_to_its_traceback(tmp_path):
    # a folder where a CSV is expected: pandas' IsADirectoryError is no project error, yet no traceback
    (tmp_path / "requests.csv").mkdir()
    argv = [str(ECHELON), "capacity", "period", "--rounds", str(tmp_path), "--output", str(tmp_path / "o"),
            "--incremental-sales", str(tmp_path / "requests.csv")]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    debug = subprocess.run(argv + ["--log-level", "DEBUG"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "echelon.cli: echelon capacity failed" in debug.stderr


def test_a_multi_line_error_is_still_one_line(capsys):
    from echelon.expectations.gate import GateFailed

    def failing_gate():
        raise GateFailed("gate 'sales' failed for table raw/demand/sales, partition ds=2026-11-20:\n"
                         "  - expect_column_values_to_not_be_null(units): 3 rows\n\n"
                         "  - expect_column_values_to_be_between(units): 1 row")

    assert cli.run_reporting("demand", failing_gate) == 2
    assert one_line(capsys) == ("echelon demand: GateFailed: gate 'sales' failed for table raw/demand/sales, "
                                "partition ds=2026-11-20:; - expect_column_values_to_not_be_null(units): 3 rows; "
                                "- expect_column_values_to_be_between(units): 1 row")


# ---- forecast files --------------------------------------------------------------------------------

def day_first(tmp_path, rows):
    path = tmp_path / "dayfirst.csv"
    path.write_text("item_id,timestamp,target\n" + "".join(f"a,{d},{k}\n" for k, d in enumerate(rows)))
    return path


def test_ambiguous_day_first_dates_are_refused_unless_a_format_is_given(tmp_path, capsys):
    from echelon.formats import read_any

    path = day_first(tmp_path, [f"{d:02d}/03/2024" for d in range(1, 13)])   # every day <= 12
    assert cli.main(["forecast", "--input", str(path), "--output", str(tmp_path / "o.csv"), "--horizon", "2",
                     "--model", "seasonal_naive"]) == 2
    err = one_line(capsys)
    assert str(path) in err and "read both day-first and month-first" in err and "--date-format" in err
    assert not (tmp_path / "o.csv").exists()
    read = read_any(path, "%d/%m/%Y")
    assert read["timestamp"].min() == pd.Timestamp("2024-03-01") and read["timestamp"].max() == pd.Timestamp("2024-03-12")


def test_day_first_dates_that_say_so_are_read_day_first(tmp_path):
    from echelon.formats import read_any

    path = day_first(tmp_path, [f"{d:02d}/03/2024" for d in range(1, 20)])   # 13..19 decide it
    assert read_any(path)["timestamp"].max() == pd.Timestamp("2024-03-19")


def test_a_date_format_that_does_not_match_names_the_values(tmp_path):
    from echelon.formats import InputFormatError, read_any

    path = day_first(tmp_path, ["01/03/2024", "2024-03-02"])
    with pytest.raises(InputFormatError, match=r"do not match --date-format '%d/%m/%Y', e.g. \['2024-03-02'\]"):
        read_any(path, "%d/%m/%Y")


def test_a_huge_horizon_is_refused_at_once(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["forecast", "--input", str(tmp_path / "x.csv"), "--output", str(tmp_path / "o.csv"),
                  "--horizon", "100000"])
    assert stop.value.code == 2
    assert "--horizon: at most 3660 steps, got 100000" in capsys.readouterr().err


def test_a_forecast_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes(LATIN1)
    assert cli.main(["forecast", "--input", str(path), "--output", str(tmp_path / "o.csv"), "--horizon", "2"]) == 2
    err = one_line(capsys)
    assert f"{path}: cannot be parsed as CSV: not UTF-8 (byte 0xe9" in err


# ---- capacity requests -----------------------------------------------------------------------------

REQUESTS = ("request_id,seller_id,storage_type,max_fee_per_cuft,cuft_requested,submitted_at\n"
            "007,S1,standard,5.0,100,2026-11-20T10:00:00Z\n7,S2,standard,4.0,100,2026-11-20T11:00:00Z\n")


def clear(tmp_path, requests: Path, *extra) -> int:
    return cli.main(["capacity", "clear", "--requests", str(requests), "--capacity", "150",
                     "--output", str(tmp_path / "out"), *extra])


@pytest.mark.parametrize("case, content, message", [
    ("missing", None, "no such requests file"),
    ("empty", b"", "the requests file is empty (no header, no rows)"),
    ("header only", REQUESTS.splitlines()[0].encode() + b"\n", "a header and no requests: nothing to clear"),
    ("not utf-8", REQUESTS.replace("S1", "S\xe9").encode("latin-1"), "not UTF-8 (byte 0xe9"),
])
def test_unreadable_requests_are_named(tmp_path, capsys, case, content, message):
    path = tmp_path / "requests.csv"
    if content is not None:
        path.write_bytes(content)
    assert clear(tmp_path, path) == 2
    err = one_line(capsys)
    assert err.startswith(f"echelon capacity: RequestError: {path}: ") and message in err
    assert not (tmp_path / "out").exists()


def test_a_cutoff_in_words_is_refused(tmp_path, capsys):
    path = tmp_path / "requests.csv"
    path.write_text(REQUESTS)
    assert clear(tmp_path, path, "--cutoff", "yesterday") == 2
    assert "--cutoff 'yesterday': expected an ISO date or time" in one_line(capsys)


def test_request_ids_are_text_so_007_and_7_are_two_requests(tmp_path, capsys):
    path = tmp_path / "requests.csv"
    path.write_text(REQUESTS)
    assert clear(tmp_path, path, "--cutoff", "2026-11-20T23:59:59Z") == 0
    grants = pd.read_csv(tmp_path / "out" / "grants.csv", dtype={"request_id": str}).set_index("request_id")
    assert grants["cuft_granted"].to_dict() == {"007": 100.0, "7": 50.0}


# ---- callouts ope logs -----------------------------------------------------------------------------

def ope_logs(folder: Path, impressions: str | bytes) -> Path:
    folder.mkdir()
    data = impressions if isinstance(impressions, bytes) else impressions.encode()
    (folder / "impressions.csv").write_bytes(data)
    (folder / "clicks.csv").write_text("impression_id,clicked_at\n")
    return folder


IMPRESSIONS = "impression_id,segment,callout_id,layout_id,propensity,shown_at\n"


@pytest.mark.parametrize("case, rows, message", [
    ("no shown_at", "impression_id,segment,callout_id,layout_id,propensity\ni1,s0,c0,default,0.5\n",
     "impressions: missing column(s) ['shown_at']"),
    ("propensity abc", IMPRESSIONS + "i1,s0,c0,default,abc,2026-11-01T00:00:00Z\n",
     "impressions: 1 non-numeric `propensity` values (rows [0]: ['abc'])"),
    ("not utf-8", (IMPRESSIONS + "i1,s\xe9,c0,default,0.5,2026-11-01T00:00:00Z\n").encode("latin-1"),
     "impressions.csv: not UTF-8 (byte 0xe9"),
])
def test_bad_ope_logs_are_named(tmp_path, capsys, case, rows, message):
    folder = ope_logs(tmp_path / "logs", rows)
    assert cli.main(["callouts", "ope", "--logs", str(folder), "--policy", "uniform",
                     "--output", str(tmp_path / "out")]) == 2
    err = one_line(capsys)
    assert message in err and str(folder) in err
    assert not (tmp_path / "out").exists()


# ---- python -m echelon.jobs.demand.ingest --input goes through the gate ----------------------------

def test_ingest_of_a_file_goes_through_the_gate(tmp_path, lake_dir, spark, capsys):
    from echelon.catalog.demand import RAW_PLAN, RAW_SALES
    from echelon.jobs.demand import ingest

    days = [d for d in pd.date_range("2024-01-01", "2024-02-29", freq="D") if not "2024-02-01" <= str(d.date()) <= "2024-02-10"]
    path = tmp_path / "gap.csv"
    pd.DataFrame({"item_id": "a", "timestamp": [d.date().isoformat() for d in days], "target": 1.0}).to_csv(path, index=False)
    assert ingest.main(["--input", str(path), "--history-days", "60"]) == 2   # GateFailed: bad input
    err = capsys.readouterr().err
    assert re.search(r"GateFailed: .*raw/demand/sales.*_days_since_prev", err, re.S), err
    assert lake.partitions(RAW_SALES) == [] and lake.partitions(RAW_PLAN) == []
    # the same file without its gap passes; it has no rows after ds, so its plan is empty (and ungated)
    full = pd.date_range("2024-01-01", "2024-02-29", freq="D").strftime("%Y-%m-%d")
    pd.DataFrame({"item_id": "a", "timestamp": full, "target": 1.0}).to_csv(path, index=False)
    assert ingest.main(["--input", str(path), "--history-days", "60"]) == 0
    assert lake.read_manifest(RAW_SALES, "2024-02-29")["rows"] == 60 and lake.read_manifest(RAW_PLAN, "2024-02-29")["rows"] == 0
