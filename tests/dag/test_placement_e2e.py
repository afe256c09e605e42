"""placement_nightly end to end on a tiny generated world, built ONCE for the module, and placement's bad
inputs at the level of the lake on the tables that run published.

The world: a forecasts partition and the network reference tables written directly (no demand pipeline,
to stay fast): 6 items, 3 FCs and 1 DC, 2 regions, capacities sized so that some bind. The DAG runs once,
in process (`dag.test()`, the session's Spark): it waits for the forecasts partition, gates the inputs,
solves with item subproblems on Spark, gates and publishes placement_plan and capacity_prices, logs to
MLflow and simulates.

Then, on that published world (each test undoes its damage to an input table): forecasts missing for the
date, non-monotone quantiles, a negative and a missing capacity, an item with no reachable FC (each
rejected by check_inputs' Great Expectations gates, naming table, partition, check and offending rows), a
facility in the plan that the network does not know (the plan gate) and a failed solve; none of them
changes the published plan or prices by a byte (manifest checksum). The same rules on the pure functions,
without Spark: tests/data/test_placement_gates.py.

Cost (measured on the loaded 2-core machine): Great Expectations gates dominate: the first in a process
~20 s (GX context), then ~5-7 s for facilities and ~12-15 s for forecasts (25 expectations); the DAG runs
six (three input suites, the prices check and the two publish gates) and the bad-input tests seven more,
the fewest that reach each suite through check_inputs (it gates forecasts, then facilities, then reach,
and stops at the first failure). Also: `airflow db migrate` ~9 s, the first MLflow run ~8 s (it creates
the SQLite store), six Lagrangian iterations on Spark ~15 s (ECHELON_PLACEMENT_MAX_ITER=6)."""

import pandas as pd
import pytest

from echelon import lake
from echelon.schedule import nightly_run_date

