"""Raw ingest: the window of one partition date, never a future row, idempotent, clear errors."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from echelon import lake
from echelon.jobs.demand import ingest, world

CFG = world.WorldConfig(items=10, locations=2, start="2025-09-01", end="2025-12-31", seed=5)
END = CFG.end


@pytest.fixture(scope="module")
def source_lake(spark, tmp_path_factory):
    """A lake holding the world's source extract (ds = END); each test ingests into it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHELON_LAKE", str(tmp_path_factory.mktemp("ingest_lake")))
        world.run(CFG, spark=spark, log=lambda _: None)
        yield lake.read(world.SOURCE_SALES, CFG.ds), lake.read(world.SOURCE_PLAN, CFG.ds)


@pytest.fixture
def messages(source_lake) -> list[str]:
    return []


def _run(ds, messages, **kwargs):
    """A strictly trailing window (window_step=1) unless a test asks for the stepped one."""
    return ingest.run(ds, log=messages.append, **{"window_step": 1, **kwargs})


def test_the_window_start_moves_in_steps_so_consecutive_nights_extend_each_other():
    epoch = dt.date(1970, 1, 1)
    starts = {}
    for k in range(200):
        ds = dt.date(2026, 1, 1) + dt.timedelta(days=k)
        first = ingest.window_start(ds.isoformat(), 730)
        assert (first - epoch).days % ingest.WINDOW_STEP_DAYS == 0
        assert 730 <= (ds - first).days + 1 < 730 + ingest.WINDOW_STEP_DAYS
        starts[ds] = first
    moves = [d for d in starts if d - dt.timedelta(days=1) in starts and starts[d] != starts[d - dt.timedelta(days=1)]]
    assert len(moves) == 2          # 200 nights: the start moves about once per 91, else nights share it
    assert ingest.window_start("2026-03-01", 30, window_step=1) == dt.date(2026, 1, 31)   # strictly trailing


def test_consecutive_nights_share_the_window_start_and_record_a_fingerprint(spark, source_lake, messages):
    before = _run("2025-12-09", messages, history_days=20, window_step=7, spark=spark)["sales"]
    after = _run("2025-12-10", messages, history_days=20, window_step=7, spark=spark)["sales"]
    assert before["window"][0] == after["window"][0]
    old, new = before["raw_fingerprint"]["dates"], after["raw_fingerprint"]["dates"]
    assert set(new) == set(old) | {"2025-12-10"} and all(new[d] == old[d] for d in old)


def test_history_ends_exactly_at_ds_and_plan_covers_the_next_days(spark, source_lake, messages):
    ds = END.isoformat()
    result = _run(ds, messages, history_days=30, spark=spark)
    sales, plan = lake.read(ingest.RAW_SALES, ds), lake.read(ingest.RAW_PLAN, ds)
    assert result["source_ds"] == ds
    assert list(sales.columns) == ["ds", *world.SALES_COLUMNS]
    assert min(sales["timestamp"]) == END - dt.timedelta(days=29) and max(sales["timestamp"]) == END
    assert sales.groupby(["item_id", "location_id"])["timestamp"].max().eq(END).all()
    assert min(plan["timestamp"]) == END + dt.timedelta(days=1)
    assert max(plan["timestamp"]) == END + dt.timedelta(days=ingest.PLAN_DAYS)
    assert list(plan.columns) == ["ds", *world.PLAN_COLUMNS]
    assert result["sales"]["rows"] == len(sales) and result["plan"]["rows"] == len(plan)


