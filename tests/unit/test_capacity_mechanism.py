"""The capacity mechanism's rules: the issue's worked example, property-based checks of clearing, price
protection and credits, and every bad request the issue lists."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echelon.models.capacity.mechanism import (
    CapacityError, RequestError, base_limits, check_capacity, clear_pool, clear_round, credits, incremental_sales,
    period_lines, program_capacity, protected_prices, request_cap, settle, validate_requests)


def requests(rows):
    """rows: (request_id, seller_id, fee, cuft, submitted minute)"""
    return pd.DataFrame([{"request_id": r, "seller_id": s, "storage_type": "standard", "max_fee_per_cuft": float(f),
                          "cuft_requested": float(c), "submitted_at": pd.Timestamp("2026-11-01", tz="UTC") + pd.Timedelta(minutes=m)}
                         for r, s, f, c, m in rows])


def test_worked_example_early_bidder_pays_the_later_lower_fee_and_nothing_after_credits():
    # Round 1 (early): the seller asks for 5,000 cuft at $6 and is granted; the round clears at $6.
    early = clear_round(requests([("r1", "S_A", 6, 5000, 0), ("r2", "S_B", 3, 4000, 1)]), 5000)
    assert early.summary()["clearing_price"] == 6.0
    # A later round of the same period clears at $4 (its lowest granted fee).
    later = clear_round(requests([("r3", "S_C", 7, 3000, 0), ("r4", "S_D", 4, 3000, 1), ("r5", "S_E", 2, 500, 2)]), 5000)
    assert later.summary()["clearing_price"] == 4.0
    grants = pd.concat([early.grants.assign(round="2026-11-01"), later.grants.assign(round="2026-11-08")])
    lines = period_lines(grants)
    seller_a = lines[lines["seller_id"] == "S_A"].iloc[0]
    assert (seller_a["cleared_price"], seller_a["protected_price"]) == (6.0, 4.0)
    assert seller_a["fee"] == 4 * 5000 == 20000
    # $300,000 of incremental sales earns 15% = $45,000 of credit, capped at the $20,000 fee.
    statements, _ = settle(lines, pd.Series({"S_A": 300000.0}))
    row = statements.set_index("seller_id").loc["S_A"]
    assert (row["fee"], row["credit"], row["net_charge"]) == (20000.0, 20000.0, 0.0)
    assert 0.15 * 300000 == 45000 > row["credit"]


def test_marginal_request_is_partly_filled_and_everyone_pays_the_lowest_granted_fee():
    result = clear_round(requests([("a", "S1", 9, 400, 0), ("b", "S2", 7, 400, 0), ("c", "S3", 5, 400, 0),
                                   ("d", "S4", 3, 400, 0)]), 1000)
    granted = result.grants.set_index("request_id")["cuft_granted"].to_dict()
    assert granted == {"a": 400.0, "b": 400.0, "c": 200.0, "d": 0.0}
    fees = result.grants.set_index("request_id")["fee_per_cuft"].to_dict()
    assert fees == {"a": 5.0, "b": 5.0, "c": 5.0, "d": 0.0}


def test_ties_go_to_the_earlier_submission_then_the_seller_id():
    result = clear_round(requests([("x", "S9", 5, 100, 2), ("y", "S2", 5, 100, 1), ("z", "S1", 5, 100, 1)]), 150)
    granted = result.grants.set_index("request_id")["cuft_granted"].to_dict()
    assert granted == {"z": 100.0, "y": 50.0, "x": 0.0}


def test_storage_types_clear_as_separate_pools():
    frame = requests([("a", "S1", 9, 100, 0), ("b", "S2", 2, 100, 0)])
    frame.loc[1, "storage_type"] = "oversize"
    result = clear_round(frame, {"standard": 50, "oversize": 500})
    pools = result.pools.set_index("storage_type")
    assert pools.loc["standard", "clearing_price"] == 9.0 and pools.loc["oversize", "clearing_price"] == 2.0
    assert result.summary()["clearing_price"] is None and result.summary()["granted_cuft"] == 150.0


def test_nothing_granted_means_no_price():
    result = clear_round(requests([("a", "S1", 9, 100, 0)]), 0)
    assert result.grants["cuft_granted"].sum() == 0 and math.isnan(result.pools["clearing_price"][0])
    assert result.summary()["clearing_price"] is None


request_sets = st.lists(
    st.tuples(st.integers(1, 20).map(float), st.floats(1.0, 5000.0, allow_nan=False), st.integers(0, 30), st.integers(0, 9)),
    min_size=1, max_size=40)


def frame_of(rows):
    return requests([(f"r{k:03d}", f"S{s}", fee, cuft, minute) for k, (fee, cuft, minute, s) in enumerate(rows)])


@settings(max_examples=150, deadline=None)
@given(request_sets, st.floats(0.0, 60000.0))
def test_clearing_properties(rows, capacity):
    frame = frame_of(rows)
    granted, price = clear_pool(frame, capacity)
    fees, wanted = frame["max_fee_per_cuft"].to_numpy(), frame["cuft_requested"].to_numpy()
    assert granted.sum() <= capacity + 1e-6 * max(1.0, capacity)                 # never more than capacity
    assert ((granted >= 0) & (granted <= wanted + 1e-9)).all()
    if granted.sum() < min(capacity, wanted.sum()) - 1e-6:
        pytest.fail("capacity left while requests wait")
    for k in np.flatnonzero(granted > 0):                                          # higher fees were filled first
        higher = fees > fees[k]
        assert np.allclose(granted[higher], wanted[higher])
    if (granted > 0).any():
        assert price == fees[granted > 0].min()                                    # the lowest granted fee


@settings(max_examples=150, deadline=None)
@given(request_sets, st.floats(0.0, 60000.0), st.data())
def test_raising_ones_own_fee_never_lowers_ones_allocation(rows, capacity, data):
    frame = frame_of(rows)
    k = data.draw(st.integers(0, len(frame) - 1))
    before, _ = clear_pool(frame, capacity)
    raised = frame.copy()
    raised.loc[k, "max_fee_per_cuft"] += data.draw(st.floats(0.01, 30.0))
    after, _ = clear_pool(raised, capacity)
    assert after[k] >= before[k] - 1e-9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0.01, 50.0)), min_size=1, max_size=12))
def test_price_protection_never_raises_a_fee_and_matches_later_rounds(prices):
    series = pd.Series([np.nan if p is None else p for p in prices], dtype="float64")
    protected = protected_prices(series)
    for k, (raw, fee) in enumerate(zip(series, protected)):
        if np.isnan(raw):
            assert np.isnan(fee)
            continue
        assert fee <= raw
        assert fee == np.nanmin(series.to_numpy()[k:])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e7)), min_size=1, max_size=30), st.floats(0, 1))
def test_credits_never_exceed_the_fee_and_net_is_never_negative(pairs, share):
    fee, sales = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    credit, net = credits(fee, sales, share)
    assert (credit <= fee).all() and (credit >= 0).all() and (net >= 0).all()
    assert np.allclose(credit + net, fee)


def test_incremental_sales_count_only_extra_space_used_within_the_grant():
    # occupied 1,500 over a 1,000 base with 2,000 granted: 500/1,500 of 90,000 sales are incremental
    assert incremental_sales([90000.0], [1500.0], [1000.0], [2000.0])[0] == pytest.approx(30000.0)
    assert incremental_sales([90000.0], [900.0], [1000.0], [2000.0])[0] == 0.0        # stayed under the base
    assert incremental_sales([90000.0], [5000.0], [1000.0], [1000.0])[0] == pytest.approx(18000.0)  # capped at grant
    assert incremental_sales([0.0], [0.0], [1000.0], [1000.0])[0] == 0.0


def test_base_limits_reward_efficient_sellers():
    sellers = pd.DataFrame({"seller_id": ["fast", "slow", "aged"], "storage_type": "standard",
                            "projected_daily_cuft": 100.0, "sell_through": [0.8, 0.2, 0.8], "aged_share": [0.0, 0.0, 0.6]})
    limits = base_limits(sellers).set_index("seller_id")
    assert limits.loc["fast", "base_limit_cuft"] > limits.loc["slow", "base_limit_cuft"]
    assert limits.loc["fast", "base_limit_cuft"] > limits.loc["aged", "base_limit_cuft"]
    assert list(request_cap([1000.0, 50000.0])) == [2000.0, 10000.0]


def test_program_capacity_from_utilisation_buffer_and_earlier_grants():
    facilities = pd.DataFrame({"facility_id": ["F1", "F2"], "storage_capacity_cuft": [10000.0, 20000.0]})
    prices = pd.DataFrame({"facility_id": ["F1", "F2", "F1"], "resource": ["storage", "storage", "flow"],
                           "shadow_price": [0.0, 1.0, 2.0], "utilisation": [0.5, 0.95, 0.99]})
    offered = program_capacity(facilities, prices, pd.Series({"standard": 0.75, "oversize": 0.25}),
                               already_granted={"standard": 1000.0}, buffer=0.1)
    # F1: 10,000 x (1 - 0.1 - 0.5) = 4,000; F2 is above 90%: 0.
    assert offered == {"standard": 2000.0, "oversize": 1000.0}


# ---- bad input: a clear error naming the problem ----------------------------------------------

GOOD = [("r1", "S1", 5, 100, 0), ("r2", "S2", 4, 200, 1)]


@pytest.mark.parametrize("edit, expected", [
    (lambda f: f.assign(max_fee_per_cuft=[0.0, 4.0]), "negative, zero or infinite fees"),
    (lambda f: f.assign(max_fee_per_cuft=[-1.0, 4.0]), "negative, zero or infinite fees"),
    (lambda f: f.assign(cuft_requested=[100.0, -5.0]), "negative, zero or infinite volumes"),
    (lambda f: f.assign(cuft_requested=[0.0, 200.0]), "negative, zero or infinite volumes"),
    (lambda f: f.assign(seller_id=["S1", "S404"]), "unknown sellers"),
    (lambda f: f.assign(storage_type=["standard", "hazmat"]), "unknown storage_type"),
    (lambda f: f.assign(request_id=["r1", "r1"]), "duplicate request_id"),
    (lambda f: f.assign(submitted_at=[pd.Timestamp("2026-11-01", tz="UTC"), pd.Timestamp("2026-11-09", tz="UTC")]),
     "after the round's cut-off"),
    (lambda f: f.drop(columns="max_fee_per_cuft"), "missing columns ['max_fee_per_cuft']"),
])
def test_bad_requests_are_rejected_with_a_message_naming_them(edit, expected):
    with pytest.raises(RequestError) as failure:
        validate_requests(edit(requests(GOOD)), sellers={"S1", "S2"}, cutoff="2026-11-08T23:59:59Z", where="round 2026-11-08")
    assert expected in str(failure.value) and "round 2026-11-08" in str(failure.value)
    if "missing" not in expected:
        assert "request_id" in str(failure.value)


def test_good_requests_pass_validation():
    assert len(validate_requests(requests(GOOD), sellers={"S1", "S2"}, cutoff="2026-11-08T23:59:59Z")) == 2


@pytest.mark.parametrize("capacity", [None, float("nan"), -1.0, "lots", float("inf")])
def test_missing_or_negative_program_capacity_is_rejected(capacity):
    with pytest.raises(CapacityError, match="program capacity"):
        check_capacity(capacity, "standard")
    with pytest.raises(CapacityError):
        clear_round(requests(GOOD), {"standard": capacity})


@pytest.mark.parametrize("utilisation, expected", [
    ([-0.2, 0.5], "missing or negative for facilities ['F1']"),
    ([0.5, float("nan")], "missing or negative for facilities ['F2']"),
])
def test_negative_or_missing_utilisation_is_named(utilisation, expected):
    # (moved here from the lake-level test: program_capacity is what rejects a bad capacity_prices partition)
    facilities = pd.DataFrame({"facility_id": ["F1", "F2"], "storage_capacity_cuft": [10000.0, 20000.0]})
    prices = pd.DataFrame({"facility_id": ["F1", "F2"], "resource": "storage", "shadow_price": 0.5,
                           "utilisation": utilisation})
    with pytest.raises(CapacityError) as failure:
        program_capacity(facilities, prices, pd.Series({"standard": 1.0}))
    assert expected in str(failure.value)


def test_capacity_prices_without_storage_rows_mean_missing_program_capacity():
    facilities = pd.DataFrame({"facility_id": ["F1"], "storage_capacity_cuft": [10000.0]})
    prices = pd.DataFrame({"facility_id": ["F1"], "resource": ["flow"], "shadow_price": [0.5], "utilisation": [0.5]})
    with pytest.raises(CapacityError, match="program capacity is missing"):
        program_capacity(facilities, prices, pd.Series({"standard": 1.0}))


def test_a_storage_type_without_capacity_is_rejected():
    frame = requests(GOOD)
    frame.loc[1, "storage_type"] = "oversize"
    with pytest.raises(CapacityError, match="'oversize' is missing"):
        clear_round(frame, {"standard": 100.0})


def test_clearing_is_deterministic_whatever_the_row_order():
    frame = frame_of([(5.0, 100.0, 3, 1), (5.0, 100.0, 3, 2), (7.0, 50.0, 1, 3), (5.0, 80.0, 0, 4)])
    first = clear_round(frame, 210).grants.set_index("request_id")["cuft_granted"]
    shuffled = clear_round(frame.sample(frac=1.0, random_state=3), 210).grants.set_index("request_id")["cuft_granted"]
    pd.testing.assert_series_equal(first.sort_index(), shuffled.sort_index())
