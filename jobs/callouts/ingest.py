"""Land one day of callout logs as gated raw partitions.

For partition ds it publishes
- reference/callouts/catalog      callouts servable on ds + 1 (callout_id, family, value, launched_on)
- raw/callouts/impressions        impressions shown on ds (impression_id, segment, callout_id, layout_id,
                                  position, propensity, shown_at)
- raw/callouts/clicks             clicks that arrived on ds (impression_id, clicked_at), whatever day their
                                  impression was shown (up to WINDOW_DAYS before)

Two sources:
- world (default): the synthetic shopper world (jobs/callouts/world.py) serves day ds from the serving
  table published for ds - 1 (uniform before the first one), so the bandit's choices shape its own logs.
  The clicks of ds's impressions, which arrive over the next days, go to source/callouts/click_stream.
- logs: a folder with impressions.csv|parquet and clicks.csv|parquet spanning any number of days (and
  optionally catalog.csv); rows are selected by the day of shown_at / clicked_at, parsed to UTC whatever
  mix of ISO 8601 variants or other formats a column holds (echelon/callout_logs.py). `echelon callouts obd`
  writes the Open Bandit Dataset in this format.

CLI: python -m echelon.jobs.callouts.ingest --ds 2026-11-20 [--logs DIR]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from pathlib import Path

import pandas as pd

from echelon import lake
from echelon.callout_logs import TimestampError, parse_utc, read_any
from echelon.catalog.callouts import CATALOG, CLICK_STREAM, CLICKS, IMPRESSIONS, SERVING
from echelon.jobs.callouts import gates, world as W
from echelon.settings import get_settings

log = logging.getLogger(__name__)


class IngestError(ValueError):
    """The day's logs cannot be landed: absent, empty or unreadable."""


def world_config() -> dict:
    """The synthetic world's knobs (environment, with defaults): seed, first day, daily traffic."""
    return get_settings().callouts.world


def the_world() -> W.World:
    return W.configured_world()


def logging_policy(world: W.World, day: dt.date) -> pd.DataFrame:
    """Yesterday night's serving table (what production shows today), or uniform before the first one."""
    yesterday = (day - dt.timedelta(days=1)).isoformat()
    if lake.exists(SERVING, yesterday):
        return lake.read(SERVING, yesterday).drop(columns="ds")
    return W.uniform_policy(world, day)


