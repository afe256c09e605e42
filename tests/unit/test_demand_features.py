"""The demand feature job (Spark SQL) on tiny hand-made frames: values, no leakage, future rows, CLI."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from echelon import lake
from echelon.demand_features import features_pandas
from echelon.jobs.demand import features as job
from echelon.spark import get_spark

START = pd.Timestamp("2024-11-20")       # spans Thanksgiving (Nov 28), Black Friday, Cyber Monday, Christmas
DAYS = 40


def _history() -> pd.DataFrame:
    days = pd.date_range(START, periods=DAYS, freq="D")
    ramp = pd.DataFrame({"item_id": "A", "location_id": "L1", "category": "toys", "timestamp": days,
                         "target": np.arange(DAYS, dtype=float), "price": 10.0, "promo": 0, "in_stock": 1})
    flat = pd.DataFrame({"item_id": "B", "location_id": "L1", "category": "toys", "timestamp": days,
                         "target": 5.0, "price": 4.0, "promo": 0, "in_stock": 1})
    # a stockout-censored day: sold 0 because the shelf was empty, not because nobody wanted it
    flat.loc[flat["timestamp"] == START + pd.Timedelta(days=30), ["target", "in_stock"]] = [0.0, 0]
    july = pd.DataFrame({"item_id": "C", "location_id": "L2", "category": "garden",
                         "timestamp": pd.date_range("2024-07-01", periods=14, freq="D"),
                         "target": 3.0, "price": 1.0, "promo": 0, "in_stock": 1})
    return pd.concat([ramp, flat, july], ignore_index=True)


def _future() -> pd.DataFrame:
    last = START + pd.Timedelta(days=DAYS - 1)
    return pd.DataFrame({"item_id": "A", "location_id": "L1", "timestamp": [last + pd.Timedelta(days=k) for k in (1, 2)],
                         "price": [8.0, 8.0], "promo": [1, 0]})


@pytest.fixture(scope="module")
def spark():
    return get_spark("echelon-test-demand-features")


@pytest.fixture(scope="module")
def built(spark):
    return features_pandas(_history(), future=_future(), spark=spark)


def _row(frame, item, date):
    rows = frame[(frame["item_id"] == item) & (frame["date"] == pd.Timestamp(date))]
    assert len(rows) == 1, f"expected one row for {item} {date}, got {len(rows)}"
    return rows.iloc[0]


def test_lags_and_rolling_values(built):
    day10 = START + pd.Timedelta(days=10)                     # A's target = day index
    a = _row(built, "A", day10)
    assert a["lag_0"] == 10 and a["lag_1"] == 9 and a["lag_6"] == 4
    assert np.isnan(a["lag_13"])                              # before the first day
    assert a["roll_mean_7"] == pytest.approx(np.mean(np.arange(4, 11)))
    assert a["roll_std_7"] == pytest.approx(np.std(np.arange(4, 11), ddof=1))
    assert a["roll_mean_28"] == pytest.approx(np.mean(np.arange(0, 11)))
    assert a["item_age_days"] == 9                            # first sale on day 1 (day 0 sold nothing)
    last = _row(built, "A", START + pd.Timedelta(days=39))
    assert last["lag_27"] == 12
    assert last["roll_mean_28"] == pytest.approx(np.mean(np.arange(12, 40)))
    # the mean of each weekday over the last four weeks: days 39, 32, 25, 18 share last's weekday
    assert last[f"dow_mean_{last['day_of_week']}"] == pytest.approx(np.mean([39, 32, 25, 18]))
    other = (last["day_of_week"] + 1) % 7                     # days 33, 26, 19, 12
    assert last[f"dow_mean_{other}"] == pytest.approx(np.mean([33, 26, 19, 12]))


def test_stockout_days_are_left_out_of_statistics(built):
    b = _row(built, "B", START + pd.Timedelta(days=33))
    assert b["roll_mean_7"] == pytest.approx(5.0)             # the censored 0 would pull it to 4.29
    assert b["stockout_days_28"] == 1
    assert np.isnan(_row(built, "B", START + pd.Timedelta(days=30))["lag_0"])


def test_category_aggregates_average_the_items(built):
    day = START + pd.Timedelta(days=10)
    a = _row(built, "A", day)
    # per-item mean of A (ramp) and B (5): over days 4..10
    expected = np.mean([(k + 5.0) / 2 for k in range(4, 11)])
    assert a["cat_mean_7"] == pytest.approx(expected)
    assert a["cat_items"] == 2
    assert _row(built, "B", day)["cat_mean_7"] == pytest.approx(expected)


def test_calendar_and_holidays(built):
    flags = built.drop_duplicates("date").set_index("date")
    assert flags.loc["2024-11-28", "is_holiday"] == 1                 # Thanksgiving
    assert flags.loc["2024-11-29", "is_black_friday"] == 1
    assert flags.loc["2024-12-02", "is_cyber_monday"] == 1
    assert flags.loc["2024-12-25", "is_holiday"] == 1
    assert flags.loc["2024-12-24", "days_to_christmas"] == 1
    assert flags.loc["2024-07-04", "is_holiday"] == 1
    assert flags.loc["2024-07-09", "is_prime_day"] == 1               # second Tuesday of July
    assert flags.loc["2024-07-10", "is_prime_day"] == 1
    assert flags["is_prime_day"].sum() == 2
    monday = flags.loc["2024-12-02"]
    assert (monday["day_of_week"], monday["day_of_month"], monday["month"]) == (0, 2, 12)
    assert monday["day_of_year"] == 337


def test_future_rows_carry_known_covariates_only(built):
    future = built[built["is_future"] == 1]
    assert set(future["item_id"]) == {"A"} and len(future) == 2
    first = future.sort_values("date").iloc[0]
    assert first["promo"] == 1 and first["price"] == 8.0
    assert first["price_ratio_28"] == pytest.approx(8.0 / np.mean([10.0] * 27 + [8.0]))
    for col in ("target", "lag_0", "roll_mean_7", "dow_mean_0", "cat_mean_28"):
        assert np.isnan(first[col]), col
    assert first["item_age_days"] == 39                    # first sale on day 1, this is day 40


def test_no_leakage_changing_a_later_target(spark, built):
    history = _history()
    change_day = START + pd.Timedelta(days=20)
    changed = history.copy()
    changed.loc[(changed["item_id"] == "A") & (changed["timestamp"] == change_day), "target"] = 1000.0
    rebuilt = features_pandas(changed, future=_future(), spark=spark)
    before = built[built["date"] < change_day].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, rebuilt[rebuilt["date"] < change_day].reset_index(drop=True))
    # and the change does reach the later rows (of A and, through the category, of B)
    after_a, after_b = _row(rebuilt, "A", change_day), _row(rebuilt, "B", change_day)
    assert after_a["roll_mean_7"] != _row(built, "A", change_day)["roll_mean_7"]
    assert after_b["cat_mean_7"] != _row(built, "B", change_day)["cat_mean_7"]


def test_missing_day_gives_null_lag_not_a_shifted_value(spark):
    history = _history()
    history = history[~((history["item_id"] == "A") & (history["timestamp"] == START + pd.Timedelta(days=9)))]
    frame = features_pandas(history[history["item_id"] == "A"], spark=spark)
    row = _row(frame, "A", START + pd.Timedelta(days=10))
    assert np.isnan(row["lag_1"]) and row["lag_2"] == 8
    assert row["roll_mean_7"] == pytest.approx(np.mean([4, 5, 6, 7, 8, 10]))


def test_duplicate_rows_are_refused_with_examples(spark):
    history = _history()
    with pytest.raises(job.FeatureInputError, match="duplicate.*'item_id': 'A'"):
        job.build_features(spark, spark.createDataFrame(pd.concat([history, history.iloc[[3]]]).assign(
            timestamp=lambda f: f["timestamp"].dt.date)), source="raw/demand/sales ds=2024-12-29")


def test_cli_run_publishes_the_partition(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("ECHELON_LAKE", str(tmp_path / "lake"))
    ds = (START + pd.Timedelta(days=DAYS - 1)).date().isoformat()
    sales = _history()[lambda f: f["item_id"] != "C"]
    # dates, as the raw ingest writes them (pandas' nanosecond timestamps are unreadable to Spark 4)
    sales["timestamp"] = sales["timestamp"].dt.date
    lake.publish(sales, job.SALES, ds)
    manifest = job.run(ds, horizon=3, spark=spark)
    published = lake.read(job.FEATURES, ds)
    assert manifest["rows"] == len(published) == 2 * (DAYS + 3)
    assert published["is_future"].sum() == 6
    assert published["date"].max() == dt.date(2025, 1, 1)


def test_rows_after_the_partition_date_are_refused_from_the_manifest_or_the_rows(spark, tmp_path, monkeypatch):
    """The late-rows check reads the dates of the ingest's recorded raw fingerprint (no scan of the
    history); a partition published without one is scanned."""
    monkeypatch.setenv("ECHELON_LAKE", str(tmp_path / "lake"))
    ds = (START + pd.Timedelta(days=DAYS - 2)).date().isoformat()
    sales = _history()
    sales["timestamp"] = sales["timestamp"].dt.date          # its last day is ds + 1
    lake.publish(sales, job.SALES, ds)
    with pytest.raises(job.FeatureInputError, match="after the partition date, e.g."):
        job.run(ds, horizon=3, spark=spark)
    dates = sorted(d for d in sales["timestamp"].astype(str).unique() if d <= ds)
    fingerprint = {"dates": {d: "1:1" for d in dates}, "null_categories": 0}
    lake.publish(sales[sales["timestamp"] <= dt.date.fromisoformat(ds)], job.SALES, ds,
                 extra={"raw_fingerprint": {**fingerprint, "dates": {**fingerprint["dates"], "2031-01-01": "1:1"}}})
    with pytest.raises(job.FeatureInputError, match=r"on \['2031-01-01'\].*raw_fingerprint"):
        job.run(ds, horizon=3, spark=spark)
    assert not lake.exists(job.FEATURES, ds)


# ----------------------------------------------------------------------------------------------
# Incremental nights: the same partition as a full rebuild, row for row
# ----------------------------------------------------------------------------------------------

LONG_START = pd.Timestamp("2024-01-01")
LONG_DAYS = 470                  # longer than LOOKBACK_DAYS, so the incremental night truly cuts the history


def _long_history(seed: int = 7) -> pd.DataFrame:
    """Six series over 470 days: integer sales with stockouts and zero runs, cent prices, a series that
    stops selling early (its future rows need its last price from before the lookback), one whose only
    early sale lies far back, one that launches on the last day, and a price gap."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(LONG_START, periods=LONG_DAYS, freq="D")
    frames = []
    for k, (item, loc, cat) in enumerate([("A", "L1", "toys"), ("B", "L1", "toys"), ("C", "L2", "garden"),
                                          ("D", "L1", "toys"), ("E", "L2", "garden"), ("F", "L1", "toys")]):
        f = pd.DataFrame({"item_id": item, "location_id": loc, "category": cat, "timestamp": days,
                          "target": rng.poisson(3 + k, LONG_DAYS).astype(float),
                          "price": np.round(rng.uniform(1, 20, LONG_DAYS), 2), "promo": rng.integers(0, 2, LONG_DAYS),
                          "in_stock": (rng.uniform(size=LONG_DAYS) > 0.05).astype(int)})
        frames.append(f)
    a, b, c, d, e, f = frames
    c = c.iloc[:30]                                  # dead long before the lookback window
    d.loc[5:, "target"] = 0.0                        # one early sale, then nothing
    d.loc[60:, "price"] = np.nan                     # and no price for a year: carried forward
    f = f.iloc[-1:]                                  # a launch on the last day
    return pd.concat([a, b, c, d, e, f], ignore_index=True)


