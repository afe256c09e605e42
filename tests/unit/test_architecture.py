"""The house rules of issue 17, checked by reading the code (ast), not by running it."""
from __future__ import annotations

import ast
from pathlib import Path

from echelon import catalog
from echelon.lake import Table

ROOT = Path(__file__).resolve().parents[2]
CODE = [ROOT / d for d in ("echelon", "jobs", "models", "dags")]


def modules() -> list[Path]:
    return sorted(p for folder in CODE for p in folder.rglob("*.py"))


def calls_named(tree: ast.AST, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == name:
                yield node


def test_every_table_is_declared_once_in_the_catalog():
    declared: dict[tuple, list[str]] = {}
    for path in modules():
        for call in calls_named(ast.parse(path.read_text()), "Table"):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            assert path.parent == ROOT / "echelon" / "catalog", f"a table declared outside echelon/catalog/: {where}"
            key = tuple(a.value for a in call.args[:3] if isinstance(a, ast.Constant))
            declared.setdefault(key, []).append(where)
    twice = {k: v for k, v in declared.items() if len(v) > 1}
    assert not twice, f"tables declared more than once: {twice}"
    assert len(declared) == len(catalog.tables())


def test_catalog_entries_name_suites_that_exist():
    suites = ROOT / "expectations" / "suites"
    named = [t.suite for t in catalog.tables() if t.suite]
    assert len(named) == len(set(named)), "two tables share a suite"
    for table in catalog.tables():
        assert table.suite is None or (suites / f"{table.suite}.json").exists(), f"{table}: no suite {table.suite}"


def test_catalog_fields_do_not_change_what_a_table_is():
    assert Table("published", "demand", "forecasts") == catalog.demand.FORECASTS
    assert catalog.demand.FORECASTS.asset_uri == "echelon://published/demand/forecasts"
    assert [c for c in catalog.demand.FORECASTS.columns if c.startswith("q_")] == catalog.demand.qcols()


# The modules that build child processes' environments (they copy and extend os.environ on purpose).
ENVIRONMENT_BUILDERS = {"echelon/settings.py", "echelon/stack.py", "echelon/airflow_env.py"}


def test_the_environment_is_read_only_in_settings():
    """os.environ / os.getenv reads live in echelon/settings.py. `os.environ.setdefault(...)` is allowed:
    it hands a library (PySpark, MLflow) a default for itself and its child processes, it reads no setting."""
    found = []
    for path in modules():
        rel = str(path.relative_to(ROOT))
        if rel in ENVIRONMENT_BUILDERS:
            continue
        tree = ast.parse(path.read_text())
        allowed = {id(node.func.value) for node in calls_named(tree, "setdefault")
                   if isinstance(node.func, ast.Attribute)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and id(node) not in allowed:
                found.append(f"{rel}:{node.lineno}")
    assert not found, f"environment read outside echelon/settings.py: {found}"


# Each domain's steps module (read inputs -> pure functions -> publish; what the DAG tasks and the CLI
# call) is the one place that imports both layers.
# No other module is exempt: a tool that drives model code against a domain's synthetic world gets the world
# from its steps module (`echelon callouts simulate`: callouts' steps.simulate_tool; damage's tiny world and
# model: damage's steps.tiny).
STEPS_MODULES = {f"models/{d}/steps.py" for d in ("demand", "placement", "capacity", "damage", "callouts", "membership")}
# Crossings not yet removed (issue 17), each named so the list can only shrink: a new one fails below.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_jobs_and_models_are_layers():
    """Outside the steps modules nothing under models/ imports jobs/ and nothing under jobs/ imports models/."""
    crossings = set()
    for layer, other in (("models", "echelon.jobs"), ("jobs", "echelon.models")):
        for path in sorted((ROOT / layer).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in STEPS_MODULES:
                continue
            crossings |= {(rel, name) for name in imported_modules(ast.parse(path.read_text()))
                          if name == other or name.startswith(other + ".")}
    assert crossings <= KNOWN_CROSSINGS, f"layer crossings: {sorted(crossings - KNOWN_CROSSINGS)}"
    assert KNOWN_CROSSINGS <= crossings, f"gone, remove from KNOWN_CROSSINGS: {sorted(KNOWN_CROSSINGS - crossings)}"


MAX_LINES = 300


def test_a_long_module_says_why_at_its_top():
    """A module over 300 lines carries a `Size: <reason>` line in its docstring."""
    unexplained = []
    for path in modules():
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        if len(text.splitlines()) <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.startswith("Size: ") for line in doc.splitlines()):
            unexplained.append(f"{rel} ({len(text.splitlines())} lines)")
    assert not unexplained, f"modules over {MAX_LINES} lines without a `Size:` reason: {unexplained}"


def test_dags_take_table_assets_from_the_catalog():
    """A DAG names a table's Asset as TABLE.asset(); only non-table events (a landed damage batch) are
    declared in DAG files."""
    declared = []
    for path in sorted((ROOT / "dags").glob("*.py")):
        for call in calls_named(ast.parse(path.read_text()), "Asset"):
            uri = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
            declared.append(uri)
    assert declared == ["echelon://landing/damage/batches"]
    assert not {t.asset_uri for t in catalog.tables()} & set(declared)
