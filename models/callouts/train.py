"""Nightly fit, off-policy evaluation, promotion and serving of the callout policy.

The matured feedback of ds (features/callouts/feedback) is split in time: impressions that matured in the
last ECHELON_CALLOUTS_EVAL_DAYS (7) days are the evaluation window, the earlier ones the training window. Every candidate
method is fit on the training window only and evaluated off-policy on the evaluation window (DM, IPW,
SNIPW, DR with bootstrap intervals), so its estimate is out of sample. The best by DR becomes
@challenger of the registered model `callouts_policy` (a pyfunc holding the method and its serving
table); it becomes @champion only when a paired bootstrap of DR(challenger) - DR(champion's method), on
the same evaluation logs, has its lower 95% bound above zero. Serving refits the champion's *method* on
all matured feedback every night: a bandit that stopped learning between promotions would stop exploring.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from echelon import lake, settings, tracking
from echelon.catalog.callouts import CATALOG, FEEDBACK
from echelon.models.callouts import ope
from echelon.models.callouts.plots import ope_plot, posterior_plot
from echelon.models.callouts.policy import METHODS, serving_table
from echelon.settings import get_settings

log = logging.getLogger(__name__)
MODEL_NAME = "callouts_policy"
CONTEXT, ACTION = ["segment"], ["callout_id", "layout_id"]
DEFAULT_METHOD = "meta_ts"


report_dir = functools.partial(settings.report_dir, "callouts")


def candidates() -> list[str]:
    return get_settings().callouts.candidates(",".join(METHODS))


def load_logs(ds: str) -> pd.DataFrame:
    logs = lake.read(FEEDBACK, ds).drop(columns="ds")
    logs["matured_on"] = pd.to_datetime(logs["matured_on"]).dt.date
    return logs.assign(reward=logs["click"])


def catalog_history(ds: str, days: int = 60) -> pd.DataFrame:
    """Attributes of every callout catalogued in the last `days` (retired ones too, for evaluation)."""
    day = dt.date.fromisoformat(ds)
    frames = [lake.read(CATALOG, d.isoformat()) for d in (day - dt.timedelta(days=k) for k in range(days))
              if lake.exists(CATALOG, d.isoformat())]
    return pd.concat(frames).sort_values("ds").drop_duplicates("callout_id", keep="last").drop(columns="ds")


def segments(ds: str, logs: pd.DataFrame) -> list[str]:
    """Segments to serve: those in the matured logs and in today's impressions (a young system has only
    the latter)."""
    from echelon.catalog.callouts import IMPRESSIONS

    today = lake.read(IMPRESSIONS, ds, columns=["segment"])["segment"] if lake.exists(IMPRESSIONS, ds) else []
    return sorted(set(logs["segment"]) | set(today))


def eval_days() -> int:
    """Days of matured feedback held out for off-policy evaluation (ECHELON_CALLOUTS_EVAL_DAYS)."""
    return get_settings().callouts.eval_days


def split(logs: pd.DataFrame, ds: str, eval_days: int | None = None):
    eval_days = globals()["eval_days"]() if eval_days is None else eval_days
    cut = dt.date.fromisoformat(ds) - dt.timedelta(days=eval_days)
    return logs[logs["matured_on"] <= cut], logs[logs["matured_on"] > cut]


def eval_policy(method: str, train_logs, eval_logs, catalogue, seed: int) -> pd.DataFrame:
    """The method fit on the training window, over the callouts and layouts live in the evaluation window."""
    live = catalogue[catalogue["callout_id"].isin(eval_logs["callout_id"].unique())]
    table, _ = serving_table(method, train_logs, live, sorted(eval_logs["segment"].unique()), seed,
                             layout_ids=sorted(eval_logs["layout_id"].unique()))
    return table


class CalloutPolicy(mlflow.pyfunc.PythonModel):
    """The registered policy: its method and the serving table it produced when registered.
    predict(frame with `segment`) -> the serving rows of those segments."""

    def load_context(self, context) -> None:
        self.table = pd.read_parquet(context.artifacts["serving"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.table[self.table["segment"].isin(pd.DataFrame(model_input)["segment"])].reset_index(drop=True)


def train(ds: str, seed: int | None = None, truth: tuple | None = None) -> dict:
    """Fit every candidate on the training window, evaluate off-policy, register the best as @challenger.

    truth: (true rates of the serving day, segment weights) when the logs come from the synthetic world
    (the steps module passes jobs/callouts/world.true_rates): each candidate's true click rate and regret."""
    from echelon.models.callouts.policy import best_rate, expected_rate

    ds = lake.parse_ds(ds)
    seed = get_settings().seed if seed is None else seed
    logs, catalogue = load_logs(ds), catalog_history(ds)
    catalog_today = lake.read(CATALOG, ds).drop(columns="ds")
    served_segments = segments(ds, logs)
    train_logs, eval_logs = split(logs, ds)
    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    rows, tables = [], {}
    with tracking.run("callouts", ds, "train", stage="train"):
        mlflow.log_params({"candidates": ",".join(candidates()), "eval_days": eval_days(), "seed": seed,
                           "train_impressions": len(train_logs), "eval_impressions": len(eval_logs),
                           "callouts": len(catalog_today)})
        for method in candidates():
            if len(train_logs) and len(eval_logs):
                tables[method] = eval_policy(method, train_logs, eval_logs, catalogue, seed)
                tables[method].to_parquet(folder / f"eval_policy_{method}.parquet", index=False)
                est = ope.estimate(eval_logs, tables[method], CONTEXT, ACTION, seed=seed).assign(policy=method)
                rows.append(est)
                mlflow.log_metrics({f"{method}_{r.estimator}": r.value for r in est.itertuples()})
            # tonight's table of the method on all data: posterior plots, and its true value in simulation
            full, post = serving_table(method, logs, catalog_today, served_segments, seed)
            if "alpha" in post.columns:
                mlflow.log_artifact(str(posterior_plot(post, folder / f"posterior_{method}.png",
                                                       f"{method}: posterior click rate per callout, ds={ds}")), "plots")
                # every callout's posterior, not only the plotted ones
                post.to_csv(folder / f"posterior_{method}.csv", index=False)
                mlflow.log_artifact(str(folder / f"posterior_{method}.csv"), "posteriors")
            if truth is not None:
                value = expected_rate(full, *truth)
                mlflow.log_metrics({f"{method}_true_click_rate": value,
                                    f"{method}_true_regret_per_1k": 1000 * (best_rate(*truth) - value)})
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["policy", "estimator", "value"])
        table.to_csv(folder / "ope.csv", index=False)
        mlflow.log_artifact(str(folder / "ope.csv"), "ope")
        if rows:   # also as an MLflow table (viewable and comparable across runs in the UI)
            mlflow.log_table(table, artifact_file="ope/ope_table.json")
        if rows:
            mlflow.log_artifact(str(ope_plot(table, folder / "ope.png", f"off-policy estimates, ds={ds}")), "plots")
            dr = table[table["estimator"] == "dr"].set_index("policy")["value"]
            best = str(dr.idxmax())
        else:
            log.info("not enough matured history for off-policy evaluation on %s: challenger = %s", ds, DEFAULT_METHOD)
            best = DEFAULT_METHOD if DEFAULT_METHOD in candidates() else candidates()[0]
        serving, _ = serving_table(best, logs, catalog_today, served_segments, seed)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "serving.parquet"
            serving.to_parquet(path, index=False)
            info = mlflow.pyfunc.log_model(name="policy", python_model=CalloutPolicy(), artifacts={"serving": str(path)},
                                           registered_model_name=MODEL_NAME)
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in {"method": best, "ds": ds}.items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
        tracking.set_alias(MODEL_NAME, tracking.CHALLENGER, version)
    return {"ds": ds, "challenger": {"method": best, "version": version},
            "train_impressions": len(train_logs), "eval_impressions": len(eval_logs),
            "ope": ope.records(table)}


