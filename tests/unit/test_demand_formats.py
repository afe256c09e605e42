"""Bring-your-own-data adapters: each format reads into the canonical frame, and every bad input
fails with a message that names the file, the problem and the offending rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echelon.formats import (
    InputFormatError,
    detect_format,
    read_any,
    read_long,
    read_m5,
    read_store_item,
)


def write(path, text):
    path.write_text(text.strip() + "\n")
    return path


LONG = """
item_id,timestamp,target,price,promo,location_id,category
007,2024-01-01,3,9.99,0,north,toys
007,2024-01-02,0,9.99,1,north,toys
007,2024-01-01,5,9.99,0,south,toys
b,2024-01-01,1.5,2.00,false,north,food
b,2024-01-02,2,,true,north,food
"""


# ---------------------------------------------------------------------------------------------
# Long format
# ---------------------------------------------------------------------------------------------

def test_long_format_reads_into_the_canonical_frame(tmp_path):
    frame = read_long(write(tmp_path / "sales.csv", LONG))
    assert list(frame.columns) == ["item_id", "location_id", "timestamp", "target", "price", "promo",
                                   "category"]
    assert frame["item_id"].tolist() == ["007", "007", "007", "b", "b"]   # leading zeros kept
    assert frame["timestamp"].dtype == "datetime64[ns]"
    assert frame["target"].tolist() == [3.0, 0.0, 5.0, 1.5, 2.0]
    assert frame["promo"].tolist() == [0, 1, 0, 0, 1]
    assert np.isnan(frame["price"].iloc[-1])        # an empty price is allowed (models fill it)
    assert frame.loc[frame.location_id == "south", "target"].item() == 5.0


def test_long_format_minimal_columns_and_case_insensitive_headers(tmp_path):
    frame = read_long(write(tmp_path / "min.csv", """
 Item_ID , TIMESTAMP ,Target
