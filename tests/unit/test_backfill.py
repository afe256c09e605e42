"""Data dates -> the logical dates Airflow's backfill takes, and the run limit a backfill may use."""
import datetime as dt

import pytest
from croniter import croniter

from echelon.backfill import BackfillError, active_runs, backfill_command, run_window
from echelon.schedule import NIGHTLY_CRON, WEEKLY_CRON, data_partition


def runs_in_window(cron: str, start: str, end: str) -> list[str]:
    """The data dates of the cron's runs whose logical dates fall in the backfill window."""
    first, last = run_window(start, end)
    times = croniter(cron, first - dt.timedelta(seconds=1))
    out = []
    while (when := times.get_next(dt.datetime)) <= last:
        out.append(data_partition(when))
    return out


@pytest.mark.parametrize("cron", [NIGHTLY_CRON, "0 3 * * *", "59 23 * * *"])
def test_daily_dags_process_exactly_the_asked_data_dates(cron):
    assert runs_in_window(cron, "2026-11-01", "2026-11-05") == [f"2026-11-0{d}" for d in range(1, 6)]


def test_weekly_rounds_include_the_last_sunday():
    # capacity rounds cut off on Sundays and clear on the Monday after, at 04:00
    assert runs_in_window(WEEKLY_CRON, "2026-11-01", "2026-11-29") == ["2026-11-01", "2026-11-08", "2026-11-15",
                                                                       "2026-11-22", "2026-11-29"]
    assert runs_in_window(WEEKLY_CRON, "2026-11-02", "2026-11-07") == []


def test_an_empty_range_is_refused():
    with pytest.raises(BackfillError, match="--from 2026-11-05 is after --to 2026-11-04"):
        backfill_command("demand_nightly", "2026-11-05", "2026-11-04", 1)


def test_the_run_limit_defaults_to_the_dags_own_and_cannot_exceed_it():
    assert active_runs("demand_nightly", None, 2) == 2
    assert active_runs("demand_nightly", 1, 2) == 1
    with pytest.raises(BackfillError, match="capacity_weekly allows 1 active run"):
        active_runs("capacity_weekly", 2, 1)
    with pytest.raises(BackfillError, match="at least 1"):
        active_runs("capacity_weekly", 0, 1)


def test_the_command_carries_the_window_and_limit():
    command = backfill_command("capacity_weekly", "2026-11-22", "2026-11-29", 1)
    assert command[command.index("--from-date") + 1] == "2026-11-23T00:00:00+00:00"
    assert command[command.index("--to-date") + 1] == "2026-11-30T23:59:59+00:00"
    assert command[command.index("--max-active-runs") + 1] == "1"


def test_the_console_command_refuses_an_empty_range_with_a_message_not_a_traceback():
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([str(Path(sys.executable).with_name("echelon")), "backfill", "--dag", "demand_nightly",
                          "--from", "2026-11-05", "--to", "2026-11-04"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2   # bad input (issue 18: exit 2)
    assert out.stderr.strip() == "echelon backfill: BackfillError: backfill range is empty: --from 2026-11-05 is after --to 2026-11-04"


def test_a_create_that_met_a_locked_database_is_tried_again_and_nothing_else_is(capsys):
    import subprocess

    from echelon.backfill import create_retrying_locks

    def attempts(*results):
        calls = iter(results)
        made = []

        def create():
            made.append(next(calls))
            return subprocess.CompletedProcess([], made[-1][0], stdout="", stderr=made[-1][1])
        return create, made

    create, made = attempts((1, "sqlite3.OperationalError: database is locked"), (0, "Created backfill"))
    assert create_retrying_locks(create, wait_s=0).returncode == 0 and len(made) == 2
    assert "database is locked" in capsys.readouterr().err          # Airflow's output is still shown
    create, made = attempts((1, "Another backfill is running for Dag demand_nightly"), (0, ""))
    assert create_retrying_locks(create, wait_s=0).returncode == 1 and len(made) == 1
    create, made = attempts(*[(1, "database is locked")] * 3)
    assert create_retrying_locks(create, attempts=3, wait_s=0).returncode == 1 and len(made) == 3


def test_a_dag_airflow_cannot_backfill_gets_one_run_per_data_date():
    """placement_nightly (Asset-scheduled): each data date a run with the nightly logical date of that day;
    an existing run is cleared to run again as --reprocess says, a queued or running one left alone."""
    from echelon.backfill import run_plan
    from echelon.schedule import nightly_run_date

    existing = {"2026-11-17": "success", "2026-11-18": "failed", "2026-11-19": "running"}
    plan = run_plan("2026-11-16", "2026-11-19", existing, "completed")
    assert [(a, ds) for a, ds, _ in plan] == [("trigger", "2026-11-16"), ("clear", "2026-11-17"),
                                             ("clear", "2026-11-18"), ("skip", "2026-11-19")]
    assert [logical for _, _, logical in plan] == [nightly_run_date(ds) for _, ds, _ in plan]
    assert [a for a, _, _ in run_plan("2026-11-16", "2026-11-19", existing, "failed")] == ["trigger", "skip", "clear", "skip"]
    assert [a for a, _, _ in run_plan("2026-11-16", "2026-11-19", existing, "none")] == ["trigger", "skip", "skip", "skip"]
    with pytest.raises(BackfillError, match="is after"):
        run_plan("2026-11-19", "2026-11-16", {}, "completed")


def test_only_a_dag_airflow_calls_periodic_goes_to_airflows_backfill():
    from echelon.backfill import periodic

    # `airflow dags details -o json` prints every value as a string
    assert not periodic({"timetable_periodic": "False"}) and not periodic({"timetable_periodic": False})
    assert periodic({"timetable_periodic": "True"}) and periodic({})


def test_a_backfill_run_is_recognised_by_its_run_type():
    from types import SimpleNamespace

    from airflow.sdk.api.datamodels._generated import DagRunType

    from echelon.schedule import is_backfill

    assert is_backfill(SimpleNamespace(run_type=DagRunType.BACKFILL))
    assert is_backfill(SimpleNamespace(run_type="backfill"))
    assert not is_backfill(SimpleNamespace(run_type=DagRunType.SCHEDULED))
    assert not is_backfill(None)
