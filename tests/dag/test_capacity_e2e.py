"""Capacity rounds through the lake and Airflow on a tiny stub world, built ONCE for the module: two
November rounds by their step functions, then the December round through `dag.test()` (in-process, once),
which closes and settles November.

While November is still open (the tests before the DAG run, in file order; each checks it): a bad round
fails at the loader and at clearing with a message naming table, partition and problems and leaves every
published partition byte-identical; the GX gate's own catch of an unknown seller; price protection across
the November rounds; re-clearing a round gives the same grants. After the DAG run: the published December
tables and November's settlement, a closed period's rounds cannot be re-run, and its statements are never
silently rewritten.

Cost: Great Expectations gates take ~10 s each on a loaded 2-core machine. The setup rounds and the
re-runs publish through the real steps with the gate switched off (`ungated`); every capacity suite
(base_limits, requests, grants, rounds, statements, settlements) still runs as a real gate in the DAG's
December run, and test_the_gate_itself_rejects_requests_from_unknown_sellers runs one on bad data."""
import contextlib
import datetime as dt
import os
import shutil

import pandas as pd
import pytest

from echelon import lake

pytestmark = pytest.mark.slow   # Spark + one Airflow run with its GX gates
ROUNDS = ["2026-11-22", "2026-11-29"]   # Sundays of November, cleared by the step functions
DECEMBER = "2026-12-06"                 # cleared by the DAG: it closes November


@contextlib.contextmanager
def ungated():
    """The steps exactly as they are, publishing without their GX gate (the gate is not what these
    publishes test; see the module docstring for where every suite runs for real)."""
    from echelon import lake

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lake, "gate_of", lambda *args, **kwargs: None)   # gate=True finds no gate
        yield


def november_is_open():
    from echelon.models.capacity import steps

    assert steps.closed_on("2026-11") is None, "this test must run before the DAG run closes November (file order)"


def manifests(*days):
    from echelon.models.capacity import steps

    tables = (steps.BASE_LIMITS, steps.RAW_REQUESTS, steps.GRANTS, steps.ROUNDS, steps.STATEMENTS)
    return {(str(t), ds): lake.read_manifest(t, ds) for t in tables for ds in days}


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    lake_root = tmp_path_factory.mktemp("capacity-lake")
    saved = os.environ.get("ECHELON_LAKE")
    os.environ["ECHELON_LAKE"] = str(lake_root)
    from echelon.jobs.capacity import world as job
    from echelon.models.capacity import steps

    with ungated():
        for ds in ROUNDS:
            job.stub_upstream(ds)
            job.run(ds, spark=spark)
            steps.base_limits(ds, spark=spark)
            steps.requests(ds)
            steps.clear(ds)
            steps.statements(ds, spark=spark)
    job.stub_upstream(DECEMBER)
    job.run(DECEMBER, spark=spark)
    yield lake_root
    if saved is None:
        os.environ.pop("ECHELON_LAKE", None)
    else:
        os.environ["ECHELON_LAKE"] = saved


@pytest.fixture(scope="module")
def dag_run(world, dag_for_test):
    with pytest.MonkeyPatch.context() as patch:
        dag = dag_for_test(patch, "capacity_weekly.py", "capacity_weekly")
        # the Monday run after the Sunday cut-off
        yield dag.test(logical_date=dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.timezone.utc), use_executor=False)


# ---- November still open: bad input, price protection, re-clearing ---------------------------------

