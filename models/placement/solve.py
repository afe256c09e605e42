"""The placement solve on an instance: decomposition (or monolithic) -> the `placement_plan` and
`capacity_prices` tables and a summary, logged to MLflow. Pure of the lake: the nightly step that reads
the inputs and publishes the tables is models/placement/steps.py.

    echelon placement solve --date 2026-11-20 [--method lagrangian|monolithic] [--engine spark|local]
    echelon placement solve --generate items=200,facilities=8,regions=4,seed=1 --method monolithic --output DIR

Both write a `summary.json` (objective, bound, gap, seconds, method, status, max_capacity_violation, ...);
on the lake it lies beside the run report, under <reports>/placement/ds=<ds>/.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.catalog.placement import PLAN, PRICES
from echelon.models.placement import lagrangian, plots
from echelon.models.placement.instance import SPEEDS, Instance

log = logging.getLogger(__name__)

PLAN_COLUMNS, PRICE_COLUMNS = list(PLAN.columns), list(PRICES.columns)


def solve_instance(inst: Instance, method: str = "lagrangian", engine: str = "local", spark=None,
                   solver: str = "highs", max_iter: int = 60, tol: float = 1e-3,
                   time_limit_s: float | None = None) -> lagrangian.Result:
    if method == "monolithic":
        return lagrangian.monolithic(inst, solver, time_limit_s)
    if method != "lagrangian":
        raise ValueError(f"unknown method {method!r}: lagrangian or monolithic")
    if engine == "spark":
        from echelon.models.placement.parallel import SparkSolver
        from echelon.spark import get_spark

        subsolve = SparkSolver(inst, spark or get_spark("placement-solve"), solver=solver,
                               method=lagrangian.auto_subproblems(inst))
        try:
            return lagrangian.solve(inst, subsolve, max_iter=max_iter, tol=tol, time_limit_s=time_limit_s,
                                    solver=solver)
        finally:
            subsolve.close()
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r}: spark or local")
    return lagrangian.solve(inst, max_iter=max_iter, tol=tol, time_limit_s=time_limit_s, solver=solver)


def plan_table(inst: Instance, result: lagrangian.Result, min_units: float = 1e-6) -> pd.DataFrame:
    """`placement_plan` rows: each FC's target split over the speeds it serves (shares of its expected
    shipments; the same stock serves every speed), and each DC's target as speed `replenishment`.
    expected_cost: the item's expected cost attributed to that facility and speed (holding, shipping,
    late-promise penalties, refill transfers); lost-sale penalties are in the summary, not per facility."""
    plan = result.plan
    N, F, D, R, K = inst.shape
    served, x = plan["served"], plan["x"]
    total = served.sum(axis=2, keepdims=True)
    share = np.where(total > 0, served / np.where(total > 0, total, 1.0), 1.0 / len(SPEEDS))
    fc = pd.DataFrame({
        "item_id": np.repeat(inst.item_ids, F * len(SPEEDS)),
        "facility_id": np.tile(np.repeat(inst.fc_ids, len(SPEEDS)), N),
        "speed": np.tile(SPEEDS, N * F),
        "target_units": (x[:, :, None] * share).ravel(),
        "expected_cost": plan["fcost"].ravel(),
    })
    dc = pd.DataFrame({"item_id": np.repeat(inst.item_ids, D), "facility_id": np.tile(inst.dc_ids, N),
                       "speed": "replenishment", "target_units": plan["y"].ravel(), "expected_cost": plan["dcost"].ravel()})
    out = pd.concat([fc, dc], ignore_index=True)
    out = out[(out["target_units"] > min_units) | (out["expected_cost"] > min_units)].copy()
    out["target_units"] = out["target_units"].clip(lower=0.0).round(4)
    out["expected_cost"] = out["expected_cost"].clip(lower=0.0).round(4)
    return out.sort_values(["item_id", "facility_id", "speed"]).reset_index(drop=True)[PLAN_COLUMNS]


def prices_table(inst: Instance, result: lagrangian.Result) -> pd.DataFrame:
    """`capacity_prices`: shadow price ($ per cuft of storage, $ per unit/day of outbound flow, over the
    planning window) and the plan's utilisation of every facility's storage and flow capacity."""
    res = inst.resources()
    cap = inst.capacity
    util = np.where(cap > 0, result.usage / np.where(cap > 0, cap, 1.0), 0.0)
    return pd.DataFrame({"facility_id": res["facility_id"], "resource": res["resource"],
                         "shadow_price": np.maximum(0.0, result.prices).round(6),
                         "utilisation": np.clip(util, 0.0, None).round(6)})[PRICE_COLUMNS]


def summary_of(inst: Instance, result: lagrangian.Result, **extra) -> dict:
    N, F, D, R, K = inst.shape
    demand_units = float((inst.demand * inst.prob).sum())
    lost = float(result.plan["lost_units"].sum())
    return {"objective": result.objective, "bound": result.bound, "gap": result.gap, "seconds": result.seconds,
            "method": result.method, "status": result.status, "solver": result.solver,
            "iterations": result.iterations, "max_capacity_violation": result.max_capacity_violation(inst),
            "items": N, "fcs": F, "dcs": D, "regions": R, "scenarios": K, "window_days": inst.window_days,
            "expected_demand_units": demand_units, "shortfall_units": lost,
            "shortfall_share": lost / demand_units if demand_units else 0.0,
            "binding_capacities": int((result.prices > 1e-9).sum()), **extra}


def log_to_mlflow(ds: str, inst: Instance, result: lagrangian.Result, prices: pd.DataFrame, summary: dict,
                  folder: Path) -> None:
    import mlflow

    from echelon import tracking

    conv = plots.convergence(result.history, folder / "convergence.png",
                             f"{result.method}: {len(inst.item_ids)} items, {len(inst.fc_ids)} FCs")
    util = plots.utilisation(prices, folder / "utilisation.png")
    with tracking.run("placement", ds, f"solve-{result.method}", method=result.method, solver=result.solver):
        mlflow.log_params({k: summary[k] for k in ("method", "solver", "items", "fcs", "dcs", "regions",
                                                    "scenarios", "window_days")} | {"engine": summary.get("engine", "local")})
        mlflow.log_metrics({k: float(summary[k]) for k in ("objective", "bound", "gap", "seconds", "iterations",
                                                           "max_capacity_violation", "shortfall_units",
                                                           "shortfall_share", "binding_capacities")})
        for h in result.history:
            if not h.get("recovered"):
                mlflow.log_metrics({"iter_bound": h["best_bound"], "iter_objective": h["objective"],
                                    "iter_gap": h["gap"]}, step=int(h["iteration"]))
        for path in (conv, util, folder / "summary.json", folder / "capacity_prices.csv"):
            mlflow.log_artifact(str(path))


def run_generated(spec: dict, method: str, output: Path, engine: str = "local", solver: str = "highs",
                  max_iter: int = 60, tol: float = 1e-3, time_limit_s: float | None = None) -> dict:
    """Solve a generated instance; write plan.parquet, capacity_prices.csv, summary.json and the plots."""
    from echelon.models.placement.instance import generate

    began = time.time()
    inst = generate(**spec)
    built = time.time() - began
    result = solve_instance(inst, method, engine, None, solver, max_iter, tol, time_limit_s)
    output.mkdir(parents=True, exist_ok=True)
    plan, prices = plan_table(inst, result), prices_table(inst, result)
    plan.to_parquet(output / "plan.parquet", index=False)
    prices.to_csv(output / "capacity_prices.csv", index=False)
    summary = summary_of(inst, result, generate=spec, engine=engine, build_seconds=built)
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plots.convergence(result.history, output / "convergence.png")
    plots.utilisation(prices, output / "utilisation.png")
    return summary
