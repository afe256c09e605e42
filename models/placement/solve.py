"""The nightly placement solve: gated inputs -> instance -> decomposition (or monolithic) -> gated publish
of `placement_plan` and `capacity_prices`, with every solve logged to MLflow.

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

from echelon import lake
from echelon.models.placement import lagrangian, plots
from echelon.models.placement.instance import SPEEDS, Instance, InstanceError, Params, demand_summary, from_tables, window_days

log = logging.getLogger(__name__)

FORECASTS = lake.Table("published", "demand", "forecasts")
ITEMS = lake.Table("reference", "demand", "items")
FACILITIES = lake.Table("reference", "network", "facilities")
DELIVERY_LANES = lake.Table("reference", "network", "delivery_lanes")
TRANSFER_LANES = lake.Table("reference", "network", "transfer_lanes")
PLAN = lake.Table("published", "placement", "placement_plan")
PRICES = lake.Table("published", "placement", "capacity_prices")
PLAN_COLUMNS = ["item_id", "facility_id", "speed", "target_units", "expected_cost"]
PRICE_COLUMNS = ["facility_id", "resource", "shadow_price", "utilisation"]


class PlacementInputError(ValueError):
    """An input partition placement cannot run on (absent, or rejected): names the table and partition."""


def report_dir(ds: str) -> Path:
    from echelon.settings import get_settings

    return get_settings().reports / "placement" / f"ds={ds}"


# -------------------------------------------------------------------------------------------------
# Inputs
# -------------------------------------------------------------------------------------------------

def reference_partition(table: lake.Table, ds: str) -> str:
    """Reference data is a snapshot: ds itself, else the latest before it, else the earliest after it."""
    parts = lake.partitions(table)
    if not parts:
        raise PlacementInputError(f"{table} has no published partition (looked under {table.root()}); "
                                  f"generate the world (echelon world ...) or load the network")
    if ds in parts:
        return ds
    before = [p for p in parts if p <= ds]
    return max(before) if before else min(parts)


def read_inputs(spark, ds: str) -> dict:
    """Spark frames of the forecasts partition of `ds` and the network snapshot for it."""
    if not lake.exists(FORECASTS, ds):
        raise PlacementInputError(f"forecasts missing for the date: {FORECASTS} has no partition ds={ds} "
                                  f"(looked in {FORECASTS.partition(ds)}); run demand_nightly for {ds} first")
    frames = {}
    for name, table, part in (("forecasts", FORECASTS, ds), *[(n, t, reference_partition(t, ds)) for n, t in (
            ("items", ITEMS), ("facilities", FACILITIES), ("delivery_lanes", DELIVERY_LANES),
            ("transfer_lanes", TRANSFER_LANES))]):
        # A re-published partition keeps its path: drop the session's cached file listing of it.
        spark.catalog.refreshByPath(str(table.partition(part)))
        frames[name] = lake.read_spark(spark, table, part).drop("ds")
    return frames


def check_inputs(ds: str, spark=None) -> dict:
    """Gate the inputs (Great Expectations): forecasts, facility capacities, and reachability of every
    forecast item x region. Raises GateFailed naming the table, partition, check and offending rows."""
    from echelon.expectations.gate import validate
    from echelon.spark import get_spark, load_sql

    ds = lake.parse_ds(ds)
    spark = spark or get_spark("placement-inputs")
    frames = read_inputs(spark, ds)
    validate(frames["forecasts"], "placement_input_forecasts", str(FORECASTS), ds)
    validate(frames["facilities"], "placement_input_facilities", str(FACILITIES), ds)
    for name, frame in frames.items():
        frame.createOrReplaceTempView(f"placement_{name}")
    reach = spark.sql(load_sql("placement/reach"))
    outcome = validate(reach, "placement_input_reach", "placement/reach (forecasts x network)", ds)
    return {"ds": ds, "forecast_rows": frames["forecasts"].count(), "item_regions": outcome.rows}


def build_instance(ds: str, params: Params = Params(), spark=None) -> Instance:
    """The instance for `ds` from the lake: the demand summary is reduced in Spark (rows: item x region)."""
    from pyspark.sql import functions as F

    from echelon.spark import get_spark

    spark = spark or get_spark("placement-solve")
    frames = read_inputs(spark, ds)
    transfer = frames["transfer_lanes"].toPandas()
    window = window_days(transfer, params)
    lead_sd = float(np.sqrt((transfer["lead_time_std_days"] ** 2).mean())) if len(transfer) else 0.0
    q = [F.col(f"`q_0.{k}`") for k in range(1, 10)]
    daily = (frames["forecasts"].where(F.col("horizon") <= window)
             .select("item_id", "location_id", "horizon", *[c.alias(f"q_0.{k}") for k, c in enumerate(q, 1)]))
    # Mean and variance per day from the deciles, summed per item x region (see instance.demand_summary).
    z90 = 1.2815515655446004
    sums = (daily.groupBy("item_id", "location_id")
            .agg(F.sum(sum(q) / 9.0).alias("mean"), F.sum(((q[-1] - q[0]) / (2 * z90)) ** 2).alias("var"))
            .toPandas())
    summary = pd.DataFrame({"item_id": sums["item_id"], "region_id": sums["location_id"], "mean": sums["mean"],
                            "sd": np.sqrt(sums["var"] + (sums["mean"] / window) ** 2 * lead_sd ** 2)})
    if summary.empty:
        raise PlacementInputError(f"{FORECASTS} ds={ds} has no rows within the {window}-day window")
    return from_tables(summary.sort_values(["item_id", "region_id"]), frames["items"].toPandas(),
                       frames["facilities"].toPandas(), frames["delivery_lanes"].toPandas(), transfer, window, params)


# -------------------------------------------------------------------------------------------------
# Solve and shape the outputs
# -------------------------------------------------------------------------------------------------

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
                               method=lagrangian.auto_subproblems(len(inst.item_ids)))
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


# -------------------------------------------------------------------------------------------------
# The job on the lake
# -------------------------------------------------------------------------------------------------

def run(ds: str, method: str = "lagrangian", engine: str = "spark", params: Params = Params(),
        solver: str = "highs", max_iter: int = 60, tol: float = 1e-3, time_limit_s: float | None = None) -> dict:
    """Solve for `ds` and publish both tables (each through its gate), or publish nothing."""
    from echelon.expectations.gate import gate, validate
    from echelon.spark import get_spark

    ds = lake.parse_ds(ds)
    spark = get_spark("placement-solve")
    inst = build_instance(ds, params, spark)
    N, F, D, R, K = inst.shape
    log.info("placement ds=%s: %d items, %d FCs, %d DCs, %d regions, %d scenarios, window %d days, method %s/%s",
             ds, N, F, D, R, K, inst.window_days, method, engine)
    result = solve_instance(inst, method, engine, spark, solver, max_iter, tol, time_limit_s)
    plan, prices = plan_table(inst, result), prices_table(inst, result)
    summary = summary_of(inst, result, ds=ds, engine=engine)
    if summary["max_capacity_violation"] > 1e-6:
        raise lagrangian.lp.SolveError(f"the plan for ds={ds} exceeds a capacity by "
                                       f"{summary['max_capacity_violation']:.3g}: not publishing")

    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    facility_ids = sorted(set(inst.fc_ids) | set(inst.dc_ids))
    params_gate = {"facility_ids": facility_ids}
    # Check the prices before the plan goes out, so a rejected prices table never follows a new plan.
    validate(spark.createDataFrame(prices), "placement_capacity_prices", str(PRICES), ds, params_gate)
    extra = {"placement": {k: summary[k] for k in ("objective", "bound", "gap", "method", "status")}}
    plan_manifest = lake.publish(plan, PLAN, ds, gate=gate("placement_plan", PLAN, ds, params_gate), extra=extra)
    prices_manifest = lake.publish(prices, PRICES, ds, gate=gate("placement_capacity_prices", PRICES, ds, params_gate),
                                   extra=extra)
    summary.update({"plan_rows": plan_manifest["rows"], "prices_rows": prices_manifest["rows"]})
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    prices.to_csv(folder / "capacity_prices.csv", index=False)
    log_to_mlflow(ds, inst, result, prices, summary, folder)
    log.info("placement ds=%s published: objective %.2f, bound %.2f, gap %.4f%%, %d plan rows",
             ds, result.objective, result.bound, 100 * result.gap, plan_manifest["rows"])
    return summary


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