def test_a_bad_round_fails_naming_its_problems_and_keeps_what_was_published(world):
    """Requests with one problem of each kind fail the round at the loader, and missing program capacity
    fails it at clearing; nothing published (either November round) changes by a byte."""
    from echelon.jobs.capacity.sellers import CAPACITY_PRICES
    from echelon.jobs.capacity.world import REQUESTS
    from echelon.models.capacity import steps
    from echelon.models.capacity.mechanism import CapacityError, RequestError

    november_is_open()
    ds = ROUNDS[-1]
    before = manifests(*ROUNDS)
    assert all(m["rows"] > 0 for (table, _), m in before.items() if "statements" not in table), before
    good = lake.read(REQUESTS, ds).drop(columns="ds").reset_index(drop=True)
    assert len(good) >= 4, f"the stub round needs at least 4 requests for this test, it has {len(good)}"
    ids = good["request_id"].tolist()
    bad = good.copy()
    bad.loc[0, "max_fee_per_cuft"] = -bad.loc[0, "max_fee_per_cuft"]
    bad.loc[1, "cuft_requested"] = 0.0
    bad.loc[2, "seller_id"] = "S9999"
    bad.loc[3, "submitted_at"] = pd.Timestamp(ds, tz="UTC") + pd.Timedelta(days=1, seconds=1)
    bad = pd.concat([bad, good.iloc[[0]].assign(storage_type="hazmat")], ignore_index=True)   # duplicate id, unknown type
    lake.publish(bad, REQUESTS, ds)
    try:
        with pytest.raises(RequestError) as failure:
            steps.requests(ds)
    finally:
        lake.publish(good, REQUESTS, ds)
    message = str(failure.value)
    assert f"{REQUESTS} ds={ds}" in message and "nothing cleared" in message, message
    for problem, request in (("negative, zero or infinite fees", ids[0]), ("negative, zero or infinite volumes", ids[1]),
                             ("unknown sellers", ids[2]), ("after the round's cut-off", ids[3]),
                             ("duplicate request_id", ids[0]), ("unknown storage_type", ids[0])):
        line = next((text for text in message.splitlines() if problem in text), None)
        assert line is not None and request in line, (problem, request, message)
    assert manifests(*ROUNDS) == before

    part = CAPACITY_PRICES.partition(ds)      # placement has not published capacity_prices for ds
    aside = part.with_name("aside")
    shutil.move(part, aside)
    try:
        with pytest.raises(CapacityError, match=f"program capacity is missing for ds={ds}: {CAPACITY_PRICES}"):
            steps.clear(ds)
    finally:
        shutil.move(aside, part)
    assert manifests(*ROUNDS) == before


def test_the_gate_itself_rejects_requests_from_unknown_sellers(world):
    """Defence in depth: the GX suite catches what validate_requests catches, for data that skips it."""
    from echelon.expectations.gate import GateFailed, gate
    from echelon.models.capacity import steps

    ds = ROUNDS[-1]
    frame = lake.read(steps.RAW_REQUESTS, ds).drop(columns="ds")
    frame.loc[0, "seller_id"] = "S9999"
    before = manifests(*ROUNDS)
    params = {"sellers": sorted(lake.read(steps.BASE_LIMITS, ds)["seller_id"]), "storage_types": ["standard", "oversize"],
              "cutoff_epoch": int((pd.Timestamp(ds, tz="UTC") + pd.Timedelta(hours=23, minutes=59, seconds=59)).timestamp())}
    with pytest.raises(GateFailed, match="seller_id") as failure:
        lake.publish(frame, steps.RAW_REQUESTS, ds, gate=gate("capacity_requests", steps.RAW_REQUESTS, ds, params))
    assert f"{steps.RAW_REQUESTS}, partition ds={ds}" in str(failure.value) and "S9999" in str(failure.value)
    assert manifests(*ROUNDS) == before


def test_price_protection_lowers_early_fees_to_later_prices(world):
    from echelon.models.capacity.steps import ROUNDS as ROUND_TABLE, STATEMENTS

    lines = lake.read(STATEMENTS, ROUNDS[-1])
    assert set(lines["round"]) == set(ROUNDS)
    assert (lines["protected_price"] < lines["cleared_price"] - 1e-9).any(), "no fee was lowered: the world tests nothing"
    prices = {ds: lake.read(ROUND_TABLE, ds).set_index("storage_type")["clearing_price"] for ds in ROUNDS}
    for line in lines.itertuples():
        later = [prices[r].get(line.storage_type) for r in ROUNDS if r >= line.round]
        assert line.protected_price == pytest.approx(min(p for p in later if pd.notna(p)))
        assert line.protected_price <= line.cleared_price
        assert line.fee == pytest.approx(round(line.protected_price * line.cuft_granted, 2))