def _publish_raw(history: pd.DataFrame, ds: str) -> None:
    rows = history[history["timestamp"] <= pd.Timestamp(ds)].copy()
    rows["timestamp"] = rows["timestamp"].dt.date
    lake.publish(rows, job.SALES, ds)


def _last_two_days() -> tuple[dt.date, str, str]:
    """The long history's last date, and the partitions of the day before it and of that day."""
    last = (LONG_START + pd.Timedelta(days=LONG_DAYS - 1)).date()
    return last, (last - dt.timedelta(days=1)).isoformat(), last.isoformat()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(job.KEYS, kind="stable").reset_index(drop=True)


@pytest.mark.slow
def test_incremental_nights_equal_a_full_rebuild_row_for_row(spark, tmp_path, monkeypatch):
    """A full build two days back, then two incremental nights (the second carries the first's carried
    files and its own): the same rows, bit for bit, as a full rebuild. Each night gates and hashes only
    its new rows and hard-links the rows it keeps."""
    monkeypatch.setenv("ECHELON_LAKE", str(tmp_path / "lake"))
    history, last, yesterday, today = _long_history(), *_last_two_days()
    before_yesterday = (last - dt.timedelta(days=2)).isoformat()
    history_before = history[~((history["item_id"] == "F"))]   # F launches today
    _publish_raw(history_before, before_yesterday)
    assert job.run(before_yesterday, horizon=5, spark=spark)["build"] == "full"   # nothing to build on
    _publish_raw(history_before, yesterday)
    assert job.run(yesterday, horizon=5, spark=spark)["build"] == "incremental"

    gated = []
    _publish_raw(history, today)
    incremental = job.run(today, horizon=5, spark=spark,
                          gate=lambda staged: gated.append(len(pd.read_parquet(staged))))
    assert incremental["build"] == "incremental", incremental["build_reason"]
    assert incremental["carried_nights"] == 2
    new_rows = len(history[history["timestamp"] == pd.Timestamp(today)]) + 6 * 5   # today + 6 series' horizon
    assert gated == [new_rows]                                   # the gate saw the new rows only
    carried = [f for f in job.FEATURES.partition(today).glob("hist-*.parquet")
               if (job.FEATURES.partition(yesterday) / f.name).exists()]
    assert carried and all(f.stat().st_ino == (job.FEATURES.partition(yesterday) / f.name).stat().st_ino
                           for f in carried)                     # hard links, not copies
    got = _sorted(lake.read(job.FEATURES, today))
    full = job.run(today, horizon=5, spark=spark, incremental=False)
    assert full["build"] == "full" and full["rows"] == incremental["rows"]
    want = _sorted(lake.read(job.FEATURES, today))
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-9)
    # and bit for bit: the running sums of non-integer values (prices, category means) are DECIMAL, so a
    # shorter prefix gives the same differences; the published checksums agree too
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert incremental["checksum"] == full["checksum"]
    # the cases the anchors exist for are really in the table
    dead = want[(want["item_id"] == "C") & (want["is_future"] == 1)]
    assert len(dead) == 5 and dead["price"].notna().all()
    assert want.loc[(want["item_id"] == "D") & (want["date"] == last), "item_age_days"].iloc[0] > job.LOOKBACK_DAYS
    assert len(want[want["item_id"] == "F"]) == 1 + 5


