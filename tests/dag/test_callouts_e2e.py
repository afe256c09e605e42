"""callouts_nightly end to end on a small synthetic world built ONCE for the module, and the callouts bad
inputs whose catch is a Great Expectations gate, at the level of the lake on the tables that run published.

The world: ten days of history of the synthetic shopper world under the uniform policy (seed_history,
written straight to the lake), 1,500 impressions a day. The DAG runs once, in process (`dag.test()`, the
session's Spark) for ds=2026-11-20: it lands the day's logs through the impressions, catalog and clicks
gates, builds the matured feedback with Spark (gated), fits the three candidate policies, evaluates them
off-policy (two days held out), promotes and publishes the gated serving table.

Then, on that published world: impressions with a zero, a missing and an above-one propensity and a
duplicate impression id (landed through the ingest job from a logs folder: one gate run, each problem
named with its offending impression), clicks for an unknown impression and before their impression (the
clicks gate ingest wires, against the impressions the DAG published), a serving table naming a callout the
catalog no longer has (the serving gate), and an empty day of logs (ingest's own check, before any gate);
none of them changes a published partition of ds by a byte (manifest checksum). Where the rest is tested:
tests/data/test_callouts_gates.py (the pure checks, without Spark).

Cost (measured on the loaded 2-core machine): Great Expectations gates dominate, 7-50 s each under load;
the DAG runs five (impressions, catalog, clicks, feedback, serving) and the bad-input tests three more.
Also `airflow db migrate` ~10 s and the three policies' fits and bootstraps. The empirical-Bayes fits run
on one BLAS thread (threadpoolctl): OpenBLAS's two threads per call fight over the loaded cores."""
from pathlib import Path

import pandas as pd
import pytest

from echelon import lake
from echelon.models.callouts.ope import ESTIMATORS
from echelon.schedule import nightly_run_date

pytestmark = pytest.mark.slow   # Spark + one Airflow run with its GX gates
DS = "2026-11-20"
WORLD = {"ECHELON_CALLOUTS_WORLD_START": "2026-11-10", "ECHELON_CALLOUTS_TRAFFIC": "1500",
         "ECHELON_CALLOUTS_EVAL_DAYS": "2", "ECHELON_CALLOUTS_SEED": "7"}
SUITES = ("callouts_impressions", "callouts_catalog", "callouts_clicks", "callouts_feedback", "callouts_serving")


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from echelon.jobs.callouts.ingest import seed_history

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHELON_LAKE", str(tmp_path_factory.mktemp("callouts-lake")))
        for key, value in WORLD.items():
            patch.setenv(key, value)
        seed_history("2026-11-10", "2026-11-19")
        yield patch


@pytest.fixture(scope="module")
def dag_run(world, dag_for_test):
    from threadpoolctl import threadpool_limits

    dag = dag_for_test(world, "callouts_nightly.py", "callouts_nightly")
    with threadpool_limits(limits=1):
        run = dag.test(logical_date=nightly_run_date(DS), use_executor=False)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
    return run


@pytest.fixture
def published(dag_run):
    """Manifests of every callouts partition of ds; each bad input below must leave them as they are."""
    from echelon.catalog.callouts import CATALOG, CLICKS, FEEDBACK, IMPRESSIONS, SERVING

    manifests = {t: lake.read_manifest(t, DS) for t in (CATALOG, IMPRESSIONS, CLICKS, FEEDBACK, SERVING)}
    yield manifests
    untouched(manifests)


def untouched(published):
    for table, manifest in published.items():
        assert lake.read_manifest(table, DS) == manifest, f"{table} ds={DS} changed"


def offending(message: str, expectation: str, column: str) -> list[str]:
    """The offending-row lines the gate printed under its failed `expectation` on `column`."""
    lines = message.splitlines()
    at = [i for i, line in enumerate(lines) if line.lstrip().startswith(f"- {expectation}(") and f"'{column}'" in line]
    assert at, f"{expectation} on {column} did not fail:\n{message}"
    rows = []
    for line in lines[at[0] + 1:]:
        if "offending row" not in line:
            break
        rows.append(line)
    return rows


