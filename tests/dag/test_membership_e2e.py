"""membership_weekly end to end on a tiny synthetic panel (400 customers x 12 months), in process
(`dag.test()`, the session's Spark): ingest -> raw gate -> Spark transitions (gated) -> Deep PQR fit
(MLflow run, @challenger, @champion) -> the shipped scenarios -> membership/counterfactual_shares (gated).
The fit runs at ECHELON_MEMBERSHIP_FIT_SCALE=0.1 (a tenth of each stage's steps): this checks the wiring,
not the accuracy (tests/unit/test_membership.py and benchmarks/membership_bench.py do that).
Then a bad panel (a customer with two actions in one month) fails ingest with one line and exit 2, and
changes no published partition."""
import datetime as dt
import os

import pytest

from echelon import lake

pytestmark = pytest.mark.slow   # Spark + one Airflow run with its GX gates + a (tiny) neural fit
DS = "2026-12-06"


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from echelon.models.membership import steps

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHELON_LAKE", str(tmp_path_factory.mktemp("membership-lake")))
        patch.setenv("ECHELON_MEMBERSHIP_FIT_SCALE", "0.1")
        steps.simulate(DS, seed=21, customers=400, months=12)
        yield patch


@pytest.fixture(scope="module")
def dag_run(world, dag_for_test):
    dag = dag_for_test(world, "membership_weekly.py", "membership_weekly")
    run = dag.test(logical_date=dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.timezone.utc), use_executor=False)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
    return run


def test_the_weekly_run_publishes_shares_with_the_truth_beside_them(dag_run):
    from echelon import tracking
    from echelon.catalog.membership import BENEFIT_VALUES, SHARES
    from echelon.models.membership.steps import MODEL_NAME

    shares = lake.read(SHARES, DS)
    assert set(shares["scenario"]) == {"status_quo", "monthly_price_rise", "annual_price_cut", "new_digital_benefit"}
    assert len(shares) == 4 * 4 * 24 * 3
    assert shares.groupby(["scenario", "segment", "month"])["share"].sum().round(6).eq(1).all()
    assert shares["share_true"].notna().all()
    assert shares["month"].min() == "2027-01"
    assert len(lake.read(BENEFIT_VALUES, DS)) == 16
    assert tracking.alias_version(MODEL_NAME, tracking.CHAMPION) is not None


def test_a_panel_with_two_actions_in_a_month_fails_and_loses_nothing(dag_run, capsys):
    from echelon.catalog.membership import PANEL, RAW_PANEL, SHARES, TRANSITIONS
    from echelon.models.membership import steps

    before = {t: lake.read_manifest(t, DS) for t in (RAW_PANEL, TRANSITIONS, SHARES)}
    good = lake.read(PANEL, DS).drop(columns="ds")
    lake.publish(good.iloc[list(range(len(good))) + [7]], PANEL, DS)
    try:
        assert steps.main(["ingest", "--ds", DS]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "more than one action" in err and str(PANEL) in err, err
        assert {t: lake.read_manifest(t, DS) for t in before} == before
    finally:
        lake.publish(good, PANEL, DS, extra={"seed": 21})
    assert os.environ["ECHELON_MEMBERSHIP_FIT_SCALE"] == "0.1"
