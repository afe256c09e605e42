"""Matured feedback (Spark): every impression whose attribution window closed within the trailing
`history_days` ending at ds, with its click label (sql/callouts/feedback.sql).

Stateless by design: the partition of ds is recomputed from the raw partitions it depends on, so a
re-run or a backfill of any date gives the same rows, in any order. An impression enters the table on
the day it matures (shown day + WINDOW_DAYS) and its label never changes afterwards, so it is counted
exactly once per window, on the day it matures, and never while pending.

CLI: python -m echelon.jobs.callouts.feedback --ds 2026-11-20 [--history-days 28]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

from echelon import lake
from echelon.jobs.callouts import gates
from echelon.catalog.callouts import CLICKS, FEEDBACK, IMPRESSIONS, WINDOW_DAYS
from echelon.settings import get_settings
from echelon.spark import get_spark, load_sql

log = logging.getLogger(__name__)


def history_days() -> int:
    return get_settings().callouts.history_days


def _union(spark, table, days):
    frames = [lake.read_spark(spark, table, d).drop("ds") for d in days if lake.exists(table, d)]
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def build(spark, ds: str, history: int | None = None, window_days: int = WINDOW_DAYS):
    """The feedback frame of ds (Spark), from impressions shown in the window and the clicks since."""
    history = history_days() if history is None else history
    shown_days = [d for d in gates._days(ds, history + window_days)]
    impressions = _union(spark, IMPRESSIONS, shown_days)
    if impressions is None:
        raise lake.LakeError(f"no impressions published for the {history + window_days} days ending {ds} "
                             f"({IMPRESSIONS.root()}): run `echelon callouts ingest --ds D` first")
    clicks = _union(spark, CLICKS, shown_days)
    if clicks is None:
        clicks = spark.createDataFrame([], "impression_id string, clicked_at timestamp")
    impressions.createOrReplaceTempView("impressions")
    clicks.createOrReplaceTempView("clicks")
    return spark.sql(load_sql("callouts/feedback", ds=ds, window_days=window_days, history_days=history))


def run(ds: str, history: int | None = None) -> dict:
    ds = lake.parse_ds(ds)
    spark = get_spark("callouts-feedback")
    frame = build(spark, ds, history)
    manifest = lake.publish(frame, FEEDBACK, ds, gate=gates.gate(FEEDBACK.suite, FEEDBACK, ds))
    log.info("feedback for %s: %d matured impressions", ds, manifest["rows"])
    return {"ds": ds, "rows": manifest["rows"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echelon.jobs.callouts.feedback")
    parser.add_argument("--ds", required=True)
    parser.add_argument("--history-days", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.ds, args.history_days), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