def test_dag_test_publishes_a_gated_serving_table_and_a_champion(dag_run):
    import json

    from echelon.expectations.gate import recorded
    from echelon.catalog.callouts import CATALOG, SERVING
    from echelon.models.callouts.train import report_dir

    serving, catalog = lake.read(SERVING, DS), lake.read(CATALOG, DS)
    assert lake.read_manifest(SERVING, DS)["rows"] == len(serving) > 0
    assert serving.groupby("segment")["probability"].sum().round(9).eq(1.0).all()
    assert set(serving["callout_id"]) == set(catalog["callout_id"])
    gates = {g["suite"]: g for g in recorded(DS)}
    for suite in SUITES:          # every callouts gate ran in the DAG, on the data, and passed
        assert suite in gates and gates[suite]["success"] and gates[suite]["rows"] > 0, (suite, gates.get(suite))
    reports = report_dir(DS)
    ope = pd.read_csv(reports / "ope.csv")
    assert set(ope["policy"]) == {"flat_ts", "meta_ts", "contextual"} and set(ope["estimator"]) == set(ESTIMATORS)
    assert (ope["ci_low"] <= ope["value"]).all() and (ope["value"] <= ope["ci_high"]).all()
    promotion = json.loads((reports / "promotion.json").read_text())
    assert promotion["promoted"] and promotion["champion_before"] is None
    assert (reports / "posterior_meta_ts.png").exists()


def test_the_nightly_run_logs_posteriors_and_the_ope_table_to_mlflow(dag_run):
    import mlflow

    from echelon import tracking

    tracking.configure()
    runs = mlflow.search_runs(experiment_names=["echelon-callouts"], filter_string=f"tags.ds = '{DS}'")
    train = runs[runs["tags.mlflow.runName"] == "train"].iloc[0]
    client = mlflow.MlflowClient()
    artifacts = {a.path for folder in ("plots", "posteriors", "ope") for a in client.list_artifacts(train.run_id, folder)}
    for method in ("flat_ts", "meta_ts"):      # Beta posteriors: a plot and every callout's parameters
        assert {f"plots/posterior_{method}.png", f"posteriors/posterior_{method}.csv"} <= artifacts, artifacts
    assert {"ope/ope.csv", "ope/ope_table.json", "plots/ope.png"} <= artifacts, artifacts
    for method in ("flat_ts", "meta_ts", "contextual"):
        assert f"metrics.{method}_dr" in runs.columns and f"metrics.{method}_true_regret_per_1k" in runs.columns


