"""Every bad input named in the platform issue fails at the gate with a message naming the table, the
partition, the check and sample rows, and leaves the previously published partition untouched."""
import datetime as dt

import pytest

from echelon import catalog, lake
from echelon.catalog.demand import RAW_SALES
from echelon.expectations.gate import GateFailed, gate, validate

DS = "2026-11-20"
SALES, FEATURES, FORECASTS = RAW_SALES, catalog.demand.FEATURES, catalog.demand.FORECASTS
SCHEMA = "item_id string, location_id string, timestamp date, target double"


def day(offset):
    return dt.date(2026, 11, 20) - dt.timedelta(days=offset)


def good_sales():
    return [(item, "L1", day(k), float(k % 3)) for item in ("A", "B") for k in range(5)]


@pytest.fixture
def published(lake_dir, spark):
    """A good partition already in the lake; every bad publish below must leave it as it is."""
    frame = spark.createDataFrame(good_sales(), SCHEMA)
    return lake.publish(frame, SALES, DS, gate=gate("demand_raw_sales", SALES, DS))


def publish_bad(spark, rows, schema=SCHEMA, table=SALES, suite="demand_raw_sales", params=None):
    frame = spark.createDataFrame(rows, schema)
    with pytest.raises(GateFailed) as failure:
        lake.publish(frame, table, DS, gate=gate(suite, table, DS, params))
    message = str(failure.value)
    assert str(table) in message and f"ds={DS}" in message
    return message


def assert_untouched(manifest, table=SALES):
    assert lake.read_manifest(table, DS) == manifest


def test_good_partition_passes(published):
    assert published["rows"] == 10


def test_missing_or_renamed_column(spark, published):
    rows = [(r[0], r[1], r[2], r[3]) for r in good_sales()]
    message = publish_bad(spark, rows, "item_id string, location_id string, timestamp date, sales double")
    assert "missing columns ['target']" in message and "sales" in message
    assert_untouched(published)


def test_wrong_types(spark, published):
    rows = [(r[0], r[1], r[2].isoformat(), r[3]) for r in good_sales()]
    message = publish_bad(spark, rows, "item_id string, location_id string, timestamp string, target double")
    assert "expect_column_values_to_be_of_type" in message and "DateType" in message
    assert_untouched(published)


def test_null_keys(spark, published):
    rows = good_sales()
    rows[3] = (None, "L1", rows[3][2], 1.0)
    message = publish_bad(spark, rows)
    assert "expect_column_values_to_not_be_null" in message and "'column': 'item_id'" in message
    assert_untouched(published)


def test_duplicate_rows(spark, published):
    rows = good_sales() + [good_sales()[2]]
    message = publish_bad(spark, rows)
    assert "expect_compound_columns_to_be_unique" in message
    assert "'item_id': 'A'" in message and str(good_sales()[2][2]) in message
    assert_untouched(published)


def test_negative_sales(spark, published):
    rows = good_sales()
    rows[4] = (*rows[4][:3], -3.0)
    message = publish_bad(spark, rows)
    assert "'column': 'target'" in message and "-3.0" in message
    assert_untouched(published)


def test_missing_day_inside_history(spark, published):
    rows = [r for r in good_sales() if not (r[0] == "B" and r[2] == day(2))]
    message = publish_bad(spark, rows)
    assert "_days_since_prev" in message and "'item_id': 'B'" in message and str(day(1)) in message
    assert_untouched(published)


def test_empty_partition(spark, published):
    message = publish_bad(spark, [])
    assert "expect_table_row_count_to_be_between" in message and "0 rows" in message
    assert_untouched(published)


def test_partition_for_the_wrong_date(spark, published):
    rows = [(r[0], r[1], r[2] - dt.timedelta(days=1), r[3]) for r in good_sales()]
    message = publish_bad(spark, rows)
    assert "expect_column_max_to_be_between" in message and str(day(1)) in message
    assert_untouched(published)


