"""The weekly membership pipeline, one function per DAG task; every gate and MLflow call is wired here.

    ingest -> features -> fit -> counterfactual

`echelon membership <step> --ds YYYY-MM-DD` runs any step by hand exactly as the DAG does;
`echelon membership simulate --ds D [--seed S --customers N --months M]` writes the synthetic world's panel
(the source table ingest reads), `echelon membership counterfactual --ds D --scenario FILE` runs one
scenario file (instead of the folder) against the @champion model.

Fit: Deep PQR on the transitions of 80% of the customers (by a hash of their id), the other 20% held out.
The three estimators share one policy network (the P stage): behaviour cloning is that network, the static
logit its log-odds (beta = 0); so their held-out log-likelihood is the P stage's, and the model's own is the
log-likelihood of the policy re-solved under its estimated reward (what its counterfactuals use). That is
the number @challenger must beat @champion on, both evaluated on this run's held-out customers.

Size: the four pipeline steps with their MLflow logging and plots, plus the world tool and the CLI.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon import lake, settings
from echelon.catalog.membership import BENEFIT_VALUES, PANEL, SHARES, TRANSITIONS
from echelon.membership_mdp import (ACTIONS, MembershipError, Space, estimate_dynamics, features, soft_bellman,
                                    transitions)
from echelon.settings import get_settings

log = logging.getLogger(__name__)
MODEL_NAME = "membership_pqr"
HOLDOUT_SHARE = 0.2
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
report_dir = functools.partial(settings.report_dir, "membership")


def held_out(customers: pd.Series) -> np.ndarray:
    """Whether each customer is held out: a stable hash of the id, so reruns and other runs agree."""
    digest = customers.map(lambda c: int(hashlib.sha1(str(c).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF)
    return (digest < HOLDOUT_SHARE).to_numpy()


def world_truth(ds: str):
    """The synthetic world's module when the panel of ds came from it (its manifest says so), else None."""
    manifest = lake.read_manifest(PANEL, ds) if lake.exists(PANEL, ds) else {}
    if "seed" not in manifest:
        return None
    from echelon.jobs.membership import world

    return world


