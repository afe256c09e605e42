"""The nightly demand pipeline, one function per DAG task; every gate is wired here, in one place.

    ingest -> features -> candidates -> train_candidate (one task per model) -> choose_challenger
           -> evaluate_and_promote -> score -> report

`echelon demand <step> --ds YYYY-MM-DD` runs any step by hand exactly as the DAG runs it
(`train_candidate` also takes `--model NAME`); `train` runs the three training steps in one process."""
from __future__ import annotations

import argparse
import json
import sys

from echelon import lake
from echelon.catalog.demand import FEATURES


def ingest(ds: str) -> dict:
    from echelon.jobs.demand import ingest as job

    # the same gates as `ingest --input` (an empty plan, a file with no rows after ds, passes ungated)
    return job.run(ds, gate=True)


def features(ds: str) -> dict:
    from echelon.jobs.demand import features as job

    return job.run(ds, gate=lake.gate_of(FEATURES, ds))


def train(ds: str) -> dict:
    from echelon.models.demand import train as job

    return job.train(ds)


def candidates(ds: str) -> list[str]:
    """The models to train for ds: empty when no retraining is due."""
    from echelon.models.demand import train as job

    return job.candidates_due(ds)


def train_candidate(ds: str, model: str) -> dict:
    from echelon.models.demand import train as job

    return job.train_candidate(ds, model)


def choose_challenger(ds: str, results: list[dict]) -> dict:
    from echelon.models.demand import train as job

    return job.choose_challenger(ds, results)


def evaluate_and_promote(ds: str) -> dict:
    from echelon.models.demand import train as job

    return job.evaluate_and_promote(ds)


def score(ds: str) -> dict:
    from echelon.models.demand import score as job

    return job.run(ds)


def report(ds: str) -> str:
    from echelon.models.demand import report as job

    return str(job.build(ds))


def summary(ds: str) -> str:
    """Where a run's results are: printed at the end of `make run`."""
    from echelon.expectations.gate import docs_index
    from echelon.models.demand.report import report_dir
    from echelon.models.demand.score import FORECASTS
    from echelon.settings import get_settings

    settings = get_settings()
    rows = lake.read_manifest(FORECASTS, ds)["rows"] if lake.exists(FORECASTS, ds) else 0
    return "\n".join([
        f"demand_nightly for ds={ds}:",
        f"  forecasts   {FORECASTS.partition(ds)}  ({rows} rows)",
        f"  data docs   {docs_index()}",
        f"  run report  {report_dir(ds) / 'index.html'}",
        f"  MLflow UI   `make mlflow`, then http://127.0.0.1:5000 (store: {settings.mlflow_uri})",
    ])


STEPS = {"ingest": ingest, "features": features, "candidates": candidates, "train_candidate": train_candidate,
         "train": train, "evaluate_and_promote": evaluate_and_promote, "score": score, "report": report,
         "summary": summary}
# choose_challenger takes the mapped tasks' results (XCom); by hand, `train` runs all three steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--ds", required=True, help="data partition date YYYY-MM-DD")
    parser.add_argument("--model", help="train_candidate: the candidate to train (see the `candidates` step)")


def main(args: argparse.Namespace) -> int:
    if args.step == "train_candidate" and not args.model:
        print("echelon demand train_candidate: --model NAME is required", file=sys.stderr)
        return 2
    extra = {"model": args.model} if args.step == "train_candidate" else {}
    result = STEPS[args.step](lake.parse_ds(args.ds), **extra)
    print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0
