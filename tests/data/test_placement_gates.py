"""Placement's bad inputs fail with a message naming them, and nothing already published is lost.

Where each case the issue lists is tested (so that no case needs a Spark world of its own):
- on the pure functions the job builds its instance with (`instance.from_tables` -> `check_network`),
  here, without Spark or a lake: negative and missing capacities (storage and flow), an item with no
  reachable FC, lanes naming a facility that `facilities` does not know, items without a cube or price;
- at the level of the lake, on the world tests/dag/test_placement_e2e.py publishes through the DAG
  anyway: forecasts missing for the date, non-monotone quantiles, a negative and a missing capacity, an
  item with no reachable FC (each rejected by `check_inputs`' Great Expectations gate with a message naming
  the table, partition, check and offending rows), a facility in the plan that the network does not
  know (the plan gate), and a failed solve; each leaves the published plan and prices byte-identical
  (manifest checksum);
- infeasible capacity (a feasible plan with the shortfall reported): tests/unit/test_placement_model.py.

Also here: item subproblems solved on Spark equal those solved in process."""
import numpy as np
import pytest

from echelon.models.placement.instance import InstanceError, from_tables, generate, generate_tables
from echelon.models.placement.parallel import LocalSolver, SparkSolver


@pytest.fixture
def tables():
    """A tiny network: 1 DC, 3 FCs, 2 regions, 4 items (fresh per test: the tests damage it)."""
    return generate_tables(items=4, facilities=3, regions=2, seed=3)


def build(t):
    return from_tables(t["summary"], t["items"], t["facilities"], t["delivery_lanes"], t["transfer_lanes"],
                       t["window"])


def test_the_undamaged_tables_build_an_instance(tables):
    inst = build(tables)       # the damage below is what makes the other tests fail
    assert inst.shape[:4] == (4, 3, 1, 2)


@pytest.mark.parametrize("column", ["storage_capacity_cuft", "flow_capacity_units_per_day"])
@pytest.mark.parametrize("value", [-5.0, None])
def test_negative_or_missing_capacity_names_the_facility(tables, column, value):
    facilities = tables["facilities"]
    facilities.loc[facilities["facility_id"] == "FC02", column] = value
    with pytest.raises(InstanceError, match=rf"network: {column} missing or negative at \['FC02'\]"):
        build(tables)


def test_negative_dc_capacity_names_the_dc(tables):
    facilities = tables["facilities"]
    facilities.loc[facilities["facility_id"] == "DC01", "storage_capacity_cuft"] = -1.0
    with pytest.raises(InstanceError, match=r"storage_capacity_cuft missing or negative at \['DC01'\]"):
        build(tables)


def test_item_with_no_reachable_fc_names_region_and_items(tables):
    lanes = tables["delivery_lanes"]
    tables["delivery_lanes"] = lanes[lanes["region_id"] != "R02"]
    with pytest.raises(InstanceError, match=r"4 item\(s\) have no reachable FC.*region\(s\) \['R02'\]") as failure:
        build(tables)
    assert "I000000" in str(failure.value)


def test_lanes_from_a_facility_not_in_the_network(tables):
    lanes = tables["delivery_lanes"].copy()
    lanes.loc[0, "facility_id"] = "FC99"
    tables["delivery_lanes"] = lanes
    with pytest.raises(InstanceError, match=r"lanes name facilities not in facilities: \['FC99'\]"):
        build(tables)


def test_items_without_cube_or_price(tables):
    items = tables["items"]
    items.loc[items["item_id"] == "I000001", "cube_cuft"] = np.nan
    items.loc[items["item_id"] == "I000003", "price"] = np.nan
    with pytest.raises(InstanceError, match=r"2 forecast item\(s\) have no valid cube_cuft/price in items: "
                                            r"\['I000001', 'I000003'\]"):
        build(tables)


def test_spark_subproblems_equal_in_process(spark):
    inst = generate(items=9, facilities=3, regions=2, seed=6)
    lam = np.linspace(0.0, 3.0, len(inst.capacity))
    caps = np.full((9, len(inst.capacity)), 1.0) * inst.capacity / 9
    spark_solver = SparkSolver(inst, spark, partitions=2)
    try:
        # Pricing (the cached item frame) and recovery (a new frame with each item's capacity shares).
        for kwargs in ({}, {"caps": caps, "with_plan": True}):
            a = spark_solver(None if kwargs else lam, **kwargs)
            b = LocalSolver(inst)(None if kwargs else lam, **kwargs)
            # Optimal values are unique; the optimal vertex of a degenerate LP need not be.
            key = "cost" if kwargs else "priced"
            assert np.allclose(a[key], b[key], rtol=1e-7, atol=1e-6)
            if kwargs:
                assert (a["usage"] <= caps + 1e-6).all() and (a["usage"].sum(axis=0) <= inst.capacity + 1e-6).all()
    finally:
        spark_solver.close()
