"""MLflow pyfunc wrapper for any demand Forecaster (GluonTS, LightGBM, seasonal naive ...).

The forecaster's own `save()` folder travels as an MLflow artifact; loading imports the forecaster class
recorded at logging time and calls its `load()`. GluonTS predictors thus go through
`serialize`/`deserialize(device="cpu")` untouched.

Input to `predict`: one canonical long frame (see base.py), or rows of the published feature table
(recognised by its `is_future` column; used by nightly scoring, see `predict_from_features`). Rows with a target are history; rows
without one (null target) are the known future covariates for the horizon (price, promo), when the
caller has them. Output: the canonical forecasts frame (item_id, location_id, timestamp, horizon,
q_...). One history maps to `horizon` rows per series, so at scale run it per group of series (e.g.
Spark `groupBy(...).applyInPandas`) rather than as a row-wise UDF.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

import mlflow

from echelon.models.demand.base import QUANTILES

ARTIFACT = "forecaster"


def class_path(obj: Any) -> str:
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def import_class(path: str) -> type:
    module, qualname = path.split(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def split_history_future(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Rows with a target are history; rows without one carry future covariates."""
    if "target" not in frame.columns:
        raise ValueError(f"forecaster input needs a 'target' column; got {list(frame.columns)}")
    known = frame["target"].notna()
    history = frame[known].reset_index(drop=True)
    future = frame[~known].drop(columns=["target"]).reset_index(drop=True)
    return history, (future if len(future) else None)


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """pyfunc face of a saved Forecaster folder."""

    def load_context(self, context) -> None:
        klass = import_class(context.model_config["forecaster_class"])
        self.forecaster = klass.load(Path(context.artifacts[ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        if "is_future" in frame.columns:  # rows of the published feature table (nightly scoring)
            return predict_from_features(self.forecaster, frame)
        if "timestamp" in frame.columns:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        history, future = split_history_future(frame)
        return self.forecaster.predict(history, future)


def predict_from_features(forecaster, features: pd.DataFrame) -> pd.DataFrame:
    """Forecast from feature-table rows (history rows with is_future = 0, planned rows after them).

    Models that read the Spark features use them as they are (no Spark session is needed, which matters
    inside a Spark executor); the others get the canonical history and future covariates they hold."""
    features = features.copy()
    features["date"] = pd.to_datetime(features["date"])
    if hasattr(forecaster, "predict_features"):
        return forecaster.predict_features(features)
    columns = ["item_id", "location_id", "date", "target"] + [c for c in ("price", "promo", "category")
                                                               if c in features.columns]
    canonical = features[columns].rename(columns={"date": "timestamp"})
    future_rows = features["is_future"].astype(int) == 1
    history = canonical[~future_rows].reset_index(drop=True)
    future = canonical[future_rows].drop(columns="target").reset_index(drop=True)
    return forecaster.predict(history, future if len(future) else None)


_BACKENDS = {  # the packages a forecaster's module needs at load time, besides mlflow and pandas
    "gluon": ["gluonts", "torch", "lightning"],
    "lgbm": ["lightgbm", "pyspark"],        # its features are built with Spark
    "mq": ["torch", "lightning"],
    "stats": ["statsforecast"],
    "naive": ["statsforecast"],             # the seasonal naive is statsforecast's
}


def default_requirements(forecaster: Any) -> list[str]:
    """Pinned to what is installed here: explicit requirements also skip MLflow's slow inference."""
    packages = ["mlflow", "pandas", "numpy", "pyarrow"]
    # the module's own name (gluon, lgbm) or its package's (mq)
    parts = type(forecaster).__module__.split(".")
    packages += next((_BACKENDS[p] for p in reversed(parts) if p in _BACKENDS), [])
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def log_forecaster(forecaster: Any, name: str = "model", registered_model_name: str | None = None,
                   *, pip_requirements: Sequence[str] | None = None,
                   metadata: dict[str, Any] | None = None, **log_model_kwargs: Any):
    """Log a fitted Forecaster as an MLflow pyfunc model (in the active run, if any).

    Returns MLflow's ModelInfo; with `registered_model_name`, `model_info.registered_model_version`
    is the new version (aliases such as @challenger are the caller's decision).
    """
    # A pip dry-run at log time needs the network; the requirements are pinned from this env anyway.
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    quantiles = getattr(forecaster, "quantiles", QUANTILES)
    with tempfile.TemporaryDirectory(prefix="forecaster-") as tmp:
        folder = Path(tmp) / ARTIFACT
        folder.mkdir()
        forecaster.save(folder)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ForecasterModel(),
            artifacts={ARTIFACT: str(folder)},
            model_config={"forecaster_class": class_path(forecaster),
                          "forecaster_name": getattr(forecaster, "name", type(forecaster).__name__)},
            # No signature: the model takes either a canonical frame or feature-table rows (see predict),
            # and MLflow's schema enforcement would refuse or strip the feature columns.
            signature=None,
            pip_requirements=list(pip_requirements or default_requirements(forecaster)),
            registered_model_name=registered_model_name,
            metadata={"forecaster": getattr(forecaster, "name", None),
                      "horizon": getattr(forecaster, "horizon", None),
                      "freq": getattr(forecaster, "freq", None), "quantiles": list(quantiles),
                      **(metadata or {})},
            **log_model_kwargs,
        )


def load_forecaster(model_uri: str):
    """The pyfunc model at `model_uri` (e.g. models:/demand@champion)."""
    return mlflow.pyfunc.load_model(model_uri)