def test_an_earlier_date_reads_the_cumulative_extract_and_never_leaks_the_future(spark, source_lake, messages):
    source_sales, source_plan = source_lake
    ds = dt.date(2025, 11, 20)
    result = _run(ds.isoformat(), messages, history_days=60, spark=spark)
    assert result["source_ds"] == END.isoformat()
    assert any("using the cumulative extract ds=2025-12-31" in m for m in messages)

    sales = lake.read(ingest.RAW_SALES, ds.isoformat())
    assert max(sales["timestamp"]) == ds
    assert min(sales["timestamp"]) == ds - dt.timedelta(days=59)
    expected = source_sales[(source_sales["timestamp"] <= ds)
                            & (source_sales["timestamp"] > ds - dt.timedelta(days=60))]
    key = ["item_id", "location_id", "timestamp"]
    pd.testing.assert_frame_equal(sales.drop(columns="ds").sort_values(key).reset_index(drop=True),
                                  expected.drop(columns="ds").sort_values(key).reset_index(drop=True))

    # The plan joins the extract's own later days (Nov 21 .. Dec 31) to its plan (Jan 1 .. Jan 15).
    plan = lake.read(ingest.RAW_PLAN, ds.isoformat())
    assert min(plan["timestamp"]) == ds + dt.timedelta(days=1)
    assert max(plan["timestamp"]) == ds + dt.timedelta(days=ingest.PLAN_DAYS)
    assert not plan.duplicated(key).any() and "target" not in plan
    known = pd.concat([source_sales[world.PLAN_COLUMNS], source_plan[world.PLAN_COLUMNS]])
    merged = plan.merge(known, on=key, suffixes=("", "_source"))
    assert len(merged) == len(plan)
    assert (merged["price"] == merged["price_source"]).all() and (merged["promo"] == merged["promo_source"]).all()


def test_rerunning_a_date_gives_the_same_checksum_and_leaves_other_dates_alone(spark, source_lake, messages):
    other = _run("2025-12-01", messages, history_days=20, spark=spark)
    first = _run("2025-12-10", messages, history_days=20, spark=spark)
    second = _run("2025-12-10", messages, history_days=20, spark=spark)
    for table in ("sales", "plan"):
        assert first[table]["checksum"] == second[table]["checksum"]
        assert first[table]["rows"] == second[table]["rows"] > 0
    assert lake.read_manifest(ingest.RAW_SALES, "2025-12-01")["checksum"] == other["sales"]["checksum"]
    assert lake.read_manifest(ingest.RAW_SALES, "2025-12-01")["published_at"] == other["sales"]["published_at"]


def test_a_failing_gate_publishes_nothing(spark, source_lake, messages):
    ds = "2025-12-05"
    assert not lake.exists(ingest.RAW_SALES, ds)

    def refuse(staged):
        raise RuntimeError(f"gate refused {staged.name}")

    with pytest.raises(RuntimeError, match="gate refused"):
        _run(ds, messages, history_days=10, spark=spark, gate={"sales": refuse})
    assert not lake.exists(ingest.RAW_SALES, ds) and not lake.exists(ingest.RAW_PLAN, ds)

    seen = []
    _run(ds, messages, history_days=10, spark=spark, gate=lambda staged: seen.append(staged))
    assert len(seen) == 2 and lake.exists(ingest.RAW_SALES, ds) and lake.exists(ingest.RAW_PLAN, ds)


def test_an_empty_plan_is_published_without_its_suite_and_sales_still_gated(spark, source_lake, messages):
    # gate=True is what the DAG's ingest step passes: the plan suite's first-planned-day check cannot hold
    # on no rows, so a night with nothing planned must still publish (it failed the DAG before)
    ds = (pd.Timestamp(END) - pd.Timedelta(days=3)).date().isoformat()
    _run(ds, messages, history_days=10, spark=spark, plan_days=0, gate=True)
    assert lake.read(ingest.RAW_PLAN, ds).empty and not lake.read(ingest.RAW_SALES, ds).empty
    from echelon.expectations.gate import recorded

    assert {g["suite"] for g in recorded(ds)} == {"demand_raw_sales"}


def test_a_date_after_every_extract_is_a_clear_error(source_lake, messages):
    with pytest.raises(ingest.IngestError, match=r"no source extract covers ds=2026-01-01.*2025-12-31"):
        _run("2026-01-01", messages)


def test_a_date_before_the_extract_is_a_clear_error(spark, source_lake, messages):
    with pytest.raises(ingest.IngestError, match="no rows in the window.*starts on 2025-09-01"):
        _run("2025-06-01", messages, history_days=30, spark=spark)