def test_nan_or_infinite_features(spark, lake_dir):
    schema = "item_id string, location_id string, date date, target double, is_future int, lag_7 double, price_ratio double"
    good = spark.createDataFrame([("A", "L1", day(k), 1.0, 0, 1.0, 1.0) for k in range(3)], schema)
    manifest = lake.publish(good, FEATURES, DS, gate=gate("demand_features", FEATURES, DS))
    rows = [("A", "L1", day(0), 1.0, 0, float("nan"), 1.0), ("A", "L1", day(1), 1.0, 0, 1.0, float("inf")), ("A", "L1", day(2), 1.0, 0, 1.0, 1.0)]
    message = publish_bad(spark, rows, schema, FEATURES, "demand_features")
    assert "_non_finite_values" in message and "2 unexpected rows" in message
    assert_untouched(manifest, FEATURES)


def forecast_rows(q5=5.0, q1=1.0):
    qs = [q1, 2.0, 3.0, 4.0, q5, 6.0, 7.0, 8.0, 9.0]
    return [("A", "L1", dt.date(2026, 11, 21) + dt.timedelta(days=h - 1), h, *qs, "m/1") for h in (1, 2)]


FORECAST_SCHEMA = ("item_id string, location_id string, target_date date, horizon int, "
                   + ", ".join(f"`q_0.{k}` double" for k in range(1, 10)) + ", model_version string")
FORECAST_PARAMS = {"horizon": 28, "day_after_ds": "2026-11-21"}


def test_non_monotone_quantiles(spark, lake_dir):
    good = spark.createDataFrame(forecast_rows(), FORECAST_SCHEMA)
    manifest = lake.publish(good, FORECASTS, DS, gate=gate("demand_forecasts", FORECASTS, DS, FORECAST_PARAMS))
    message = publish_bad(spark, forecast_rows(q5=3.5), FORECAST_SCHEMA, FORECASTS, "demand_forecasts", FORECAST_PARAMS)
    assert "expect_column_pair_values_a_to_be_greater_than_b" in message and "q_0_5" in message
    # The suite's quantile checks come from the contract's quantile list (its `quantile_columns` block).
    message = publish_bad(spark, forecast_rows(q1=-1.0), FORECAST_SCHEMA, FORECASTS, "demand_forecasts", FORECAST_PARAMS)
    assert "expect_column_values_to_be_between" in message and "q_0_1" in message
    assert_untouched(manifest, FORECASTS)


def test_validate_reports_without_raising(spark, lake_dir):
    frame = spark.createDataFrame(good_sales(), SCHEMA)
    result = validate(frame, "demand_raw_sales", str(SALES), "2026-11-21", raise_on_failure=False)
    assert not result.success
    assert [f["expectation"] for f in result.failures] == ["expect_column_max_to_be_between"]


def test_data_docs_show_a_failure_at_once_and_passed_gates_after_a_rebuild(spark, tmp_path, monkeypatch):
    """A failed gate writes its Data Docs page itself; passed gates skip the rebuild (once per run, in each
    DAG's data_docs teardown) and appear after build_docs()."""
    from echelon.expectations.gate import build_docs, docs_index

    monkeypatch.setenv("ECHELON_REPORTS", str(tmp_path / "reports"))
    frame = spark.createDataFrame(good_sales(), SCHEMA)
    assert validate(frame, "demand_raw_sales", str(SALES), DS).success
    assert not docs_index().exists(), "a passed gate rebuilt the Data Docs"
    assert not validate(frame, "demand_raw_sales", str(SALES), "2026-11-21", raise_on_failure=False).success
    pages = docs_index().parent / "validations"
    assert len(list(pages.rglob("*.html"))) == 1, "the failure's page is missing, or passed gates' pages were built"
    assert build_docs() == docs_index()
    assert len(list(pages.rglob("*.html"))) == 3   # the pass, and the failure's two runs (quick, then detailed)
