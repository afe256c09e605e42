"""The nightly callouts pipeline, one function per DAG task; every gate is wired in the jobs it calls.

    ingest -> feedback -> train -> evaluate_and_promote -> serve

`echelon callouts <step> --ds YYYY-MM-DD` runs any step by hand exactly as the DAG runs it;
`echelon callouts simulate ...`, `echelon callouts ope ...` and `echelon callouts obd ...` are the
console tools (see their --help)."""
from __future__ import annotations

import argparse
import json
import sys

from echelon import lake


def ingest(ds: str) -> dict:
    from echelon.jobs.callouts import ingest as job

    return job.run(ds)


def feedback(ds: str) -> dict:
    from echelon.jobs.callouts import feedback as job

    return job.run(ds)


def train(ds: str) -> dict:
    from echelon.models.callouts import train as job

    return job.train(ds)


def evaluate_and_promote(ds: str) -> dict:
    from echelon.models.callouts import train as job

    return job.evaluate_and_promote(ds)


def serve(ds: str) -> dict:
    from echelon.models.callouts import serve as job

    return job.run(ds)


STEPS = {"ingest": ingest, "feedback": feedback, "train": train, "evaluate_and_promote": evaluate_and_promote,
         "serve": serve}
TOOLS = {"simulate": "echelon.models.callouts.simulate", "ope": "echelon.models.callouts.ope_cli",
         "obd": "echelon.jobs.callouts.obd"}


def main(argv: list[str]) -> int:
    if argv and argv[0] in TOOLS:
        import importlib

        module = importlib.import_module(TOOLS[argv[0]])
        parser = argparse.ArgumentParser(prog=f"echelon callouts {argv[0]}", description=module.__doc__.splitlines()[0])
        module.add_arguments(parser)
        return int(module.main(parser.parse_args(argv[1:])) or 0)
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
