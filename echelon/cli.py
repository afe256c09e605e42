"""`echelon`: the project's console command. Each subcommand is a thin front to a module that also runs
as `python -m <module>`; the modules are imported only when their subcommand is used."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module exposing add_arguments(parser) and main(args), one-line help)
COMMANDS = {
    "forecast": ("echelon.models.demand.forecast", "forecast any long/Kaggle/M5 file with a chosen or auto-picked model"),
    "world": ("echelon.jobs.demand.world", "generate the synthetic retail world into the lake"),
    "demand": ("echelon.models.demand.steps", "run one step of the nightly demand pipeline for a date"),
    "backfill": ("echelon.backfill", "backfill a DAG over a range of data dates with Airflow's own backfill"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["airflow"]:  # pass everything through to Airflow, with the project's settings
        from echelon.airflow_env import airflow

        return airflow(*argv[1:], check=False).returncode
    parser = argparse.ArgumentParser(prog="echelon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("airflow", help="run the airflow CLI with the project's Airflow settings")
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == chosen:  # import only the module that will run
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    result = importlib.import_module(COMMANDS[args.command][0]).main(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
