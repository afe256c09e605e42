"""Publish a serving table for ds: gated (probabilities sum to one per segment, every callout exists in
the catalog of ds) and swapped in atomically; yesterday's table stays until then."""
from __future__ import annotations

from echelon import lake
from echelon.catalog.callouts import SERVING
from echelon.jobs.callouts import gates


def publish(table, ds: str) -> dict:
    """Gate and publish a serving table for ds (also the way a hand-made table gets in)."""
    return lake.publish(table, SERVING, ds, gate=gates.gate(SERVING.suite, SERVING, ds, gates.with_catalog(ds)))
