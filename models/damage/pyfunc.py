"""MLflow pyfunc wrapper for a damage model folder (see model.py), same pattern as demand's.

Input to `predict`: validated manifest rows with `image_id`, `item_id` and `file` (an absolute image path).
Output: `image_id, score_supervised, score_anomaly, score, decision, damage_type` per row, without the
batch-level gallery refresh (that needs the whole batch: see model.score_rows). Batch scoring unwraps
the python model to reach the DamageModel itself (`load_damage_model`)."""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

ARTIFACT = "damage_model"


class DamagePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from echelon.models.damage.model import DamageModel

        self.model = DamageModel.load(Path(context.artifacts[ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = pd.DataFrame(model_input).reset_index(drop=True)
        scored = self.model.score_files(rows)
        return pd.concat([rows[["image_id"]], scored], axis=1)


def requirements() -> list[str]:
    pins = []
    for package in ("mlflow", "pandas", "numpy", "torch", "lightning", "scikit-learn", "scipy", "pillow"):
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def log_damage_model(model, registered_model_name: str | None = None, metadata: dict | None = None):
    """Log a DamageModel (in the active run) as a pyfunc model; returns MLflow's ModelInfo."""
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    with tempfile.TemporaryDirectory(prefix="damage-") as tmp:
        folder = model.save(Path(tmp) / ARTIFACT)
        return mlflow.pyfunc.log_model(name="model", python_model=DamagePyfunc(), artifacts={ARTIFACT: str(folder)},
                                       signature=None, pip_requirements=requirements(),
                                       registered_model_name=registered_model_name,
                                       metadata={"threshold": model.operating.threshold,
                                                 "target_fpr": model.operating.target_fpr, **(metadata or {})})


def load_damage_model(model_uri: str):
    """The DamageModel behind a registered pyfunc (e.g. models:/damage_scorer/3)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model