@pytest.mark.slow
def test_a_restated_past_day_forces_a_full_build(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("ECHELON_LAKE", str(tmp_path / "lake"))
    history, last, yesterday, today = _long_history(), *_last_two_days()
    _publish_raw(history, yesterday)
    job.run(yesterday, horizon=3, spark=spark)
    restated = history.copy()
    changed = restated["timestamp"] == pd.Timestamp("2024-06-03")
    restated.loc[changed & (restated["item_id"] == "A"), "target"] += 1
    _publish_raw(restated, today)
    manifest = job.run(today, horizon=3, spark=spark)
    assert manifest["build"] == "full" and "first 2024-06-03" in manifest["build_reason"]
    # a missing past day too
    _publish_raw(history[history["timestamp"] != pd.Timestamp("2024-08-01")], today)
    manifest = job.run(today, horizon=3, spark=spark)
    assert manifest["build"] == "full" and "first 2024-08-01" in manifest["build_reason"]


@pytest.mark.slow
def test_ingested_nights_carry_raw_files_and_features_read_only_recent_months(spark, tmp_path, monkeypatch):
    """Through the ingest: the next night hard-links yesterday's monthly raw files and writes and gates only
    the new day (the same rows and checksum as a full write); the feature night reads only the months its
    lookback needs and still equals a full rebuild row for row. A series resuming after a gap across
    yesterday is a full write (the suite's day-to-day check needs the whole history)."""
    from echelon.jobs.demand import ingest, world

    monkeypatch.setenv("ECHELON_LAKE", str(tmp_path / "lake"))
    history, last, yesterday, today = _long_history(), *_last_two_days()
    source = history.assign(timestamp=history["timestamp"].dt.date)[world.SALES_COLUMNS]

    def publish_source(rows):
        lake.publish(rows, world.SOURCE_SALES, today)
        plan = rows[rows["timestamp"] == last][world.PLAN_COLUMNS].assign(timestamp=last + dt.timedelta(days=1))
        lake.publish(plan, world.SOURCE_PLAN, today)

    publish_source(source)
    gated = []
    kwargs = dict(history_days=LONG_DAYS, window_step=91, spark=spark, log=lambda _: None,
                  gate={"sales": lambda staged: gated.append(len(pd.read_parquet(staged)))})
    assert ingest.run(yesterday, **kwargs)["sales"]["build"] == "full"
    assert job.run(yesterday, horizon=5, spark=spark)["build"] == "full"
    night = ingest.run(today, **kwargs)["sales"]
    assert night["build"] == "incremental", night["build_reason"]
    assert gated[-1] == (source["timestamp"] == last).sum()          # the gate saw the new day only
    raw_today, raw_yesterday = ingest.RAW_SALES.partition(today), ingest.RAW_SALES.partition(yesterday)
    carried = [f for f in raw_today.glob("*.parquet") if (raw_yesterday / f.name).exists()]
    assert len(carried) == len(list(raw_yesterday.glob("*.parquet"))) == 16   # one file per month, Jan 2024..Apr 2025
    assert all(f.stat().st_ino == (raw_yesterday / f.name).stat().st_ino for f in carried)
    since = dt.date.fromisoformat(yesterday) - dt.timedelta(days=job.LOOKBACK_DAYS - 1)
    assert len(ingest.files_since(today, since)) < len(night["files"])      # old months are not read

    incremental = job.run(today, horizon=5, spark=spark)
    assert incremental["build"] == "incremental", incremental["build_reason"]
    got = _sorted(lake.read(job.FEATURES, today))
    full = job.run(today, horizon=5, spark=spark, incremental=False)
    pd.testing.assert_frame_equal(got, _sorted(lake.read(job.FEATURES, today)), check_exact=True)
    assert incremental["checksum"] == full["checksum"]

    with monkeypatch.context() as patch:     # the same night written in full: the same rows
        patch.setattr(ingest, "carry_base", lambda *args: (None, "forced"))
        whole = ingest.run(today, **kwargs)["sales"]
    assert whole["build"] == "full" and (whole["rows"], whole["checksum"]) == (night["rows"], night["checksum"])

    resumed = source[(source["item_id"] == "A") & (source["timestamp"] == last)].assign(item_id="C", location_id="L2")
    publish_source(pd.concat([source, resumed], ignore_index=True))  # C stopped after 30 days, sells again today
    again = ingest.run(today, **kwargs)["sales"]
    assert again["build"] == "full" and "resumes after a gap" in again["build_reason"]
