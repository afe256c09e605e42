"""damage_batches end to end on the session's tiny damage world (`tiny` in models/damage/steps.py, built once per test
session and shared with the model and quarantine tests), and the batch-level bad inputs at the level of the
lake on the partition that run published.

Once for the module, in process: the training steps (`steps.train` on the tiny world's manifests, one
epoch: it logs, registers and marks @challenger; `steps.evaluate_and_promote` makes it @champion), then
the damage_batches DAG through `dag.test()` on the session's Spark: it gates the manifest, scores with Spark
over image paths, publishes damage_scores (gated), writes the sideline list and logs the batch to MLflow
with its contact sheet.

Then, on that published partition: another batch of the same day is published beside it, the scoring step
re-runs the DAG's batch (Spark again) and replaces its rows without duplicating them or touching the other
batch; a batch whose scores fail the damage_scores gate publishes nothing and loses nothing.

Cost (measured at load ~18 on the 2-core machine): setup ~165 s, of which dag.test ~115 s (the first
in-process task ~18 s of Airflow start-up; the Spark scoring ~60 s, two python workers each importing
torch and MLflow and loading the champion; the damage_scores gate ~25 s), the training steps ~40 s (first
MLflow run creates the store); the re-score ~23 s (Spark, warm, and its gate), the failed gate ~7 s. Image-level quarantine: tests/data/test_damage_quarantine.py."""
import json

import numpy as np
import pandas as pd
import pytest

from echelon import lake

pytestmark = pytest.mark.slow   # Spark + one Airflow run with its GX gates
DS = "2026-11-20"
BATCH = "tiny-1"


@pytest.fixture(scope="module")
def champion(tmp_path_factory, spark):
    """The tiny world, and a model trained, registered and promoted by the training steps."""
    import torch

    from echelon.models.damage import steps

    threads = torch.get_num_threads()
    world_dir, _ = steps.tiny(tmp_path_factory.getbasetemp() / "damage-tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHELON_TASK_RETRIES", "0")
        patch.setenv("ECHELON_DAMAGE_EPOCHS", "1")   # what training learns: tests/model/test_damage_model.py
        for name in ("train", "gallery", "valid"):
            patch.setenv(f"ECHELON_DAMAGE_{name.upper()}", str(world_dir / f"{name}.csv"))
        trained = steps.train(DS)
        assert trained["version"] == "1" and trained["operating"]["negatives"] > 0, trained
        promoted = steps.evaluate_and_promote(DS)
        assert promoted["evaluated"] and promoted["promoted"], promoted
        assert steps.champion_uri() == ("models:/damage_scorer/1", "1")
        yield world_dir, patch
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dag_run(champion, dag_for_test):
    world_dir, patch = champion
    dag = dag_for_test(patch, "damage_batches.py", "damage_batches")
    conf = {"batch_id": BATCH, "manifest": str(world_dir / "batch.csv"), "day": DS}
    run = dag.test(run_conf=conf, use_executor=False)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state
    return world_dir


def scores_frame(ids, score=0.1):
    n = len(ids)
    return pd.DataFrame({"image_id": ids, "item_id": ["P0000"] * n, "score_supervised": [0.2] * n,
                         "score_anomaly": [0.5] * n, "score": [score] * n, "decision": ["pass"] * n,
                         "damage_type": ["none"] * n, "gallery_refreshed": [False] * n})


def test_dag_test_scores_a_batch_publishes_it_and_logs_it(dag_run):
    import mlflow

    from echelon import tracking
    from echelon.models.damage import steps

    world_dir = dag_run
    frame = lake.read(steps.SCORES, DS).drop(columns="ds")   # the partition column, added by lake.read
    batch = pd.read_csv(world_dir / "batch.csv")
    assert list(frame.columns[:9]) == steps.CONTRACT == [
        "batch_id", "image_id", "item_id", "score_supervised", "score_anomaly", "score", "decision",
        "damage_type", "model_version"]
    assert len(frame) == len(batch) and frame["image_id"].is_unique and frame["batch_id"].eq(BATCH).all()
    assert set(frame["image_id"]) == set(batch["image_id"].astype(str))
    assert frame["model_version"].eq("damage_scorer/1").all()
    assert frame["score"].between(0, 1).all() and set(frame["decision"]) <= {"pass", "sideline"}
    assert lake.read_manifest(steps.SCORES, DS)["rows"] == len(batch)
    report = steps.report_dir(BATCH)
    assert (report / "top_scored.png").exists() and (report / "sideline.csv").exists()
    outcome = json.loads((report / "outcome.json").read_text())
    assert outcome["scored"] == len(batch) and outcome["quarantined"] == 0
    assert outcome["sidelined"] == int((frame["decision"] == "sideline").sum())

    tracking.configure()
    runs = mlflow.search_runs(experiment_names=["echelon-damage"], filter_string=f"tags.ds = '{DS}'")
    by_name = runs.set_index("tags.mlflow.runName")
    assert {"train", "evaluate-and-promote", f"batch-{BATCH}"} <= set(by_name.index), runs
    logged = by_name.loc[f"batch-{BATCH}"]
    assert logged["metrics.images"] == len(batch) and logged["params.model_version"] == "damage_scorer/1"
    assert "metrics.score_auroc" in by_name.columns   # the training step's evaluation


def test_rescoring_a_batch_replaces_its_rows_and_keeps_the_other_batches(dag_run):
    """The DAG's batch re-scored (the scoring step, Spark again) after another batch landed the same day."""
    from echelon.models.damage import steps

    world_dir = dag_run
    first = lake.read(steps.SCORES, DS).drop(columns="ds")
    first = first[first["batch_id"] == BATCH].reset_index(drop=True)
    steps.publish_batch(scores_frame(["other-a", "other-b"]), {"ds": DS, "batch_id": "B2"}, "damage_scorer/1")
    before = lake.read_manifest(steps.SCORES, DS)
    outcome = steps.score(steps.batch_info(DS, BATCH, str(world_dir / "batch.csv")))
    assert outcome["scored"] == len(first) and outcome["partition_rows"] == len(first) + 2
    table = lake.read(steps.SCORES, DS).drop(columns="ds")
    assert not table.duplicated(["batch_id", "image_id"]).any()
    assert sorted(table.loc[table["batch_id"] == "B2", "image_id"]) == ["other-a", "other-b"]
    again = table[table["batch_id"] == BATCH].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, first, check_exact=False, atol=1e-9)
    assert lake.read_manifest(steps.SCORES, DS)["checksum"] == before["checksum"]


def test_a_failed_gate_publishes_nothing_and_loses_nothing(dag_run):
    from echelon.expectations.gate import GateFailed
    from echelon.models.damage import steps

    before = lake.read_manifest(steps.SCORES, DS)
    with pytest.raises(GateFailed, match=rf"damage_scores.*ds={DS}"):
        steps.publish_batch(scores_frame(["x"], score=np.nan), {"ds": DS, "batch_id": "B3"}, "damage_scorer/1")
    assert lake.read_manifest(steps.SCORES, DS) == before
    assert "B3" not in set(lake.read(steps.SCORES, DS)["batch_id"])
