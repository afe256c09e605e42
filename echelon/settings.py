"""One place for configuration: environment variables with embedded defaults.

Every variable the code reads is read here (a test fails on an os.environ read anywhere else, bar
echelon/stack.py and echelon/airflow_env.py, which build child processes' environments). The core
fields are parsed when `get_settings()` is called; each domain's section (`settings.damage.target_fpr`)
parses its variables when a field is read, so a bad value fails the step that uses it, not every caller.

Defaults keep everything inside the project folder (local Spark, SQLite for Airflow and MLflow, a lake
folder under var/) so a newcomer needs nothing running. Production points the same variables at a Spark
cluster, Postgres and object storage. Secrets come only from the environment (see .env.example).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path               # ECHELON_HOME: the project folder
    var: Path                # ECHELON_VAR: runtime state (lake, reports, airflow, mlflow)
    lake: Path               # ECHELON_LAKE: root of the parquet lake
    reports: Path            # ECHELON_REPORTS: run reports and GX Data Docs
    mlflow_uri: str          # MLFLOW_TRACKING_URI
    mlflow_artifacts: str    # ECHELON_MLFLOW_ARTIFACTS: artifact root for new experiments
    spark_master: str        # SPARK_MASTER: local[*], spark://host:7077, yarn, k8s://...
    spark_shuffle_partitions: int
    seed: int                # ECHELON_SEED: default seed for generators and models
    demand_train_parallel: int  # ECHELON_DEMAND_TRAIN_PARALLEL: candidate training tasks at once
    threads: int             # ECHELON_THREADS: cores a model may use (LightGBM); default all of them
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)  # what the sections read

    @property
    def gx_root(self) -> Path:
        return self.reports / "gx"

    # ---- plumbing read where it is used (kept lazy: most callers never need them)
    @property
    def traceback(self) -> bool:            # ECHELON_TRACEBACK: the CLI raises instead of printing one line
        return bool(self.env.get("ECHELON_TRACEBACK"))

    @property
    def task_retries(self) -> int:          # ECHELON_TASK_RETRIES: every DAG task's retries (tests set 0)
        return int(self.env.get("ECHELON_TASK_RETRIES", "2"))

    @property
    def code_version(self) -> str | None:   # ECHELON_CODE_VERSION: set in images built without .git
        return self.env.get("ECHELON_CODE_VERSION") or None

    def spark_java_options(self, default: str) -> str:   # ECHELON_SPARK_JAVA_OPTIONS
        return self.env.get("ECHELON_SPARK_JAVA_OPTIONS", default)

    @property
    def spark_driver_memory(self) -> str:   # ECHELON_SPARK_DRIVER_MEMORY
        return self.env.get("ECHELON_SPARK_DRIVER_MEMORY", "4g")

    @property
    def airflow_context(self) -> dict[str, str]:
        """The Airflow run this process serves (set by Airflow in task processes; 'manual' outside one)."""
        return {"airflow_run_id": self.env.get("AIRFLOW_CTX_DAG_RUN_ID", "manual"),
                "airflow_task_id": self.env.get("AIRFLOW_CTX_TASK_ID", "manual"),
                "airflow_try_number": self.env.get("AIRFLOW_CTX_TRY_NUMBER", "0")}

    @property
    def demand(self) -> DemandSettings:
        return DemandSettings(self)

    @property
    def placement(self) -> PlacementSettings:
        return PlacementSettings(self)

    @property
    def capacity(self) -> CapacitySettings:
        return CapacitySettings(self)

    @property
    def damage(self) -> DamageSettings:
        return DamageSettings(self)

    @property
    def callouts(self) -> CalloutsSettings:
        return CalloutsSettings(self)

    @property
    def membership(self) -> MembershipSettings:
        return MembershipSettings(self)


@dataclass(frozen=True)
class _Section:
    settings: Settings

    def _get(self, name: str, default=None):
        return self.settings.env.get(name, default)


class DemandSettings(_Section):
    @property
    def candidates(self) -> list[str]:       # ECHELON_DEMAND_CANDIDATES: models trained at each retrain
        names = self._get("ECHELON_DEMAND_CANDIDATES", "seasonal_naive,lightgbm,feedforward")
        return [n.strip() for n in names.split(",") if n.strip()]

    @property
    def model_params(self) -> dict:          # ECHELON_DEMAND_MODEL_PARAMS: JSON {model: {param: value}}
        return json.loads(self._get("ECHELON_DEMAND_MODEL_PARAMS", "{}"))

    @property
    def train_series(self) -> int | None:    # ECHELON_DEMAND_TRAIN_SERIES: series a training night reads at most
        value = self._get("ECHELON_DEMAND_TRAIN_SERIES")
        return int(value) if value else None

    @property
    def retrain(self) -> str:                # ECHELON_DEMAND_RETRAIN: 'daily' or a weekday name
        return self._get("ECHELON_DEMAND_RETRAIN", "sunday")


class PlacementSettings(_Section):
    @property
    def method(self) -> str:                 # ECHELON_PLACEMENT_METHOD: lagrangian | monolithic
        return self._get("ECHELON_PLACEMENT_METHOD", "lagrangian")

    @property
    def engine(self) -> str:                 # ECHELON_PLACEMENT_ENGINE: spark | local
        return self._get("ECHELON_PLACEMENT_ENGINE", "spark")

    @property
    def max_iter(self) -> int:               # ECHELON_PLACEMENT_MAX_ITER: Lagrangian iterations
        return int(self._get("ECHELON_PLACEMENT_MAX_ITER", 60))


class CapacitySettings(_Section):
    """Mechanism parameters; None where unset (the mechanism's own default applies)."""
    @property
    def credit_share(self) -> float | None:      # ECHELON_CAPACITY_CREDIT_SHARE
        value = self._get("ECHELON_CAPACITY_CREDIT_SHARE")
        return None if value is None else float(value)

    @property
    def safety_buffer(self) -> float | None:     # ECHELON_CAPACITY_SAFETY_BUFFER
        value = self._get("ECHELON_CAPACITY_SAFETY_BUFFER")
        return None if value is None else float(value)

    @property
    def cover_days(self) -> float:               # ECHELON_CAPACITY_COVER_DAYS
        return float(self._get("ECHELON_CAPACITY_COVER_DAYS", "42"))


class DamageSettings(_Section):
    @property
    def target_fpr(self) -> float:               # ECHELON_DAMAGE_TARGET_FPR
        return float(self._get("ECHELON_DAMAGE_TARGET_FPR", "0.001"))

    @property
    def world(self) -> Path:                     # ECHELON_DAMAGE_WORLD: the generated image world's folder
        return Path(self._get("ECHELON_DAMAGE_WORLD", self.settings.var / "damage" / "world"))

    @property
    def world_sizes(self) -> dict:               # ECHELON_DAMAGE_WORLD_SIZES: JSON of generate()'s sizes
        return json.loads(self._get("ECHELON_DAMAGE_WORLD_SIZES", "{}"))

    def manifest(self, name: str, default: Path) -> Path:   # ECHELON_DAMAGE_TRAIN | _GALLERY | _VALID
        return Path(self._get(f"ECHELON_DAMAGE_{name.upper()}", default))

    @property
    def epochs(self) -> int:                     # ECHELON_DAMAGE_EPOCHS
        return int(self._get("ECHELON_DAMAGE_EPOCHS", "12"))

    @property
    def threshold_rule(self) -> str:             # ECHELON_DAMAGE_THRESHOLD_RULE: bounded | ...
        return self._get("ECHELON_DAMAGE_THRESHOLD_RULE", "bounded")

    def torch_threads(self, variable: str = "ECHELON_TORCH_THREADS") -> int:  # or ECHELON_DAMAGE_SCORE_THREADS
        return int(self._get(variable, "1"))


class CalloutsSettings(_Section):
    def candidates(self, default: str) -> list[str]:   # ECHELON_CALLOUTS_CANDIDATES (comma separated)
        names = self._get("ECHELON_CALLOUTS_CANDIDATES", default)
        return [n.strip() for n in names.split(",") if n.strip()]

    @property
    def eval_days(self) -> int:                  # ECHELON_CALLOUTS_EVAL_DAYS
        return int(self._get("ECHELON_CALLOUTS_EVAL_DAYS", "7"))

    @property
    def logs(self) -> str | None:                # ECHELON_CALLOUTS_LOGS: real logs (Open Bandit CSVs) to ingest
        return self._get("ECHELON_CALLOUTS_LOGS") or None

    @property
    def history_days(self) -> int:               # ECHELON_CALLOUTS_HISTORY_DAYS
        return int(self._get("ECHELON_CALLOUTS_HISTORY_DAYS", "28"))

    @property
    def world(self) -> dict:                     # ECHELON_CALLOUTS_SEED, _WORLD_START, _TRAFFIC
        return {"seed": int(self._get("ECHELON_CALLOUTS_SEED", self.settings.seed)),
                "start": self._get("ECHELON_CALLOUTS_WORLD_START", "2026-10-01"),
                "traffic": int(self._get("ECHELON_CALLOUTS_TRAFFIC", "5000"))}


# Ids that users and DAG params hand in (a damage batch_id, a report key) become folder names: letters,
# digits, '.', '_', '-' and '=' only, starting with a letter or digit, at most 128 characters, no '..'.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}")


def safe_id(value, what: str = "id") -> str:
    """`value` as a string when it is a strict id (SAFE_ID, no '..'); ValueError naming `what` otherwise, so
    an id such as '../..' can never resolve outside the folder it names a child of."""
    text = str(value)
    if not SAFE_ID.fullmatch(text) or ".." in text:
        raise ValueError(f"{what} {text!r} is not a valid id: use letters, digits, '.', '_', '-' or '=' "
                         f"(at most 128, starting with a letter or digit, no '..')")
    return text


class MembershipSettings(_Section):
    @property
    def fit_scale(self) -> float:                # ECHELON_MEMBERSHIP_FIT_SCALE: times every PQR stage's steps
        return float(self._get("ECHELON_MEMBERSHIP_FIT_SCALE", "1.0"))

    @property
    def scenarios(self) -> Path | None:          # ECHELON_MEMBERSHIP_SCENARIOS: the scenario folder
        value = self._get("ECHELON_MEMBERSHIP_SCENARIOS")
        return Path(value) if value else None

    @property
    def accelerator(self) -> str:                # ECHELON_MEMBERSHIP_ACCELERATOR: cpu (default) | gpu | auto
        return self._get("ECHELON_MEMBERSHIP_ACCELERATOR", "cpu")


def report_dir(domain: str, key: str, by: str = "ds") -> Path:
    """The folder of one run's reports: <reports>/<domain>/<by>=<key> (by: ds, or batch for damage)."""
    return get_settings().reports / domain / f"{by}={safe_id(key, by)}"


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (or `env`) now, not at import, so tests and tasks can point it elsewhere."""
    env = os.environ if env is None else env
    home = Path(env.get("ECHELON_HOME", PROJECT_ROOT)).resolve()
    var = Path(env.get("ECHELON_VAR", home / "var")).resolve()
    mlflow_uri = env.get("MLFLOW_TRACKING_URI", f"sqlite:///{var / 'mlflow' / 'mlflow.db'}")
    # Several processes writing the embedded SQLite MLflow store at once can fail with "database is
    # locked": one candidate at a time there; two (one per core) against an MLflow server.
    train_parallel = 1 if mlflow_uri.startswith("sqlite") else 2
    return Settings(
        home=home,
        var=var,
        lake=Path(env.get("ECHELON_LAKE", var / "lake")).resolve(),
        reports=Path(env.get("ECHELON_REPORTS", var / "reports")).resolve(),
        mlflow_uri=mlflow_uri,
        mlflow_artifacts=env.get("ECHELON_MLFLOW_ARTIFACTS", str(var / "mlflow" / "artifacts")),
        spark_master=env.get("SPARK_MASTER", "local[*]"),
        spark_shuffle_partitions=int(env.get("ECHELON_SPARK_SHUFFLE_PARTITIONS", "8")),
        seed=int(env.get("ECHELON_SEED", "42")),
        demand_train_parallel=int(env.get("ECHELON_DEMAND_TRAIN_PARALLEL", train_parallel)),
        threads=int(env.get("ECHELON_THREADS", os.cpu_count() or 1)),
        env=env,
    )
