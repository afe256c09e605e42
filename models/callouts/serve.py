"""Publish tonight's serving table: the @champion's method refit on all matured feedback of ds, over the
callouts of the catalog of ds (servable tomorrow), gated (probabilities sum to one per segment, every
callout exists in the catalog) and swapped in atomically; yesterday's table stays until then."""
from __future__ import annotations

import logging

from echelon import lake, tracking
from echelon.jobs.callouts import gates
from echelon.jobs.callouts.tables import CATALOG, SERVING
from echelon.models.callouts.policy import serving_table
from echelon.models.callouts.train import MODEL_NAME, champion_method, load_logs, segments
from echelon.settings import get_settings

log = logging.getLogger(__name__)


def publish(table, ds: str) -> dict:
    """Gate and publish a serving table for ds (also the way a hand-made table gets in)."""
    return lake.publish(table, SERVING, ds, gate=gates.gate("callouts_serving", SERVING, ds, gates.with_catalog(ds)))


def run(ds: str, seed: int | None = None) -> dict:
    ds = lake.parse_ds(ds)
    tracking.configure()
    method, version = champion_method()
    logs = load_logs(ds)
    catalog = lake.read(CATALOG, ds).drop(columns="ds")
    table, _ = serving_table(method, logs, catalog, segments(ds, logs), get_settings().seed if seed is None else seed)
    manifest = publish(table, ds)
    log.info("serving table for %s: %s (%s/%s), %d rows", ds, method, MODEL_NAME, version, manifest["rows"])
    return {"ds": ds, "method": method, "model_version": f"{MODEL_NAME}/{version}", "rows": manifest["rows"]}