x,2024-01-01 00:00,1
x,2024-01-01 01:00,2
"""))
    assert frame["location_id"].unique().tolist() == ["all"]
    assert frame["timestamp"].dt.hour.tolist() == [0, 1]


def test_long_format_reads_parquet(tmp_path):
    path = tmp_path / "sales.parquet"
    pd.DataFrame({"item_id": [1, 1], "timestamp": pd.to_datetime(["2024-01-01", "2024-01-08"]),
                  "target": [4, 5]}).to_parquet(path)
    frame = read_any(path)
    assert frame["item_id"].tolist() == ["1", "1"]
    assert frame["target"].tolist() == [4.0, 5.0]


@pytest.mark.parametrize("text, fragments", [
    ("item_id,date,sales\na,2024-01-01,1",
     ["missing required column(s) ['timestamp', 'target']", "'date' -> 'timestamp'",
      "'sales' -> 'target'"]),
    ("item_id,timestamp,target\na,2024-01-01,1\na,yesterday,2\na,2024-13-45,3",
     ["unparsable 'timestamp'", "yesterday", "2024-13-45", "2 row(s)"]),
    ("item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,lots",
     ["non-numeric 'target'", "lots", "line"]),
    ("item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,-4",
     ["negative 'target'", "-4"]),
    ("item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,",
     ["empty 'target'"]),
    ("item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,inf",
     ["infinite 'target'"]),
    ("item_id,timestamp,target\na,2024-01-01,1\n,2024-01-02,3",
     ["empty 'item_id'"]),
    ("item_id,timestamp,target\na,2024-01-01,1\nb,2024-01-01,2\na,2024-01-01,3",
     ["duplicate (item, location, timestamp)", "2 row(s)"]),
    ("item_id,timestamp,target,promo\na,2024-01-01,1,maybe",
     ["'promo' (promo) must be 0/1", "maybe"]),
    ("item_id,timestamp,target,price\na,2024-01-01,1,-2",
     ["'price' (price) must be a non-negative number"]),
    ("item_id,timestamp,target", ["has a header but no data rows"]),
])
def test_long_format_bad_input_names_file_problem_and_rows(tmp_path, text, fragments):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(InputFormatError) as err:
        read_long(path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_rows_are_reported_with_their_line_in_the_file(tmp_path):
    path = write(tmp_path / "bad.csv", "item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,1\n"
                                       "a,2024-01-03,-7")
    with pytest.raises(InputFormatError) as err:
        read_long(path)
    sample = str(err.value).splitlines()[-1].split()
    assert sample[0] == "4" and "-7" in sample     # header is line 1, so the third row is line 4


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_any(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputFormatError, match="empty"):
        read_long(empty)


# ---------------------------------------------------------------------------------------------
# Kaggle store-item
# ---------------------------------------------------------------------------------------------

STORE_ITEM = """
date,store,item,sales
2013-01-01,1,1,13
2013-01-02,1,1,11
2013-01-01,2,1,12
2013-01-01,1,2,33
"""


def test_store_item_maps_store_to_location_and_item_to_item(tmp_path):
    path = write(tmp_path / "train.csv", STORE_ITEM)
    assert detect_format(path) == "store_item"
    frame = read_any(path)
    assert list(frame.columns) == ["item_id", "location_id", "timestamp", "target"]
    assert len(frame) == 4
    row = frame[(frame.item_id == "1") & (frame.location_id == "2")]
    assert row["target"].item() == 12.0 and row["timestamp"].item() == pd.Timestamp("2013-01-01")


@pytest.mark.parametrize("text, fragments", [
    ("date,store,item,sales\n2013-01-01,1,1,13\n2013-01-01,1,1,14", ["duplicate", "2013-01-01"]),
    ("date,store,item,sales\n2013-01-01,1,1,-1", ["negative 'sales'"]),
    ("date,store,item,sales\n01/32/2013,1,1,3", ["unparsable 'date'", "01/32/2013"]),
    ("date,store,item,sales\n2013-01-01,1,1,n/a2", ["non-numeric 'sales'", "n/a2"]),
])
def test_store_item_bad_input(tmp_path, text, fragments):
    path = write(tmp_path / "train.csv", text)
    with pytest.raises(InputFormatError) as err:
        read_store_item(path)
    assert str(path) in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_store_item_missing_column_is_named(tmp_path):
    path = write(tmp_path / "train.csv", "date,store,sales\n2013-01-01,1,3")
    with pytest.raises(InputFormatError, match=r"missing column\(s\) \['item'\]"):
        read_store_item(path)


# ---------------------------------------------------------------------------------------------
# M5 (fixture files generated here: calendar, sell prices, wide sales)
# ---------------------------------------------------------------------------------------------

def make_m5(folder, *, days=21, sales_override=None, prices=True, sales_name="sales_train_evaluation.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    dates = pd.date_range("2011-01-29", periods=days, freq="D")
    calendar = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"),
                             "wm_yr_wk": 11101 + np.arange(days) // 7,
                             "weekday": dates.day_name(), "d": [f"d_{i + 1}" for i in range(days)]})
    calendar.to_csv(folder / "calendar.csv", index=False)
    rng = np.random.default_rng(0)
    rows = []
    for item, cat in (("FOODS_1_001", "FOODS"), ("HOBBIES_1_002", "HOBBIES")):
        for store in ("CA_1", "TX_1"):
            rows.append({"id": f"{item}_{store}_evaluation", "item_id": item,
                         "dept_id": item[:-4], "cat_id": cat, "store_id": store,
                         "state_id": store[:2],
                         **{f"d_{i + 1}": int(v) for i, v in enumerate(rng.poisson(3, days))}})
    sales = pd.DataFrame(rows)
    if sales_override:
        sales_override(sales)
    sales.to_csv(folder / sales_name, index=False)
    if prices:
        weeks = sorted(calendar["wm_yr_wk"].unique())
        price_rows = [{"store_id": s, "item_id": i, "wm_yr_wk": w, "sell_price": 2.5 + k}
                      for k, (i, s) in enumerate([("FOODS_1_001", "CA_1"), ("FOODS_1_001", "TX_1"),
                                                  ("HOBBIES_1_002", "CA_1")])
                      for w in weeks]
        # HOBBIES_1_002 in TX_1 launches in the second week: no price before that.
        price_rows += [{"store_id": "TX_1", "item_id": "HOBBIES_1_002", "wm_yr_wk": w,
                        "sell_price": 9.0} for w in weeks[1:]]
        pd.DataFrame(price_rows).to_csv(folder / "sell_prices.csv", index=False)
    return folder


def test_m5_folder_reads_into_the_canonical_frame(tmp_path):
    folder = make_m5(tmp_path / "m5")
    assert detect_format(folder) == "m5"
    frame = read_any(folder)
    assert set(frame.columns) == {"item_id", "location_id", "timestamp", "target", "price",
                                  "category"}
    counts = frame.groupby(["item_id", "location_id"]).size()
    assert counts[("FOODS_1_001", "CA_1")] == 21
    assert counts[("HOBBIES_1_002", "TX_1")] == 14      # days before its first price are dropped
    first = frame[frame.item_id == "HOBBIES_1_002"].groupby("location_id")["timestamp"].min()
    assert first["TX_1"] == pd.Timestamp("2011-02-05")
    assert frame.loc[frame.item_id == "HOBBIES_1_002", "category"].unique().tolist() == ["HOBBIES"]
    ca = frame[(frame.item_id == "FOODS_1_001") & (frame.location_id == "CA_1")]
    assert (ca["price"] == 2.5).all()
    wide = pd.read_csv(folder / "sales_train_evaluation.csv")
    expected = wide.loc[(wide.item_id == "FOODS_1_001") & (wide.store_id == "CA_1"), "d_3"].item()
    assert ca.loc[ca.timestamp == pd.Timestamp("2011-01-31"), "target"].item() == expected


def test_m5_accepts_the_three_paths_or_one_file_beside_the_others(tmp_path):
    folder = make_m5(tmp_path / "m5", sales_name="sales_train_validation.csv")
    by_paths = read_m5(calendar=folder / "calendar.csv", prices=folder / "sell_prices.csv",
                       sales=folder / "sales_train_validation.csv")
    by_file = read_any(folder / "sales_train_validation.csv")
    pd.testing.assert_frame_equal(by_paths, by_file)


def test_m5_without_prices_keeps_every_day(tmp_path):
    folder = make_m5(tmp_path / "m5", prices=False)
    frame = read_m5(folder)
    assert "price" not in frame.columns
    assert len(frame) == 4 * 21


@pytest.mark.parametrize("breaker, fragments", [
    (lambda s: s.__setitem__("d_5", s["d_5"].astype(object).where(s.index != 1, "x")),
     ["non-numeric or empty sales", "d_5", "TX_1"]),
    (lambda s: s.__setitem__("d_2", s["d_2"].where(s.index != 0, -3)), ["negative sales", "d_2"]),
    (lambda s: s.__setitem__("store_id", "CA_1"), ["duplicate (item_id, store_id)"]),
    (lambda s: s.rename(columns={"store_id": "shop"}, inplace=True), ["store_id"]),
    (lambda s: s.__setitem__("d_99", 1), ["not in calendar.csv", "d_99"]),
])
def test_m5_bad_sales_file(tmp_path, breaker, fragments):
    folder = make_m5(tmp_path / "m5", sales_override=breaker)
    with pytest.raises(InputFormatError) as err:
        read_m5(folder)
    assert "sales_train_evaluation.csv" in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_m5_bad_calendar_and_missing_sales(tmp_path):
    folder = make_m5(tmp_path / "m5")
    calendar = pd.read_csv(folder / "calendar.csv")
    calendar.loc[3, "date"] = "someday"
    calendar.to_csv(folder / "calendar.csv", index=False)
    with pytest.raises(InputFormatError, match=r"calendar.csv: unparsable 'date'[\s\S]*someday"):
        read_m5(folder)
    (folder / "sales_train_evaluation.csv").unlink()
    with pytest.raises(InputFormatError, match="no M5 sales file"):
        read_m5(folder)


def test_unknown_format_lists_what_is_expected(tmp_path):
    path = write(tmp_path / "weird.csv", "foo,bar,baz\n1,2,3")
    with pytest.raises(InputFormatError, match=r"cannot tell the format[\s\S]*store-item"):
        read_any(path)
