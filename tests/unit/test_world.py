"""The synthetic retail world: deterministic, every advertised feature present, a consistent network."""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from echelon import lake
from echelon.jobs.demand import world

# Two full years: two Black Fridays and two Prime Days, small enough to stay fast.
CFG = world.WorldConfig(items=48, locations=3, start="2024-01-01", end="2025-12-31", seed=11)
TINY = world.WorldConfig(items=8, locations=2, start="2025-06-01", end="2025-08-31", seed=3)


def _rows(frame) -> pd.DataFrame:
    """A Spark frame as pandas in a canonical order, for exact comparisons."""
    out = frame.toPandas()
    return out.sort_values(["item_id", "location_id", "timestamp"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def daily(spark) -> pd.DataFrame:
    frame = _rows(world.daily_frame(spark, CFG))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


@pytest.fixture(scope="module")
def published(spark, tmp_path_factory):
    """The tiny world published into its own lake."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHELON_LAKE", str(tmp_path_factory.mktemp("world_lake")))
        manifests = world.run(TINY, spark=spark, log=lambda _: None)
        tables = {str(t): lake.read(t, TINY.ds) for t in (
            world.SOURCE_SALES, world.SOURCE_PLAN, world.ITEMS, world.EVENTS, world.REGIONS,
            world.FACILITIES, world.DELIVERY_LANES, world.TRANSFER_LANES)}
        yield manifests, tables


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_rows(spark) -> pd.DataFrame:
    return _rows(world.sales_extract(world.daily_frame(spark, TINY, partitions=1)))


def test_same_seed_gives_identical_rows_whatever_the_partitioning(spark, tiny_rows):
    many = _rows(world.sales_extract(world.daily_frame(spark, TINY, partitions=3)))
    assert len(tiny_rows) > 0
    pd.testing.assert_frame_equal(tiny_rows, many)


def test_different_seed_gives_different_rows(spark, tiny_rows):
    other = _rows(world.sales_extract(world.daily_frame(spark, replace(TINY, seed=TINY.seed + 1))))
    assert list(other.columns) == world.SALES_COLUMNS
    assert not tiny_rows.equals(other)
    assert (tiny_rows["item_id"].nunique(), tiny_rows["location_id"].nunique()) == (TINY.items, TINY.locations)


# ---------------------------------------------------------------------------------------------
# Every feature of the world is really there
# ---------------------------------------------------------------------------------------------

def _daily_totals(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.groupby("timestamp").agg(units=("target", "sum"), event=("event", "first"))


def test_black_friday_and_prime_day_are_peaks(daily):
    totals = _daily_totals(daily)
    normal = totals.loc[totals["event"].isna(), "units"].median()
    black_friday = totals.loc[totals["event"] == "black_friday", "units"]
    prime_day = totals.loc[totals["event"] == "prime_day", "units"]
    assert len(black_friday) == 2 and len(prime_day) == 4   # two years; Prime Day lasts two days
    assert black_friday.min() > 2.0 * normal
    assert prime_day.min() > 1.5 * normal
    assert totals.loc[totals["event"] == "christmas", "units"].max() < normal   # shops shut


def test_events_fall_on_the_right_days():
    events = {e.day: e.name for e in world.events_calendar(dt.date(2024, 1, 1), dt.date(2026, 12, 31))}
    assert events[dt.date(2024, 11, 29)] == "black_friday"    # day after the 4th Thursday
    assert events[dt.date(2026, 11, 27)] == "black_friday"
    assert events[dt.date(2026, 11, 30)] == "cyber_monday"
    assert events[dt.date(2025, 7, 8)] == events[dt.date(2025, 7, 9)] == "prime_day"   # 2nd Tuesday
    assert events[dt.date(2025, 12, 25)] == "christmas"


def test_weekly_and_yearly_seasonality(daily):
    by_dow = daily.groupby(daily["timestamp"].dt.dayofweek)["mu"].mean()
    assert by_dow.max() / by_dow.min() > 1.1
    quiet = daily[daily["event"].isna()]
    toys = quiet[quiet["category"] == "toys"]
    garden = quiet[quiet["category"] == "garden"]
    assert len(toys) and len(garden), "the test world should hold both categories"
    month = lambda frame: frame.groupby(frame["timestamp"].dt.month)["mu"].mean()   # noqa: E731
    assert month(toys)[12] > 1.3 * month(toys)[6]
    assert month(garden)[5] > 1.3 * month(garden)[11]


def test_promotions_cut_the_price_and_lift_sales(daily):
    fast = daily[~daily["is_long_tail"] & daily["event"].isna()]
    by_item = fast.groupby(["item_id", "promo"]).agg(units=("target", "mean"), price=("price", "mean")).unstack()
    by_item = by_item.dropna()
    assert len(by_item) >= 5
    assert (by_item[("price", 1)] < by_item[("price", 0)]).mean() > 0.8
    assert (by_item[("units", 1)] / by_item[("units", 0)]).median() > 1.2
    assert 0.02 < daily["promo"].mean() < 0.2


def test_prices_change_over_time(daily):
    regular = daily[daily["promo"] == 0]
    distinct = regular.groupby("item_id")["price"].nunique()
    assert (distinct > 1).mean() > 0.8   # regular price steps every 91 days


def test_new_products_have_no_rows_before_launch(daily):
    new = daily[daily["is_new"]]
    assert new["item_id"].nunique() >= 2
    first = new.groupby("item_id").agg(first=("timestamp", "min"), launch=("launch_date", "first"))
    assert (first["first"].dt.date == first["launch"]).all()
    assert (first["launch"] > CFG.start).all()
    old = daily[~daily["is_new"]].groupby("item_id")["timestamp"].min()
    assert (old.dt.date == CFG.start).all()


def test_long_tail_is_mostly_zeros(daily):
    zero_share = daily.assign(zero=daily["target"] == 0).groupby("item_id").agg(
        zero=("zero", "mean"), tail=("is_long_tail", "first"))
    assert zero_share.loc[zero_share["tail"], "zero"].mean() > 0.6
    assert zero_share.loc[~zero_share["tail"], "zero"].mean() < 0.3
    assert (zero_share["zero"] > 0.5).mean() > 0.25   # many slow movers


def test_stockouts_censor_sales_and_are_flagged(daily):
    out = daily[daily["in_stock"] == 0]
    assert 0.005 < len(out) / len(daily) < 0.08
    selling = out[out["demand"] > 0]
    assert len(selling) > 0 and (selling["target"] < selling["demand"]).all()
    in_stock = daily[daily["in_stock"] == 1]
    assert (in_stock["target"] == in_stock["demand"]).all()


def test_demand_is_non_negative_whole_units(daily):
    assert (daily["target"] >= 0).all() and (daily["target"] % 1 == 0).all()
    assert not daily[world.SALES_COLUMNS].isna().any().any()


def test_stage_stays_small_enough_for_the_jit(spark):
    """The JVM interprets generated methods over 8,000 bytes of bytecode (3-10x slower)."""
    previous = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")   # so explain shows the compiled stages
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            world.sales_extract(world.daily_frame(spark, TINY)).explain("codegen")
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", previous)
    sizes = [int(s) for s in re.findall(r"maxMethodCodeSize:(\d+)", out.getvalue())]
    assert sizes and max(sizes) < 8000, sizes


# ---------------------------------------------------------------------------------------------
# Published tables
# ---------------------------------------------------------------------------------------------

def test_source_tables_follow_the_canonical_contract(published):
    _, tables = published
    sales, plan = tables["source/demand/sales"], tables["source/demand/plan"]
    assert list(sales.columns) == ["ds", *world.SALES_COLUMNS]
    assert list(plan.columns) == ["ds", *world.PLAN_COLUMNS]
    assert isinstance(sales["timestamp"].iloc[0], dt.date)
    assert max(sales["timestamp"]) == TINY.end and min(sales["timestamp"]) == TINY.start
    assert not sales.duplicated(["item_id", "location_id", "timestamp"]).any()
    assert min(plan["timestamp"]) == TINY.end + dt.timedelta(days=1)
    assert max(plan["timestamp"]) == TINY.end + dt.timedelta(days=world.PLAN_DAYS)
    assert len(plan) == TINY.items * TINY.locations * world.PLAN_DAYS
    assert set(sales["item_id"]) == set(tables["reference/demand/items"]["item_id"])


def test_items_table(published):
    _, tables = published
    items = tables["reference/demand/items"]
    assert list(items.columns) == ["ds", *world.ITEM_COLUMNS]
    assert items["item_id"].is_unique and len(items) == TINY.items
    assert (items["cube_cuft"] > 0).all() and (items["price"] > 0).all()
    assert set(items["category"]) <= {c.name for c in world.CATEGORIES}


def test_network_is_consistent(published):
    _, tables = published
    sales = tables["source/demand/sales"]
    regions = tables["reference/network/regions"]
    facilities = tables["reference/network/facilities"]
    delivery = tables["reference/network/delivery_lanes"]
    transfer = tables["reference/network/transfer_lanes"]

    assert set(regions["region_id"]) == set(sales["location_id"])   # location_id is the region
    assert regions["demand_share"].sum() == pytest.approx(1.0, abs=1e-4)
    fcs = facilities[facilities["facility_type"] == "FC"]
    dcs = facilities[facilities["facility_type"] == "DC"]
    assert len(fcs) == TINY.n_fcs and len(dcs) == TINY.n_dcs
    assert (fcs["echelon"] == 2).all() and (dcs["echelon"] == 1).all()
    assert (facilities[["storage_capacity_cuft", "flow_capacity_units_per_day"]] > 0).all().all()
    assert set(facilities["region_id"]) <= set(regions["region_id"])
    assert dcs["vendor_lead_time_mean_days"].gt(0).all() and fcs["vendor_lead_time_mean_days"].isna().all()

    # Every FC reaches every region at some speed; faster promises imply slower ones.
    pairs = delivery.set_index(["facility_id", "region_id"])
    assert len(pairs) == len(fcs) * len(regions) and pairs.index.is_unique
    assert pairs[["same_day", "one_day", "two_day"]].any(axis=1).all()
    assert (~pairs["same_day"] | pairs["one_day"]).all() and pairs["two_day"].all()
    assert pairs["same_day"].any()   # an FC serves its home region the same day
    assert (pairs["cost_per_unit"] > 0).all()
    assert len(transfer) == len(dcs) * len(fcs)
    assert (transfer["lead_time_mean_days"] > 0).all() and (transfer["lead_time_std_days"] > 0).all()


def test_capacities_bind_at_peaks_not_on_normal_days(published):
    _, tables = published
    sales, facilities = tables["source/demand/sales"], tables["reference/network/facilities"]
    daily_units = sales.groupby("timestamp")["target"].sum()
    fc_flow = facilities.loc[facilities["facility_type"] == "FC", "flow_capacity_units_per_day"].sum()
    assert daily_units.median() < fc_flow < daily_units.max()


def test_manifests_record_the_world(published):
    manifests, tables = published
    sales = manifests["source/demand/sales"]
    assert sales["rows"] == len(tables["source/demand/sales"])
    assert sales["world"]["seed"] == TINY.seed and sales["world"]["end"] == TINY.ds


def test_config_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 14 days"):
        world.WorldConfig(start="2025-01-10", end="2025-01-01")
    with pytest.raises(ValueError, match="long_tail_share"):
        world.WorldConfig(long_tail_share=1.5)
    with pytest.raises(ValueError):
        world.WorldConfig(end="2025-13-01")


def test_cli_parses_the_documented_flags():
    cfg, master = world.config_from_args(["--items", "200", "--locations", "4", "--start", "2024-01-01",
                                          "--end", "2026-11-20", "--seed", "42"])
    assert cfg == world.WorldConfig(items=200, locations=4, start=dt.date(2024, 1, 1),
                                    end=dt.date(2026, 11, 20), seed=42)
    assert master is None
    assert np.isclose(cfg.rows_estimate(), 200 * 4 * 1055)
