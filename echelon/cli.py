"""echelon: the project's console command.

One shape for every pipeline step: `echelon <domain> <step> --ds D [options]`, the step exactly as its DAG
task runs it (STEPS below lists them for --help; each domain's steps module holds them in its STEPS); the
tools keep their own arguments (`echelon forecast ...`, `echelon callouts ope ...`, ...).

Each subcommand is a thin front to a module that also runs as `python -m <module>`; only the module of
the chosen subcommand is imported, so `echelon airflow ...` stays fast. An error ends the command with one
line, `echelon COMMAND: ErrorType: message`, never a traceback: exit status 2 for bad input (a ValueError, a
missing file: the message names the input), 1 for anything else (a lake or registry failure, a bug).
`--log-level DEBUG` logs the traceback (logger echelon.cli) before that line; ECHELON_TRACEBACK=1 raises it.
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


class CurrentStderrHandler(logging.StreamHandler):
    """A stderr handler that writes to sys.stderr as it is when each record is logged, not as it was when
    the command started: a caller that swaps stderr (a test's capture, a tool) and closes it afterwards must
    not leave the root logger writing into a closed stream."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


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
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True, handlers=[CurrentStderrHandler()])
    module = importlib.import_module(COMMANDS[name][0])

    def command() -> int:
        if hasattr(module, "add_arguments"):
            parser = argparse.ArgumentParser(prog=f"echelon {name}", description=COMMANDS[name][1])
            module.add_arguments(parser)
            return int(module.main(parser.parse_args(rest)) or 0)
        return int(module.main(rest) or 0)

    return run_reporting(name, command)


log = logging.getLogger(__name__)
# Bad input: the user can fix it by changing what they passed (exit 2). Everything else exits 1.
BAD_INPUT = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def exit_status(error: BaseException) -> int:
    """2 for bad input, else 1; an error may say otherwise with an `exit_status` attribute."""
    return getattr(error, "exit_status", None) or (2 if isinstance(error, BAD_INPUT) else 1)


def one_line(name: str, error: BaseException) -> str:
    """`echelon NAME: ErrorType: message`; an error that is not the project's own says how to see more."""
    # a multi-line message (a failed gate lists each expectation) still ends the command in one line
    message = "; ".join(part.strip() for part in str(error).splitlines() if part.strip()) or repr(error)
    line = f"echelon {name}: {type(error).__name__}: {message}"
    if not type(error).__module__.startswith("echelon.") and not isinstance(error, BAD_INPUT):
        line += " (--log-level DEBUG shows the traceback)"
    return line


def run_reporting(name: str, command) -> int:
    """Run `command()` and turn any error into one line on stderr and an exit status (see the module
    docstring); the traceback is logged at DEBUG, or raised with ECHELON_TRACEBACK=1."""
    try:
        return int(command() or 0)
    except Exception as error:
        if get_settings().traceback:
            raise
        log.debug("echelon %s failed", name, exc_info=True)
        print(one_line(name, error), file=sys.stderr)
        return exit_status(error)

if __name__ == "__main__":
    sys.exit(main())
