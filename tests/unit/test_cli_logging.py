"""`--log-level` after any echelon command sets the logging level (the CLI configures logging once)."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ECHELON = Path(sys.executable).parent / "echelon"


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("logging") / "tiny.csv"
    pd.DataFrame({"item_id": "a", "timestamp": pd.date_range("2024-01-01", periods=30, freq="D"),
                  "target": range(30)}).to_csv(path, index=False)
    return path


def forecast(tiny_csv, *extra):
    # horizon 0 is bad input: the command logs the failure at DEBUG and exits 2 with one line
    return subprocess.run([str(ECHELON), "forecast", "--input", str(tiny_csv), "--output", str(tiny_csv.with_suffix(".out")),
                           "--horizon", "0", "--model", "seasonal_naive", *extra],
                          capture_output=True, text=True, timeout=300)


def test_log_level_debug_prints_debug_lines(tiny_csv):
    debug = forecast(tiny_csv, "--log-level", "DEBUG")
    assert debug.returncode == 2, debug.stderr[-2000:]
    assert "DEBUG echelon.models.demand.forecast: forecast failed" in debug.stderr
    quiet = forecast(tiny_csv)   # the default, INFO
    assert quiet.returncode == 2 and " DEBUG " not in quiet.stderr
    assert "INFO echelon.models.demand.forecast" in quiet.stderr   # the input summary line


def test_log_level_given_to_another_command_and_a_bad_level():
    from echelon.cli import split_log_level

    assert split_log_level(["train", "--ds", "2026-11-20", "--log-level", "debug"]) == ("DEBUG", ["train", "--ds", "2026-11-20"])
    bad = subprocess.run([str(ECHELON), "demand", "summary", "--ds", "2026-11-20", "--log-level", "LOUD"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "echelon demand: --log-level: unknown level 'LOUD'; choose DEBUG, INFO, WARNING or ERROR")


def test_log_lines_follow_stderr_after_the_caller_swaps_and_closes_it(tiny_csv, monkeypatch):
    """In one process (a test session, a tool calling main()), a command's log handler must write to the
    stderr of the moment: the one it started with may be closed by then ('--- Logging error ---')."""
    import io
    import logging

    from echelon.cli import main

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    assert main(["forecast", "--input", str(tiny_csv), "--output", str(tiny_csv.with_suffix(".out")),
                 "--horizon", "0", "--model", "seasonal_naive"]) == 2
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("echelon.test").warning("after the swap")
    assert "after the swap" in second.getvalue() and "Logging error" not in second.getvalue()