def evaluate_and_promote(ds: str, seed: int | None = None) -> dict:
    """Move @champion to the challenger when its DR estimate beats the champion method's with confidence."""
    ds = lake.parse_ds(ds)
    seed = get_settings().seed if seed is None else seed
    tracking.configure()
    challenger = tracking.alias_version(MODEL_NAME, tracking.CHALLENGER)
    champion = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if challenger is None:
        raise lake.LakeError(f"no @challenger of {MODEL_NAME}: run `echelon callouts train --ds {ds}` first")
    ch_method = challenger.tags.get("method")
    outcome = {"ds": ds, "challenger": {"version": challenger.version, "method": ch_method},
               "champion_before": None if champion is None else {"version": champion.version,
                                                                 "method": champion.tags.get("method")}}
    folder = report_dir(ds)
    champion_of = None if champion is None else champion.tags.get("method", "untagged")
    paths = {m: folder / f"eval_policy_{m}.parquet" for m in (ch_method, champion_of) if m}
    needs_logs = champion is not None and champion_of != ch_method and all(p.exists() for p in paths.values())
    promoted, reason, evidence = decide(
        ch_method, champion_of, split(load_logs(ds), ds)[1] if needs_logs else None,
        {m: pd.read_parquet(p) for m, p in paths.items() if p.exists()}, seed)
    if evidence is not None:
        outcome["evidence"] = evidence
    if promoted:
        tracking.set_alias(MODEL_NAME, tracking.CHAMPION, challenger.version)
    mlflow.MlflowClient().set_model_version_tag(MODEL_NAME, challenger.version, "promotion",
                                                ("promoted: " if promoted else "kept champion: ") + reason)
    outcome.update(promoted=promoted, reason=reason)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "promotion.json").write_text(json.dumps(outcome, indent=2, default=str))
    with tracking.run("callouts", ds, "evaluate-and-promote", stage="evaluate"):
        mlflow.log_params({"challenger_method": ch_method, "promoted": promoted, "reason": reason[:250]})
    log.info("callouts promotion %s: %s", ds, outcome)
    return outcome


def decide(challenger: str, champion: str | None, eval_logs: pd.DataFrame | None, policies: dict, seed: int = 0):
    """(promoted, reason, evidence): the challenger's method replaces the champion's only when the paired
    bootstrap of DR(challenger) - DR(champion) on the same evaluation logs has its lower 95% bound above 0.
    policies: method -> its evaluation-window policy table (absent when it was not evaluated)."""
    if champion is None:
        return True, "no champion yet", None
    if champion == challenger:
        return True, "same method as the champion: refreshed", None
    if eval_logs is None or challenger not in policies or champion not in policies:
        return False, "no off-policy evaluation of both methods on this window: champion kept", None
    evidence = ope.compare(eval_logs, policies[challenger], policies[champion], CONTEXT, ACTION, seed=seed)
    reason = (f"DR difference {evidence['difference']:+.5f} "
              f"(95% CI {evidence['ci_low']:+.5f} .. {evidence['ci_high']:+.5f})")
    return bool(evidence["confident_win"]), reason, evidence


def champion_method() -> str:
    champion = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if champion is None:
        raise lake.LakeError(f"no @champion of {MODEL_NAME}: run train and evaluate_and_promote first")
    return champion.tags["method"], champion.version
