"""The catalog: every lake table declared once, one module per domain, imported by name.

A table's entry (echelon.lake.Table) carries its layer, domain, name, partitioning, the contract columns
other domains may rely on, its expectation suite (the gate `lake.publish(..., gate=True)` runs) and its
Airflow Asset (`TABLE.asset()`). The catalog is plumbing, like the lake: jobs/ and models/ both import
it, so the forecast contract's quantile columns (a model's output, read by placement and capacity) have
one home that neither layer has to import the other for. tests/unit/test_catalog.py fails on a second
`Table(...)` declaration anywhere in the code.
"""
from __future__ import annotations

from echelon.catalog import callouts, capacity, damage, demand, membership, network, placement
from echelon.catalog.table import Table


def tables() -> list[Table]:
    """Every declared table, in domain order."""
    found = []
    for module in (demand, network, placement, capacity, damage, callouts, membership):
        found += [v for v in vars(module).values() if isinstance(v, Table)]
    return found
