"""`echelon callouts simulate` on a tiny world: its files, and the MLflow run it logs (parameters, final
metrics per policy, the regret curve as a metric history, the regret plot as an artifact).

Cost: 4 days of 100 shoppers for two policies (seconds) and one MLflow run; importing MLflow and
matplotlib and creating the session's SQLite store (shared with every other test that logs) dominate on a
loaded machine."""

import json

import pytest


def test_simulate_writes_its_tables_and_logs_the_run_to_mlflow(tmp_path):
    import mlflow

    from echelon import tracking
    from echelon.models.callouts import steps

    argv = ["simulate", "--impressions", "400", "--days", "4", "--policies", "flat_ts,meta_ts",
            "--launch-every", "2", "--seed", "3", "--output", str(tmp_path)]
    assert steps.main(argv) == 0
    summary = {row["policy"]: row for row in json.loads((tmp_path / "summary.json").read_text())}
    assert set(summary) == {"flat_ts", "meta_ts"} and (tmp_path / "regret.png").exists()

    tracking.configure()
    runs = mlflow.search_runs(experiment_names=["echelon-callouts"], filter_string="tags.stage = 'simulate'")
    run = runs[runs["params.seed"] == "3"].iloc[0]
    assert run["params.policies"] == "flat_ts,meta_ts" and run["params.days"] == "4"
    for policy in ("flat_ts", "meta_ts"):
        assert run[f"metrics.{policy}_cumulative_regret"] == pytest.approx(summary[policy]["cumulative_regret"])
        assert run[f"metrics.{policy}_click_rate"] == pytest.approx(summary[policy]["click_rate"])
    client = mlflow.MlflowClient()
    curve = client.get_metric_history(run.run_id, "meta_ts_cumulative_regret_curve")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [100, 200, 300, 400]
    assert max(m.value for m in curve) == pytest.approx(summary["meta_ts"]["cumulative_regret"])
    assert {a.path for a in client.list_artifacts(run.run_id, "simulation")} == {
        "simulation/regret.png", "simulation/regret.csv", "simulation/summary.json"}
