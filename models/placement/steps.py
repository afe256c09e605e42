"""The nightly placement pipeline, one function per DAG task, and the `echelon placement` command.

    check_inputs -> solve (publishes placement_plan + capacity_prices) -> simulate

Each step reads its inputs with jobs/placement/inputs.py (Spark), calls the pure solve and simulation of
models/placement/, and publishes through jobs/placement/inputs.publish: the one module that joins both.

    echelon placement check --date D
    echelon placement solve --date D [--method lagrangian|monolithic] [--engine spark|local]
    echelon placement solve --generate items=N,facilities=F,regions=R,seed=S --method M --output DIR
    echelon placement simulate --date D | --generate ... [--days 28] [--output DIR]
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path

from echelon import lake, settings
from echelon.catalog.demand import FORECASTS  # noqa: F401  (the tables a placement night reads and writes)
from echelon.catalog.network import DELIVERY_LANES, FACILITIES, TRANSFER_LANES  # noqa: F401
from echelon.catalog.placement import PLAN, PRICES  # noqa: F401
from echelon.jobs.placement.inputs import PlacementInputError, check_inputs  # noqa: F401
from echelon.settings import get_settings

log = logging.getLogger(__name__)
report_dir = functools.partial(settings.report_dir, "placement")
PLAN_COLUMNS, PRICE_COLUMNS = list(PLAN.columns), list(PRICES.columns)


def build_instance(ds: str, params=None, spark=None):
    """The instance for `ds` from the lake: the demand summary is reduced in Spark (rows: item x region)."""
    import numpy as np

    from echelon.jobs.placement import inputs
    from echelon.models.placement.instance import Params, from_tables, window_days
    from echelon.spark import get_spark

    params = params or Params()
    spark = spark or get_spark("placement-solve")
    frames = inputs.read_inputs(spark, ds)
    transfer = frames["transfer_lanes"].toPandas()
    window = window_days(transfer, params)
    lead_sd = float(np.sqrt((transfer["lead_time_std_days"] ** 2).mean())) if len(transfer) else 0.0
    summary = inputs.demand_summary(frames["forecasts"], ds, window, lead_sd)
    return from_tables(summary, frames["items"].toPandas(), frames["facilities"].toPandas(),
                       frames["delivery_lanes"].toPandas(), transfer, window, params)


def run(ds: str, method: str = "lagrangian", engine: str = "spark", params=None,
        solver: str = "highs", max_iter: int = 60, tol: float = 1e-3, time_limit_s: float | None = None) -> dict:
    """Solve for `ds` and publish both tables (each through its gate), or publish nothing."""
    from echelon.jobs.placement import inputs
    from echelon.models.placement import lagrangian
    from echelon.models.placement.solve import (log_to_mlflow, plan_table, prices_table, solve_instance,
                                                summary_of)
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
    extra = {"placement": {k: summary[k] for k in ("objective", "bound", "gap", "method", "status")}}
    plan_manifest, prices_manifest = inputs.publish(spark, plan, prices, ds,
                                                    sorted(set(inst.fc_ids) | set(inst.dc_ids)), extra)
    summary.update({"plan_rows": plan_manifest["rows"], "prices_rows": prices_manifest["rows"]})
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    prices.to_csv(folder / "capacity_prices.csv", index=False)
    log_to_mlflow(ds, inst, result, prices, summary, folder)
    log.info("placement ds=%s published: objective %.2f, bound %.2f, gap %.4f%%, %d plan rows",
             ds, result.objective, result.bound, 100 * result.gap, plan_manifest["rows"])
    return summary


def solve(ds: str, method: str | None = None, engine: str | None = None) -> dict:
    config = get_settings().placement
    return run(ds, method=method or config.method, engine=engine or config.engine, max_iter=config.max_iter)


def simulate(ds: str, days: int = 28) -> dict:
    """Replay the published plan and both baselines; log the comparison to MLflow and the run report."""
    import mlflow

    from echelon import tracking
    from echelon.models.placement import plots, simulate as sim

    inst = build_instance(ds)
    plan = lake.read(PLAN, ds)
    by_facility = plan.groupby(["item_id", "facility_id"])["target_units"].sum().unstack(fill_value=0.0)
    targets = by_facility.reindex(index=inst.item_ids, columns=inst.fc_ids, fill_value=0.0).to_numpy()
    dc_targets = by_facility.reindex(index=inst.item_ids, columns=inst.dc_ids, fill_value=0.0).to_numpy()
    seed = int(ds.replace("-", ""))              # a seed from the date: re-runs replay the same days
    comparison = sim.compare(inst, {"x": targets, "y": dc_targets}, days=days, seed=seed)
    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(folder / "simulation.csv", index=False)
    picture = plots.simulation(comparison, folder / "simulation.png")
    with tracking.run("placement", ds, "simulate", days=days):
        for row in comparison.to_dict("records"):
            mlflow.log_metrics({f"{row['policy']}_{k}": float(v) for k, v in row.items() if k != "policy"})
        mlflow.log_artifact(str(folder / "simulation.csv"))
        mlflow.log_artifact(str(picture))
    _write_report(ds, comparison)
    return {"ds": ds, "days": days, "policies": comparison.set_index("policy").round(4).to_dict("index")}


def _write_report(ds: str, comparison) -> Path:
    """A one-page run report: the solve summary, the pictures and the simulated comparison."""
    folder = report_dir(ds)
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
    rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in summary.items())
    html = (f"<html><head><title>placement ds={ds}</title></head><body><h1>Placement, ds={ds}</h1>"
            f"<h2>Solve</h2><table>{rows}</table><img src='convergence.png'><img src='utilisation.png'>"
            f"<h2>Simulation: optimised plan vs baselines</h2>{comparison.round(4).to_html(index=False)}"
            f"<img src='simulation.png'></body></html>")
    (folder / "index.html").write_text(html)
    return folder / "index.html"


STEPS = {"check_inputs": check_inputs, "solve": solve, "simulate": simulate}   # `check` on the command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("check", "solve", "simulate"):
        p = sub.add_parser(name)
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--date", "--ds", dest="date", help="partition date YYYY-MM-DD (reads and writes the lake)")
        if name != "check":
            where.add_argument("--generate", help="items=N,facilities=F,regions=R,seed=S: a generated instance")
            p.add_argument("--output", type=Path, help="folder for plan, summary.json and plots (--generate)")
        if name == "solve":
            p.add_argument("--method", choices=["lagrangian", "monolithic"], default="lagrangian")
            p.add_argument("--engine", choices=["spark", "local"], default=None,
                           help="where item subproblems run (default: spark on the lake, local for --generate)")
            p.add_argument("--solver", choices=["highs", "glop"], default="highs")
            p.add_argument("--max-iter", type=int, default=60)
            p.add_argument("--tol", type=float, default=1e-3, help="stop at this relative gap")
            p.add_argument("--time-limit", type=float, default=None, help="seconds")
        if name == "simulate":
            p.add_argument("--days", type=int, default=28)


def main(args: argparse.Namespace) -> int:
    from echelon.models.placement import solve as job
    from echelon.models.placement.instance import parse_generate

    if getattr(args, "generate", None):
        spec = parse_generate(args.generate)
        output = args.output or Path("placement-output")
        if args.action == "solve":
            result = job.run_generated(spec, args.method, output, engine=args.engine or "local", solver=args.solver,
                                       max_iter=args.max_iter, tol=args.tol, time_limit_s=args.time_limit)
        else:
            from echelon.models.placement import simulate as sim
            from echelon.models.placement.instance import generate
            from echelon.models.placement.lagrangian import solve as lagrangian_solve

            inst = generate(**spec)
            comparison = sim.compare(inst, lagrangian_solve(inst).plan, days=args.days)
            output.mkdir(parents=True, exist_ok=True)
            comparison.to_csv(output / "simulation.csv", index=False)
            result = comparison.set_index("policy").round(4).to_dict("index")
    else:
        ds = lake.parse_ds(args.date)
        if args.action == "check":
            result = check_inputs(ds)
        elif args.action == "solve":
            result = run(ds, method=args.method, engine=args.engine or "spark", solver=args.solver,
                             max_iter=args.max_iter, tol=args.tol)
        else:
            result = simulate(ds, days=args.days)
    print(json.dumps(result, indent=2, default=str))
    return 0
