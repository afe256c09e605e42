"""The nightly callouts pipeline, one function per DAG task; every gate is wired in the jobs it calls.

    ingest -> feedback -> train -> evaluate_and_promote -> serve

`echelon callouts <step> --ds YYYY-MM-DD` runs any step by hand exactly as the DAG runs it;
`echelon callouts simulate ...`, `echelon callouts ope ...` and `echelon callouts obd ...` are the
console tools (see their --help)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from echelon import lake

log = logging.getLogger(__name__)


def ingest(ds: str) -> dict:
    from echelon.jobs.callouts import ingest as job

    return job.run(ds)


def feedback(ds: str) -> dict:
    from echelon.jobs.callouts import feedback as job

    return job.run(ds)


def train(ds: str) -> dict:
    from echelon.jobs.callouts.world import true_rates
    from echelon.models.callouts import train as job

    return job.train(ds, truth=true_rates(ds))


def evaluate_and_promote(ds: str) -> dict:
    from echelon.models.callouts import train as job

    return job.evaluate_and_promote(ds)


def serve(ds: str, seed: int | None = None) -> dict:
    """Tonight's serving table: the @champion's method refit on all matured feedback of ds, over the
    callouts of the catalog of ds (servable tomorrow), published through its gate."""
    from echelon import tracking
    from echelon.catalog.callouts import CATALOG
    from echelon.jobs.callouts import serving
    from echelon.models.callouts.policy import serving_table
    from echelon.models.callouts.train import MODEL_NAME, champion_method, load_logs, segments
    from echelon.settings import get_settings

    ds = lake.parse_ds(ds)
    tracking.configure()
    method, version = champion_method()
    logs = load_logs(ds)
    catalog = lake.read(CATALOG, ds).drop(columns="ds")
    table, _ = serving_table(method, logs, catalog, segments(ds, logs), get_settings().seed if seed is None else seed)
    manifest = serving.publish(table, ds)
    log.info("serving table for %s: %s (%s/%s), %d rows", ds, method, MODEL_NAME, version, manifest["rows"])
    return {"ds": ds, "method": method, "model_version": f"{MODEL_NAME}/{version}", "rows": manifest["rows"]}


def simulate_tool(args: argparse.Namespace) -> int:
    """`echelon callouts simulate`: the shopper world (jobs/callouts/world.py) built from the tool's arguments
    and handed to the policies' simulation (models/callouts/simulate.py)."""
    from echelon.jobs.callouts.world import make_world
    from echelon.models.callouts import simulate as sim

    return sim.main(args, make_world(args.seed, days=args.days, launch_every=args.launch_every))


STEPS = {"ingest": ingest, "feedback": feedback, "train": train, "evaluate_and_promote": evaluate_and_promote,
         "serve": serve}
# tool -> the module with its arguments (add_arguments) and its main; RUNNERS: a tool whose main needs what
# only this module may join (the synthetic world of jobs/ for model code) runs through its runner here
TOOLS = {"simulate": "echelon.models.callouts.simulate", "ope": "echelon.models.callouts.ope_cli",
         "obd": "echelon.jobs.callouts.obd"}
RUNNERS = {"simulate": simulate_tool}


def main(argv: list[str]) -> int:
    if argv and argv[0] in TOOLS:
        import importlib

        module = importlib.import_module(TOOLS[argv[0]])
        parser = argparse.ArgumentParser(prog=f"echelon callouts {argv[0]}", description=module.__doc__.splitlines()[0])
        module.add_arguments(parser)
        return int(RUNNERS.get(argv[0], module.main)(parser.parse_args(argv[1:])) or 0)
    parser = argparse.ArgumentParser(prog="echelon callouts", description=__doc__.splitlines()[0],
                                     epilog=f"tools: {', '.join(TOOLS)} (echelon callouts TOOL --help)")
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--ds", required=True, help="data partition date YYYY-MM-DD")
    args = parser.parse_args(argv)
    result = STEPS[args.step](lake.parse_ds(args.ds))
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