pytestmark = pytest.mark.slow   # Spark + one Airflow run with its GX gates
DS = "2026-11-20"
WORLD = {"items": 6, "facilities": 3, "regions": 2, "seed": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from echelon.jobs.placement import world as demo

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHELON_LAKE", str(tmp_path_factory.mktemp("placement-lake")))
        demo.publish(DS, **WORLD)
        yield patch


@pytest.fixture(scope="module")
def dag_run(world, dag_for_test):
    world.setenv("ECHELON_PLACEMENT_MAX_ITER", "6")   # the gap is 1.7% by then; convergence: unit tests
    dag = dag_for_test(world, "placement_nightly.py", "placement_nightly")
    run = dag.test(logical_date=nightly_run_date(DS), use_executor=False)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
    return run


@pytest.fixture
def published(dag_run):
    """Manifests of the published outputs; the test's damage to an input table is undone afterwards."""
    from echelon.models.placement import steps as job

    inputs = (job.FORECASTS, job.FACILITIES, job.DELIVERY_LANES)
    originals = {t: (lake.read(t, DS).drop(columns="ds"), lake.read_manifest(t, DS)) for t in inputs}
    outputs = {t: lake.read_manifest(t, DS) for t in (job.PLAN, job.PRICES)}
    yield outputs
    for table, (frame, manifest) in originals.items():
        assert lake.publish(frame, table, DS)["checksum"] == manifest["checksum"]


def untouched(published):
    for table, manifest in published.items():
        assert lake.read_manifest(table, DS) == manifest, f"{table} ds={DS} changed"


def test_dag_test_publishes_plan_prices_and_simulation(dag_run):
    import mlflow

    from echelon import tracking
    from echelon.models.placement import steps as job

    plan, prices = lake.read(job.PLAN, DS), lake.read(job.PRICES, DS)
    facilities = lake.read(job.FACILITIES, DS)
    assert set(plan.columns) == {"ds", *job.PLAN_COLUMNS} and set(prices.columns) == {"ds", *job.PRICE_COLUMNS}
    assert set(plan["facility_id"]) <= {"DC01", "FC01", "FC02", "FC03"} and (plan["target_units"] >= 0).all()
    # items whose demand is all lost under the binding capacities have no plan rows
    assert set(plan["item_id"]) <= {f"I{n:06d}" for n in range(WORLD["items"])} and plan["item_id"].nunique() >= 3
    assert {"same_day", "one_day", "two_day", "replenishment"} <= set(plan["speed"])
    assert len(prices) == 2 * len(facilities) == 8 and set(prices["resource"]) == {"storage", "flow"}
    assert (prices["utilisation"] <= 1 + 1e-6).all()
    # the tiny world still has what the model is about: capacities that bind (priced) and ones that do not
    assert (prices["shadow_price"] > 0).any() and (prices["shadow_price"] == 0).any(), prices

    folder = job.report_dir(DS)
    summary = pd.read_json(folder / "summary.json", typ="series")
    assert summary["engine"] == "spark" and summary["method"] == "lagrangian" and summary["items"] == WORLD["items"]
    assert summary["iterations"] <= 6 and summary["gap"] <= 0.05     # converges on Spark (cf. the unit tests)
    assert summary["max_capacity_violation"] <= 1e-6 and summary["bound"] <= summary["objective"] + 1e-6
    assert summary["plan_rows"] == len(plan) and summary["prices_rows"] == len(prices)
    report = (folder / "index.html").read_text()
    assert "optimised" in report and "newsvendor" in report and "proportional" in report
    for picture in ("convergence.png", "utilisation.png", "simulation.png"):
        assert (folder / picture).exists(), picture

    tracking.configure()
    runs = mlflow.search_runs(experiment_names=["echelon-placement"], filter_string=f"tags.ds = '{DS}'")
    by_name = runs.set_index("tags.mlflow.runName")
    assert {"solve-lagrangian", "simulate"} <= set(by_name.index), runs
    solved = by_name.loc["solve-lagrangian"]
    assert solved["metrics.objective"] == pytest.approx(summary["objective"])
    assert solved["metrics.gap"] == pytest.approx(summary["gap"])
    assert "metrics.optimised_shipping_cost_per_unit" in by_name.columns


def test_forecasts_missing_for_the_date(published):
    from echelon.models.placement import steps as job

    with pytest.raises(job.PlacementInputError, match="forecasts missing for the date.*ds=2026-11-21"):
        job.check_inputs("2026-11-21")
    untouched(published)


def test_non_monotone_quantiles(published):
    from echelon.expectations.gate import GateFailed
    from echelon.models.placement import steps as job

    forecasts = lake.read(job.FORECASTS, DS).drop(columns="ds")
    forecasts.loc[3, "q_0.6"] = forecasts.loc[3, "q_0.5"] - 1.0
    item = forecasts.loc[3, "item_id"]
    lake.publish(forecasts, job.FORECASTS, DS)
    with pytest.raises(GateFailed, match="gate 'placement_input_forecasts' failed") as failure:
        job.check_inputs(DS)
    message = str(failure.value)
    assert f"{job.FORECASTS}, partition ds={DS}" in message and "q_0_6" in message
    assert any("offending row" in line and item in line for line in message.splitlines()), message
    untouched(published)


def test_negative_and_missing_capacity(published):
    from echelon.expectations.gate import GateFailed
    from echelon.models.placement import steps as job

    facilities = lake.read(job.FACILITIES, DS).drop(columns="ds")
    facilities.loc[facilities["facility_id"] == "FC02", "storage_capacity_cuft"] = -5.0
    facilities.loc[facilities["facility_id"] == "FC03", "flow_capacity_units_per_day"] = None
    lake.publish(facilities, job.FACILITIES, DS)
    with pytest.raises(GateFailed, match="gate 'placement_input_facilities' failed") as failure:
        job.check_inputs(DS)
    message = str(failure.value)
    assert f"{job.FACILITIES}, partition ds={DS}" in message
    lines = message.splitlines()
    for check, column, facility in (("expect_column_values_to_be_between", "storage_capacity_cuft", "FC02"),
                                    ("expect_column_values_to_not_be_null", "flow_capacity_units_per_day", "FC03")):
        at = next(i for i, line in enumerate(lines) if check in line and column in line)
        assert facility in lines[at + 1] and "offending row" in lines[at + 1], message
    untouched(published)


def test_item_with_no_reachable_fc(published):
    from echelon.expectations.gate import GateFailed
    from echelon.models.placement import steps as job

    lanes = lake.read(job.DELIVERY_LANES, DS).drop(columns="ds")
    lake.publish(lanes[lanes["region_id"] != "R02"], job.DELIVERY_LANES, DS)
    with pytest.raises(GateFailed, match="gate 'placement_input_reach' failed") as failure:
        job.check_inputs(DS)
    message = str(failure.value)
    assert f"ds={DS}" in message and "reachable_fcs" in message
    offending = [line for line in message.splitlines() if "offending row" in line]
    assert offending and all("R02" in line for line in offending), message
    untouched(published)


def test_facility_in_the_plan_not_in_network(published):
    from echelon.expectations.gate import GateFailed, gate
    from echelon.models.placement import steps as job

    plan = lake.read(job.PLAN, DS).drop(columns="ds")
    plan.loc[0, "facility_id"] = "FC99"
    facility_ids = sorted(lake.read(job.FACILITIES, DS)["facility_id"])
    with pytest.raises(GateFailed, match="gate 'placement_plan' failed") as failure:
        lake.publish(plan, job.PLAN, DS, gate=gate("placement_plan", job.PLAN, DS, {"facility_ids": facility_ids}))
    message = str(failure.value)
    assert f"{job.PLAN}, partition ds={DS}" in message and "FC99" in message
    untouched(published)


def test_failed_solve_publishes_nothing(published):
    from echelon.models.placement import lp, steps as job

    with pytest.raises(lp.SolveError, match="did not reach optimality"):
        job.run(DS, method="monolithic", engine="local", time_limit_s=1e-9)
    untouched(published)


def test_the_published_prices_event_carries_the_ds_the_next_domain_resolves(dag_run):
    """solve's outlet events, as Airflow recorded them for this run, carry the run's data date; an
    Asset-triggered run handed those events (no logical date) resolves the same date."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from echelon.models.placement import steps as job
    from echelon.schedule import run_partitions

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == dag_run.run_id)).all()
        by_uri = {event.asset.uri: event for event in events}
        assert set(by_uri) == {job.PLAN.asset().uri, job.PRICES.asset().uri}, by_uri
        assert all(event.extra["ds"] == DS and "objective" in event.extra for event in events)
        assert run_partitions(None, {job.PRICES.asset(): [by_uri[job.PRICES.asset().uri]]}) == [DS]