def write(folder: Path, impressions: pd.DataFrame, clicks: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    impressions.to_csv(folder / "impressions.csv", index=False)
    clicks.to_csv(folder / "clicks.csv", index=False)
    return folder


def logged_impressions(n: int) -> pd.DataFrame:
    return pd.DataFrame({"impression_id": [f"i{k}" for k in range(n)], "segment": "frequent",
                         "callout_id": "c0", "layout_id": "h0-b0-i0-r0", "position": 1, "propensity": 0.5,
                         "shown_at": pd.Timestamp(f"{DS} 10:00", tz="UTC")})


def no_clicks() -> pd.DataFrame:
    return pd.DataFrame({"impression_id": ["i0"], "clicked_at": [pd.Timestamp(f"{DS} 11:00", tz="UTC")]})


def test_bad_impressions_are_rejected_naming_each_problem(published, tmp_path):
    """Zero (i1), missing (i2) and above-one (i3) propensities and a duplicate impression id (i4, twice),
    landed through the ingest job: its impressions gate names each with its offending impression."""
    from echelon.expectations.gate import GateFailed
    from echelon.jobs.callouts import ingest

    bad = logged_impressions(6)
    bad["impression_id"] = ["i0", "i1", "i2", "i3", "i4", "i4"]
    bad["propensity"] = [0.5, 0.0, None, 1.5, 0.5, 0.5]
    with pytest.raises(GateFailed) as failure:
        ingest.run(DS, write(tmp_path / "bad", bad, no_clicks()))
    message = str(failure.value)
    assert "gate 'callouts_impressions' failed" in message and "raw/callouts/impressions" in message
    assert f"ds={DS}" in message
    out_of_range = offending(message, "expect_column_values_to_be_between", "propensity")
    assert [any(f"'{i}'" in line for line in out_of_range) for i in ("i1", "i3", "i0", "i2")] == [True, True, False, False]
    missing = offending(message, "expect_column_values_to_not_be_null", "propensity")
    assert len(missing) == 1 and "'i2'" in missing[0], missing
    duplicates = offending(message, "expect_column_values_to_be_unique", "impression_id")
    assert len(duplicates) == 2 and all("'i4'" in line for line in duplicates), duplicates


def test_bad_clicks_are_rejected_naming_each_problem(published):
    """A click for an impression nobody showed and one before its impression, through the clicks gate
    exactly as ingest wires it, against the impressions the DAG published for ds."""
    from echelon.expectations.gate import GateFailed
    from echelon.jobs.callouts import gates
    from echelon.catalog.callouts import CLICKS, IMPRESSIONS
    from echelon.catalog.callouts import WINDOW_DAYS

    shown = lake.read(IMPRESSIONS, DS).drop(columns="ds")
    late = shown[shown["shown_at"] >= pd.Timestamp(f"{DS} 01:00", tz="UTC")].iloc[0]
    bad = pd.DataFrame({"impression_id": ["nobody", late["impression_id"]],
                        "clicked_at": [pd.Timestamp(f"{DS} 12:00", tz="UTC"), late["shown_at"] - pd.Timedelta(minutes=30)]})
    bad["clicked_at"] = bad["clicked_at"].astype("datetime64[us, UTC]")
    with pytest.raises(GateFailed) as failure:
        lake.publish(bad, CLICKS, DS, gate=gates.gate("callouts_clicks", CLICKS, DS, gates.with_impressions(WINDOW_DAYS, DS)))
    message = str(failure.value)
    assert "raw/callouts/clicks" in message and f"ds={DS}" in message
    unknown = offending(message, "expect_column_values_to_be_in_set", "_impression_known")
    assert len(unknown) == 1 and "nobody" in unknown[0], unknown
    early = offending(message, "expect_column_values_to_be_in_set", "_click_after_impression")
    assert len(early) == 1 and late["impression_id"] in early[0], early


def test_serving_a_callout_that_no_longer_exists_is_rejected(published):
    from echelon.expectations.gate import GateFailed
    from echelon.catalog.callouts import CATALOG
    from echelon.jobs.callouts import serving as serve

    live = lake.read(CATALOG, DS)["callout_id"].iloc[0]
    table = pd.DataFrame({"segment": "frequent", "callout_id": [live, "retired9"], "layout_id": "h0-b0-i0-r0",
                          "probability": [0.5, 0.5]})
    with pytest.raises(GateFailed) as failure:
        serve.publish(table, DS)
    message = str(failure.value)
    assert "published/callouts/serving" in message and f"ds={DS}" in message
    rows = [line for line in message.splitlines() if "offending row" in line]
    assert "_callout_exists" in message and rows and all("retired9" in line for line in rows), message


def test_empty_day_of_logs_is_rejected(published, tmp_path):
    from echelon.jobs.callouts import ingest

    other_day = logged_impressions(4).assign(shown_at=pd.Timestamp("2026-11-19 10:00", tz="UTC"))
    with pytest.raises(ingest.IngestError, match=f"empty day of logs: no impressions shown on {DS}"):
        ingest.run(DS, write(tmp_path / "empty", other_day, no_clicks().iloc[:0]))
