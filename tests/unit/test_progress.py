"""Progress off a terminal: plain log lines with counts, throttled, always the first and the last."""
import logging

import pytest

from echelon.progress import steps, track


@pytest.fixture(autouse=True)
def not_a_terminal(monkeypatch):
    monkeypatch.setattr("echelon.progress.interactive", lambda: False)


def test_log_lines_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="echelon.progress")
    assert list(track(["a", "b", "c"], "train", unit="candidate", every_s=3600)) == ["a", "b", "c"]
    lines = [r.getMessage() for r in caplog.records if r.name == "echelon.progress"]
    # the first and the last; the middle one falls inside the hour-long interval
    assert len(lines) == 2
    assert lines[0].startswith("train: 1/3 candidates (33%)") and lines[0].endswith("[a done]")
    assert lines[1].startswith("train: 3/3 candidates (100%)") and lines[1].endswith("[c done]")


def test_every_step_logged_with_a_zero_interval(caplog):
    caplog.set_level(logging.INFO, logger="echelon.progress")
    with steps("world", total=None, unit="table", every_s=0) as advance:
        for name in ("items", "sales"):
            advance(name)
    lines = [r.getMessage() for r in caplog.records if r.name == "echelon.progress"]
    assert [line.split(",")[0] for line in lines] == ["world: 1 tables", "world: 2 tables"]