def from_world(ds: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(catalog, impressions, clicks arriving on ds) of the synthetic world."""
    world, day = the_world(), dt.date.fromisoformat(ds)
    if day < world.start:
        raise IngestError(f"the synthetic world starts on {world.start}; ds={ds} is before it "
                          f"(set ECHELON_CALLOUTS_WORLD_START)")
    impressions, future_clicks = W.simulate_day(world, day, logging_policy(world, day), world_config()["traffic"])
    lake.publish(future_clicks, CLICK_STREAM, ds)   # the shoppers' future: never read except to land clicks
    arriving = [lake.read(CLICK_STREAM, d).drop(columns="ds") for d in gates._days(ds, W.WINDOW_DAYS)
                if lake.exists(CLICK_STREAM, d)]
    clicks = pd.concat(arriving, ignore_index=True)
    clicks = clicks[clicks["clicked_at"].dt.date == day].reset_index(drop=True)
    catalog = W.catalog_for(world, day)
    return catalog, impressions, clicks


def _times(values: pd.Series, column: str, source: str) -> pd.Series:
    """Timestamps of any ISO 8601 variant, or mixed formats, to UTC; a bad value is an IngestError."""
    try:
        return parse_utc(values, column, source)
    except TimestampError as error:
        raise IngestError(str(error)) from error


def from_logs(ds: str, folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(catalog, impressions, clicks) of day ds from a logs folder."""
    folder = Path(folder)
    impressions = read_any(folder, "impressions")
    if impressions is None:
        raise IngestError(f"no impressions.csv or impressions.parquet in {folder}")
    missing = sorted(set(W.IMPRESSION_COLUMNS) - set(impressions.columns))
    if missing:
        raise IngestError(f"{folder}/impressions lacks columns {missing}; it has {list(impressions.columns)}")
    impressions["shown_at"] = _times(impressions["shown_at"], "shown_at", f"{folder}/impressions")
    day = dt.date.fromisoformat(ds)
    impressions = impressions[impressions["shown_at"].dt.date == day][W.IMPRESSION_COLUMNS].reset_index(drop=True)
    if impressions.empty:
        raise IngestError(f"empty day of logs: no impressions shown on {ds} in {folder}/impressions")
    clicks = read_any(folder, "clicks")
    if clicks is None:
        clicks = pd.DataFrame({"impression_id": pd.Series(dtype=str), "clicked_at": pd.Series(dtype="datetime64[us, UTC]")})
    clicks["clicked_at"] = _times(clicks["clicked_at"], "clicked_at", f"{folder}/clicks")
    clicks = clicks[clicks["clicked_at"].dt.date == day][W.CLICK_COLUMNS].reset_index(drop=True)
    catalog = read_any(folder, "catalog")
    if catalog is None:   # real logs without a catalog: the callouts seen that day, without attributes
        catalog = pd.DataFrame({"callout_id": sorted(impressions["callout_id"].astype(str).unique())})
        catalog["family"], catalog["value"] = "unknown", 0.0
    for frame, column in ((impressions, "impression_id"), (impressions, "callout_id"), (clicks, "impression_id"),
                          (catalog, "callout_id")):
        frame[column] = frame[column].astype(str)
    return catalog[["callout_id", "family", "value"]], impressions, clicks


def run(ds: str, logs: str | Path | None = None) -> dict:
    """Land partition ds: catalog, impressions, then clicks (checked against the impressions)."""
    ds = lake.parse_ds(ds)
    logs = logs or get_settings().callouts.logs
    catalog, impressions, clicks = from_logs(ds, logs) if logs else from_world(ds)
    if impressions.empty:
        raise IngestError(f"empty day of logs: no impressions for ds={ds}")
    # impressions first: a bad day of logs fails before anything of that date is replaced
    with lake.transaction(ds) as tx:   # the day's tables together or not at all
        manifests = {
            "impressions": tx.publish(impressions, IMPRESSIONS, gate=gates.gate(IMPRESSIONS.suite, IMPRESSIONS, ds)),
            "catalog": tx.publish(catalog, CATALOG, gate=gates.gate(CATALOG.suite, CATALOG, ds)),
            "clicks": tx.publish(clicks, CLICKS, gate=gates.gate(CLICKS.suite, CLICKS, ds,
                                                                 gates.with_impressions(W.WINDOW_DAYS, ds))),
        }
    result = {name: manifest["rows"] for name, manifest in manifests.items()}
    log.info("landed callouts logs for %s from %s: %s", ds, logs or "the synthetic world", result)
    return {"ds": ds, "source": str(logs or "world"), **result}


def seed_history(start: str, end: str) -> list[str]:
    """Logs the synthetic world would have produced under the uniform policy before the pipeline went
    live, written straight to the lake without gates (demos and tests: a first nightly run then has
    matured feedback to learn from). Real deployments land their history through `run` instead."""
    world = the_world()
    days = pd.date_range(start, end, freq="D").date
    for day in days:
        ds = day.isoformat()
        imps, future = W.simulate_day(world, day, W.uniform_policy(world, day), world_config()["traffic"])
        lake.publish(future, CLICK_STREAM, ds)
        arriving = pd.concat([lake.read(CLICK_STREAM, d).drop(columns="ds") for d in gates._days(ds, W.WINDOW_DAYS)
                              if lake.exists(CLICK_STREAM, d)], ignore_index=True)
        lake.publish(W.catalog_for(world, day), CATALOG, ds)
        lake.publish(imps, IMPRESSIONS, ds)
        lake.publish(arriving[arriving["clicked_at"].dt.date == day].reset_index(drop=True), CLICKS, ds)
    return [d.isoformat() for d in days]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echelon.jobs.callouts.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--logs", help="a logs folder instead of the synthetic world")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.ds, args.logs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