def test_store_item_file(tmp_path, lake_dir):
    days = pd.date_range("2024-01-01", "2024-03-31", freq="D")
    frame = pd.DataFrame([(d.date().isoformat(), store, item, (d.day + store + item) % 7)
                          for d in days for store in (1, 2) for item in (1, 2, 3)],
                         columns=["date", "store", "item", "sales"])
    path = tmp_path / "store_item.csv"
    frame.to_csv(path, index=False)

    result = ingest.ingest_file(path, history_days=28, log=lambda _: None, window_step=1)   # strictly trailing
    ds = "2024-03-31"   # the file's last date
    sales = lake.read(ingest.RAW_SALES, ds)
    assert result["sales"]["rows"] == 28 * 6 == len(sales)
    assert set(sales["location_id"]) == {"1", "2"} and set(sales["item_id"]) == {"1", "2", "3"}
    assert min(sales["timestamp"]) == dt.date(2024, 3, 4) and max(sales["timestamp"]) == dt.date(2024, 3, 31)
    assert lake.read_manifest(ingest.RAW_PLAN, ds)["rows"] == 0

    # An earlier date: the file's later days become the plan, never history.
    ingest.ingest_file(path, ds="2024-03-01", history_days=28, log=lambda _: None, window_step=1)
    assert max(lake.read(ingest.RAW_SALES, "2024-03-01")["timestamp"]) == dt.date(2024, 3, 1)
    plan = lake.read(ingest.RAW_PLAN, "2024-03-01")
    assert min(plan["timestamp"]) == dt.date(2024, 3, 2) and "target" not in plan


def test_a_files_consecutive_dates_share_the_window_start(tmp_path, lake_dir):
    """A user's file moves its window on the same grid as the source ingest: ds + 1's raw sales are ds's
    plus one day (so the feature job can carry ds's rows), not a trailing window that drops a day."""
    days = pd.date_range("2023-06-01", "2024-03-31", freq="D")
    frame = pd.DataFrame({"item_id": "a", "location_id": "x", "timestamp": days.strftime("%Y-%m-%d"),
                          "target": (days.day % 5).astype(float)})
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    ingest.ingest_file(path, ds="2024-03-20", history_days=100, log=lambda _: None)
    ingest.ingest_file(path, ds="2024-03-21", history_days=100, log=lambda _: None)
    before, after = (lake.read(ingest.RAW_SALES, ds).drop(columns="ds", errors="ignore")
                     .sort_values("timestamp", ignore_index=True) for ds in ("2024-03-20", "2024-03-21"))
    start = ingest.window_start("2024-03-21", 100)
    assert min(before["timestamp"]) == min(after["timestamp"]) == start == ingest.window_start("2024-03-20", 100)
    assert (dt.date(2024, 3, 21) - start).days + 1 >= 100 and len(after) == len(before) + 1
    pd.testing.assert_frame_equal(after.iloc[:-1], before)
    assert lake.read_manifest(ingest.RAW_SALES, "2024-03-21")["window_step"] == ingest.WINDOW_STEP_DAYS
    with pytest.raises(ingest.IngestError, match="window_step must be >= 1"):
        ingest.ingest_file(path, ds="2024-03-21", window_step=0, log=lambda _: None)


def test_long_format_file_with_time_of_day_is_refused(tmp_path, lake_dir):
    path = tmp_path / "hourly.csv"
    pd.DataFrame({"item_id": ["a", "a"], "timestamp": ["2024-01-01 00:00", "2024-01-01 01:00"],
                  "target": [1, 2]}).to_csv(path, index=False)
    with pytest.raises(ingest.IngestError, match="daily"):
        ingest.ingest_file(path, log=lambda _: None)
    assert not lake.partitions(ingest.RAW_SALES)


def test_cli_requires_a_date(capsys):
    with pytest.raises(SystemExit):
        ingest.main([])
    assert "--ds is required" in capsys.readouterr().err
