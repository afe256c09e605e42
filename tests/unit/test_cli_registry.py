"""One CLI shape: `echelon <domain> <step> --ds D` for every step, from the registry that --help lists."""
import importlib

import pytest

from echelon import cli


def test_the_registry_lists_every_steps_module_step():
    for domain, steps in cli.STEPS.items():
        module = importlib.import_module(cli.COMMANDS[domain][0])
        assert tuple(module.STEPS) == steps, domain


def test_help_lists_steps_and_tools(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "echelon DOMAIN STEP --ds YYYY-MM-DD" in out
    for domain, steps in cli.STEPS.items():
        assert f"  {domain:<10} {', '.join(steps)}" in out


def test_every_domain_takes_its_steps_in_one_shape():
    ds = ["--ds", "2026-11-20"]
    assert cli.step_argv("damage", ["score", *ds, "--batch-id", "b", "--manifest", "m.csv"]) == \
        ["step", "score", *ds, "--batch-id", "b", "--manifest", "m.csv"]
    assert cli.step_argv("damage", ["evaluate_and_promote", "--ds=2026-11-20"]) == ["step", "evaluate_and_promote", "--ds=2026-11-20"]
    assert cli.step_argv("damage", ["train", "--train", "t.csv", "--gallery", "g.csv", "--output", "o"])[0] == "train"
    assert cli.step_argv("damage", ["step", "score", *ds]) == ["step", "score", *ds]     # the old shape still works
    assert cli.step_argv("placement", ["check_inputs", *ds]) == ["check", *ds]
    assert cli.step_argv("demand", ["score", *ds]) == ["score", *ds]
    assert cli.step_argv("capacity", ["clear", "--requests", "r.csv"]) == ["clear", "--requests", "r.csv"]


def test_the_unified_shape_reaches_the_domain_step(capsys):
    """`echelon damage gate_manifest --ds D` runs the damage step (which fails on its missing batch, as
    `echelon damage step gate_manifest --ds D` does), not the damage parser's error for an unknown command.
    (Issue 18: the CLI turns every error into one line and an exit status, bad input 2.)"""
    assert cli.main(["damage", "gate_manifest", "--ds", "2026-11-20"]) == 2
    assert "ValueError: a batch needs a batch_id and a manifest path" in capsys.readouterr().err