def test_rerunning_a_round_gives_the_same_grants(world):
    from echelon.models.capacity import steps

    november_is_open()
    before = lake.read_manifest(steps.GRANTS, ROUNDS[-1])
    with ungated():
        steps.clear(ROUNDS[-1])
    after = lake.read_manifest(steps.GRANTS, ROUNDS[-1])
    assert after["published_at"] >= before["published_at"] and after["rows"] > 0
    assert (after["rows"], after["checksum"]) == (before["rows"], before["checksum"])


def test_dag_test_clears_the_round_and_settles_the_previous_period(dag_run, world):
    from echelon.models.capacity.steps import GRANTS, ROUNDS as ROUND_TABLE, SETTLEMENTS, STATEMENTS, report_dir

    assert str(dag_run.state) in ("success", "DagRunState.SUCCESS"), dag_run.state
    pools = lake.read(ROUND_TABLE, DECEMBER)
    assert (pools["granted_cuft"] <= pools["capacity_cuft"] + 1e-6).all() and pools["granted_cuft"].sum() > 0
    grants = lake.read(GRANTS, DECEMBER)
    granted = grants[grants["cuft_granted"] > 0]
    for pool, rows in granted.groupby("storage_type"):   # everyone in a pool pays its lowest granted fee
        assert (rows["fee_per_cuft"] == rows["max_fee_per_cuft"].min()).all()
    settled = lake.read(SETTLEMENTS, DECEMBER)
    assert set(settled["period"]) == {"2026-11"} and (settled["status"] == "closed").all()
    assert (settled["credit"] <= settled["fee"] + 0.01).all() and (settled["net_charge"] >= 0).all()
    november_fees = lake.read(STATEMENTS, ROUNDS[-1]).groupby("seller_id")["fee"].sum()
    pd.testing.assert_series_equal(settled.set_index("seller_id")["fee"].sort_index(),
                                   november_fees.sort_index(), check_names=False, atol=0.05)
    assert set(lake.read(STATEMENTS, DECEMBER)["period"]) == {"2026-12"}
    page = (report_dir(DECEMBER) / "index.html").read_text()
    assert "Market simulation" in page and "Settled period" in page and (report_dir(DECEMBER) / "curves.png").exists()


def test_a_round_of_a_closed_period_cannot_be_rerun(dag_run, world):
    from echelon.models.capacity import steps

    before = lake.read_manifest(steps.GRANTS, ROUNDS[-1])
    for step in (steps.base_limits, steps.requests, steps.clear, steps.statements):
        with pytest.raises(steps.PeriodClosed, match=f"period 2026-11 was closed and settled on ds={DECEMBER}"):
            step(ROUNDS[-1])
    assert lake.read_manifest(steps.GRANTS, ROUNDS[-1]) == before


def test_closed_statements_are_never_silently_rewritten(dag_run, world, monkeypatch, spark):
    from echelon.models.capacity import steps

    before = lake.read_manifest(steps.SETTLEMENTS, DECEMBER)
    with ungated():
        steps.statements(DECEMBER, spark=spark)      # the same inputs: same rows, allowed
        same = lake.read_manifest(steps.SETTLEMENTS, DECEMBER)
        assert same["published_at"] >= before["published_at"]
        assert (same["rows"], same["checksum"]) == (before["rows"], before["checksum"])
        monkeypatch.setenv("ECHELON_CAPACITY_CREDIT_SHARE", "0.5")   # would change November's credits
        with pytest.raises(steps.PeriodClosed, match="never rewritten"):
            steps.statements(DECEMBER, spark=spark)
    assert lake.read_manifest(steps.SETTLEMENTS, DECEMBER) == same
