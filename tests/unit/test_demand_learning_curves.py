"""A forecaster's learning curves land in its MLflow run as metric histories (one point per step)."""
from types import SimpleNamespace

from echelon import tracking
from echelon.models.demand.train import log_learning_curves


def test_learning_curves_become_metric_histories():
    import mlflow

    tracking.configure()
    fitted = SimpleNamespace(learning_curves={"valid_pinball": [0.5, 0.4, 0.35],
                                              "train_loss": [1.0, float("nan"), 0.8]})
    with mlflow.start_run() as run:
        assert log_learning_curves(fitted) == 5          # the NaN is left out
        assert log_learning_curves(SimpleNamespace()) == 0   # a model without curves logs nothing
    client = mlflow.MlflowClient()
    valid = sorted(client.get_metric_history(run.info.run_id, "valid_pinball"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in valid] == [(0, 0.5), (1, 0.4), (2, 0.35)]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [0, 2]
