"""echelon: the project's console command.

One shape for every pipeline step: `echelon <domain> <step> --ds D [options]`, the step exactly as its DAG
task runs it (STEPS below lists them for --help; each domain's steps module holds them in its STEPS); the
tools keep their own arguments (`echelon forecast ...`, `echelon callouts ope ...`, ...).

Each subcommand is a thin front to a module that also runs as `python -m <module>`; only the module of
the chosen subcommand is imported, so `echelon airflow ...` stays fast. The project's own errors print as
`echelon COMMAND: ErrorType: message` with exit status 1 (ECHELON_TRACEBACK=1 shows the traceback).
Logging is configured here, once: `--log-level LEVEL` after any command but `airflow` sets it (default INFO)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from echelon.settings import get_settings

# subcommand -> (module, one-line help). A module exposes add_arguments(parser) + main(args), or main(argv).
COMMANDS = {
    "forecast": ("echelon.models.demand.forecast", "forecast a long/Kaggle/M5 file with a chosen or auto-picked model"),
    "world": ("echelon.jobs.demand.world", "generate the synthetic retail world and network into the lake"),
    "demand": ("echelon.models.demand.steps", "run one step of the nightly demand pipeline for a date"),
    "capacity": ("echelon.models.capacity.steps", "weekly FBA capacity rounds: a pipeline step, or clear/period on files"),
    "placement": ("echelon.models.placement.steps", "solve, check or simulate the nightly inventory placement"),
    "damage": ("echelon.models.damage.steps", "image-batch damage scoring: train, score, world, or one pipeline step"),
    "backfill": ("echelon.backfill", "backfill a DAG over data dates with Airflow's own backfill"),
    "callouts": ("echelon.models.callouts.steps", "nightly benefit callouts: a pipeline step, or simulate/ope/obd tools"),
    "membership": ("echelon.models.membership.steps", "weekly membership choices: simulate, fit Deep PQR, counterfactual scenarios"),
    "airflow": ("echelon.airflow_env", "run the airflow CLI with the project's Airflow settings"),
    "checksums": ("echelon.checksums", "dump or compare the checksums of every published partition of a lake"),
}


# domain -> its pipeline steps, as the DAG tasks name them (tests/unit/test_architecture.py checks these
# against each steps module's STEPS), and its tools (commands with their own arguments).
STEPS = {
    "demand": ("ingest", "features", "candidates", "train_candidate", "train", "evaluate_and_promote", "score",
               "report", "summary"),
    "placement": ("check_inputs", "solve", "simulate"),
    "capacity": ("world", "base_limits", "requests", "clear", "statements", "simulate", "report"),
    "damage": ("world", "train", "evaluate_and_promote", "gate_manifest", "score", "log_batch"),
    "callouts": ("ingest", "feedback", "train", "evaluate_and_promote", "serve"),
    "membership": ("simulate", "ingest", "features", "fit", "counterfactual"),
}
TOOLS = {
    "placement": ("solve --generate", "simulate --generate"),
    "capacity": ("clear --requests", "period --rounds"),
    "damage": ("train --train", "score --model", "world --output"),
    "callouts": ("simulate", "ope", "obd"),
    "membership": ("counterfactual --scenario",),
}


def usage() -> str:
    lines = ["usage: echelon COMMAND [ARGS...]", "       echelon DOMAIN STEP --ds YYYY-MM-DD [OPTIONS]", "",
             (__doc__ or "").splitlines()[0], "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "steps (echelon DOMAIN STEP --ds D):"]
    lines += [f"  {domain:<10} {', '.join(steps)}" for domain, steps in STEPS.items()]
    lines += ["", "tools:"]
    lines += [f"  {domain:<10} {', '.join(tools)}" for domain, tools in TOOLS.items()]
    lines += ["", "`echelon COMMAND --help` describes a command's arguments."]
    return "\n".join(lines)


def step_argv(name: str, rest: list[str]) -> list[str]:
    """`echelon <domain> <step> --ds D ...` in the words of the domain's own parser, where it differs:
    damage runs steps as `step <step>` (its train/score/world are also tools: --ds picks the step), and
    placement calls check_inputs `check`."""
    if not rest or rest[0] not in STEPS.get(name, ()):
        return rest
    if name == "damage" and any(a == "--ds" or a.startswith("--ds=") for a in rest):
        return ["step", *rest]
    if name == "placement" and rest[0] == "check_inputs":
        return ["check", *rest[1:]]
    return rest


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PASS_THROUGH = {"airflow"}   # their argv goes untouched to another program's own parser


def split_log_level(argv: list[str]) -> tuple[str, list[str]]:
    """(level, the remaining arguments): `--log-level` is taken out so every command accepts it."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--log-level", default="INFO")
    known, rest = pre.parse_known_args(argv)
    return str(known.log_level).upper(), rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"echelon: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    level = "INFO"
    if name not in PASS_THROUGH:
        level, rest = split_log_level(rest)
    rest = step_argv(name, rest)
    if level not in logging.getLevelNamesMapping():
        print(f"echelon {name}: --log-level: unknown level {level!r}; choose DEBUG, INFO, WARNING or ERROR",
              file=sys.stderr)
        return 2
    # force: a command's own basicConfig (e.g. `python -m` entry points) must not be what decides
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    module = importlib.import_module(COMMANDS[name][0])
    try:
        if hasattr(module, "add_arguments"):
            parser = argparse.ArgumentParser(prog=f"echelon {name}", description=COMMANDS[name][1])
            module.add_arguments(parser)
            return int(module.main(parser.parse_args(rest)) or 0)
        return int(module.main(rest) or 0)
    except Exception as error:
        # The project's own errors (bad input, a closed period, an unreachable service) carry messages
        # written for the user: print the message, not a traceback. Anything else is a bug: raise it.
        if not type(error).__module__.startswith("echelon.") or get_settings().traceback:
            raise
        print(f"echelon {name}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