def _setting(rows: pd.DataFrame):
    from echelon.jobs.membership import world
    from echelon.models.membership.analysis import Setting, panel_choices

    cells = sorted({(float(m), float(a)) for m, a in zip(rows["price_monthly"], rows["price_annual"])})
    space = Space(cells)
    status_quo = world.STATUS_QUO if world.STATUS_QUO in cells else cells[len(cells) // 2]
    last = rows[rows["month"] == rows["month"].max()]
    return Setting(cells, status_quo, world.BETA, estimate_dynamics(rows), last.reset_index(drop=True),
                   panel_choices(space, rows))


# ---- steps ----------------------------------------------------------------------------------------

def simulate(ds: str, seed: int = 1, customers: int = 3000, months: int = 24) -> dict:
    from echelon.jobs.membership import world

    return world.simulate(ds, seed=seed, customers=customers, months=months)


def ingest(ds: str) -> dict:
    from echelon.jobs.membership import ingest as job

    manifest = job.run(ds)
    return {"ds": ds, "rows": manifest["rows"]}


def features_step(ds: str, spark=None) -> dict:
    from echelon.jobs.membership import features as job

    manifest = job.run(ds, spark)
    return {"ds": ds, "rows": manifest["rows"]}


def fit(ds: str) -> dict:
    """Fit Deep PQR, log it (each stage's loss curve, held-out log-likelihoods, the identification table,
    reward recovery against the truth where the world is synthetic), register it @challenger, promote."""
    import mlflow

    from echelon import tracking
    from echelon.models.membership import analysis, plots, pqr
    from echelon.models.membership.pyfunc import MembershipModel, requirements, save

    ds = lake.parse_ds(ds)
    rows = lake.read(TRANSITIONS, ds).drop(columns="ds")
    where = f"{TRANSITIONS} ds={ds}"
    pqr.check_identified(rows, where)
    holdout = held_out(rows["customer_id"])
    train, test = rows[~holdout].reset_index(drop=True), rows[holdout].reset_index(drop=True)
    if train.empty or test.empty:
        raise MembershipError(f"{where}: {len(rows['customer_id'].unique())} customers are too few to hold "
                              f"{HOLDOUT_SHARE:.0%} of them out")
    config = pqr.FitConfig(beta=_setting(rows).beta, accelerator=get_settings().membership.accelerator)
    config = config.scaled(get_settings().membership.fit_scale)
    model = pqr.fit_pqr(train, config, where=where)
    setting = _setting(train)
    world = world_truth(ds)
    space = Space(setting.cells)
    truth = world.true_reward(space) if world else None
    ident, info = analysis.identification(model, setting, truth, world.VALUE if world else None)
    x_test, a_test = features(test), pqr.action_codes(test["action"])
    P = transitions(space, setting.dynamics)
    x_space = features(space.frame())
    simulator = model.simulator_reward(x_space, P)
    resolved = soft_bellman(simulator, P, setting.beta)[2]
    exact = pqr.exact_reward(model.log_policy(x_space), P, setting.beta)
    resolved_exact = soft_bellman(exact, P, setting.beta)[2]
    index = space.locate(test)
    metrics = {"heldout_ll_pqr": pqr.log_likelihood(np.log(np.clip(resolved[index], 1e-12, None)), a_test),
               "heldout_ll_pqr_exact": pqr.log_likelihood(np.log(np.clip(resolved_exact[index], 1e-12, None)), a_test),
               "heldout_ll_policy": pqr.log_likelihood(model.log_policy(x_test), a_test),
               "train_rows": len(train), "heldout_rows": len(test)}
    if truth is not None:
        metrics.update(reward_recovery(model, test, space, truth, exact, simulator))
    out = report_dir(ds)
    out.mkdir(parents=True, exist_ok=True)
    with tracking.run("membership", ds, "fit", model="pqr") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: v for k, v in vars(config).items()})
        from mlflow.entities import Metric

        now = int(time.time() * 1000)      # the loss curves in one batch (one call per point was ~17 s at load 15)
        curves = [Metric(f"loss_{stage}", float(losses[step]), now, step) for stage, losses in model.losses.items()
                  for step in range(0, len(losses), max(1, len(losses) // 200))]
        for start in range(0, len(curves), 1000):
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=curves[start:start + 1000])
        mlflow.log_metrics(metrics)
        mlflow.log_figure(plots.loss_curves(model.losses), "loss_curves.png")
        if truth is not None:
            figure = plots.reward_scatter(simulator[index], truth[index])
            figure.savefig(out / "reward_estimated_vs_true.png")
            mlflow.log_figure(figure, "reward_estimated_vs_true.png")
        ident.to_csv(out / "benefit_values.csv", index=False)
        mlflow.log_artifact(str(out / "benefit_values.csv"))
        save(model, Path(tmp) / "pqr.pt", x_test.shape[1], config.hidden)
        with open(Path(tmp) / "setting.pkl", "wb") as handle:
            pickle.dump(setting, handle)
        info_model = mlflow.pyfunc.log_model(name="model", python_model=MembershipModel(),
                                             pip_requirements=requirements(),
                                             artifacts={"pqr": str(Path(tmp) / "pqr.pt"),
                                                        "setting": str(Path(tmp) / "setting.pkl")},
                                             registered_model_name=MODEL_NAME)
        version = str(info_model.registered_model_version)
        run_id = run.info.run_id
    tracking.set_alias(MODEL_NAME, tracking.CHALLENGER, version)
    champion = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    champion_ll = None
    if champion is not None:
        try:
            scored = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{tracking.CHAMPION}").predict(test)
        except MembershipError as error:    # a champion of an older model layout: nothing comparable to beat
            log.warning("membership fit %s: @champion v%s not scored: %s", ds, champion.version, error)
        else:
            champion_ll = pqr.log_likelihood(scored[[f"logp_{a}" for a in ACTIONS]].to_numpy(), a_test)
    promoted = tracking.promote(MODEL_NAME, version, metrics["heldout_ll_pqr"], champion_ll, lower_is_better=False)
    lake.publish(ident.assign(model_version=f"{MODEL_NAME}/{version}"), BENEFIT_VALUES, ds, gate=True)
    log.info("membership fit %s: %s/%s held-out ll %.4f (champion %s) promoted=%s", ds, MODEL_NAME, version,
             metrics["heldout_ll_pqr"], champion_ll, promoted)
    return {"ds": ds, "run_id": run_id, "version": version, "promoted": promoted, "champion_ll": champion_ll,
            **{k: round(float(v), 5) for k, v in metrics.items()}}


def reward_recovery(model, rows: pd.DataFrame, space: Space, truth: np.ndarray, exact: np.ndarray,
                    simulator: np.ndarray) -> dict:
    """Correlation and relative RMSE of the member actions' estimated reward against the truth, over the
    states of `rows` (each visit once); `exact` (the exact-Q-and-R reward) and `simulator` (the model's
    PQR.simulator_reward) on every state of `space`."""
    from echelon.models.membership.pqr import static_reward

    index = space.locate(rows)
    x = features(space.frame().iloc[index])
    out = {}
    for name, estimate in (("pqr", simulator[index]), ("pqr_neural_r", model.reward(x)), ("pqr_exact", exact[index]),
                           ("static", static_reward(model, x))):
        e, t = estimate[:, 1:].ravel(), truth[index][:, 1:].ravel()
        out[f"reward_corr_{name}"] = float(np.corrcoef(e, t)[0, 1])
        out[f"reward_rel_rmse_{name}"] = float(np.sqrt(np.mean((e - t) ** 2) / np.mean(t ** 2)))
    return out


def scenario_files(folder: Path | None = None) -> list[Path]:
    folder = folder or get_settings().membership.scenarios or SCENARIOS
    files = sorted(p for p in Path(folder).glob("*") if p.suffix in (".json", ".yaml", ".yml"))
    if not files:
        raise MembershipError(f"no scenario files (*.json, *.yaml) in {folder}")
    return files


def counterfactual(ds: str, scenario: str | None = None) -> dict:
    """Every scenario of the folder (or the one file given) under the @champion's reward, re-solved; the
    truth beside it where the world is synthetic; published to membership/counterfactual_shares (gated)."""
    import mlflow

    from echelon import tracking
    from echelon.models.membership import analysis, plots
    from echelon.models.membership import counterfactual as cf

    ds = lake.parse_ds(ds)
    scenarios = [cf.load_scenario(p) for p in ([Path(scenario)] if scenario else scenario_files())]
    tracking.configure()
    champion = tracking.alias_version(MODEL_NAME, tracking.CHAMPION)
    if champion is None:
        raise MembershipError(f"no @champion of {MODEL_NAME}: run `echelon membership fit --ds {ds}` first")
    wrapper = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{tracking.CHAMPION}").unwrap_python_model()
    model = wrapper.model
    rows = lake.read(TRANSITIONS, ds).drop(columns="ds")
    setting = _setting(rows)
    world = world_truth(ds)
    space = Space(setting.cells)
    ident, info = analysis.identification(model, setting, world.true_reward(space) if world else None,
                                          world.VALUE if world else None)

    def truth(s: cf.Scenario):
        one = Space([s.prices])
        P = transitions(one, world.dynamics())
        return cf.solve(world.true_reward(one, extra_dollars=cf.benefit_dollars(one, s, world.VALUE)), P, world.BETA), P

    first = str((pd.Period(ds, freq="M") + 1))
    frame = analysis.run_scenarios(model, setting, scenarios, info, truth=truth if world else None, first_month=first)
    out = report_dir(ds)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "counterfactual_all_methods.csv", index=False)
    errors = analysis.scenario_errors(frame) if world else pd.DataFrame()
    plots.shares_plot(frame[frame["method"] == "pqr"]).savefig(out / "counterfactual_shares.png")
    published = frame[frame["method"] == "pqr"].drop(columns="method").assign(model_version=f"{MODEL_NAME}/{champion.version}")
    manifest = lake.publish(published.reset_index(drop=True), SHARES, ds, gate=True)
    return {"ds": ds, "scenarios": [s.name for s in scenarios], "rows": manifest["rows"],
            "model_version": f"{MODEL_NAME}/{champion.version}",
            "share_error_pp": errors.to_dict("records") if len(errors) else None}


STEPS = {"simulate": simulate, "ingest": ingest, "features": features_step, "fit": fit,
         "counterfactual": counterfactual}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="echelon membership", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--ds", required=True, help="data partition date YYYY-MM-DD")
    parser.add_argument("--scenario", help="counterfactual: one scenario file (JSON or YAML) instead of the folder")
    parser.add_argument("--seed", type=int, default=1, help="simulate: the world's seed")
    parser.add_argument("--customers", type=int, default=3000, help="simulate: customers")
    parser.add_argument("--months", type=int, default=24, help="simulate: months of panel")
    args = parser.parse_args(argv)
    try:
        ds = lake.parse_ds(args.ds)
        if args.step == "simulate":
            result = simulate(ds, args.seed, args.customers, args.months)
        elif args.step == "counterfactual":
            result = counterfactual(ds, args.scenario)
        else:
            result = STEPS[args.step](ds)
    except (MembershipError, lake.LakeError, ValueError) as error:
        if get_settings().traceback:
            raise
        # bad input: one line naming it, exit 2, nothing published (every publish is gated and atomic)
        print(f"echelon membership {args.step}: {error}".splitlines()[0] if isinstance(error, MembershipError)
              else f"echelon membership {args.step}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
