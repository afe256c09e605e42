"""A capacity round's lake I/O: what each step of models/capacity/steps.py reads and publishes.

The round's logic (caps, clearing, price protection, settlement) is pure and lives in models/capacity/;
this module only reads partitions, publishes them through their catalog gates, and guards what must never
be rewritten (a closed period's settlement)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from echelon import lake
from echelon.catalog.capacity import BASE_LIMITS, GRANTS, RAW_REQUESTS, REQUESTS, ROUNDS, SETTLEMENTS, STATEMENTS
from echelon.jobs.capacity.periods import PeriodClosed, rounds_in_period


def frozen_limits(ds: str) -> tuple[pd.DataFrame, str] | None:
    """The period's base limits as its first round announced them (and that round's date); None at the
    period's first round."""
    earlier = rounds_in_period(BASE_LIMITS, ds, before=True)
    if not earlier:
        return None
    return lake.read(BASE_LIMITS, earlier[0]).drop(columns="ds"), earlier[0]


def publish_limits(limits: pd.DataFrame, ds: str, announced: str) -> dict:
    return lake.publish(limits, BASE_LIMITS, ds, gate=True, extra={"announced": announced})


def limits(ds: str) -> pd.DataFrame:
    return lake.read(BASE_LIMITS, ds)


def landed_requests(ds: str) -> pd.DataFrame:
    """The week's requests as they landed (before validation)."""
    return lake.read(REQUESTS, ds).drop(columns="ds")


def publish_requests(frame: pd.DataFrame, ds: str, params: dict) -> dict:
    return lake.publish(frame, RAW_REQUESTS, ds, gate=True, params=params)


def valid_requests(ds: str) -> pd.DataFrame:
    return lake.read(RAW_REQUESTS, ds).drop(columns="ds")


def capacity_inputs(ds: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]] | None:
    """(fulfillment centres, placement's capacity prices of ds, cubic feet granted by the period's earlier
    rounds per storage type): what mechanism.program_capacity needs; None while placement has not
    published the capacity prices of ds."""
    from echelon.jobs.capacity.sellers import CAPACITY_PRICES, FACILITIES, reference_partition

    if not lake.exists(CAPACITY_PRICES, ds):
        return None
    facilities = lake.read(FACILITIES, reference_partition(FACILITIES, ds))
    facilities = facilities[facilities["facility_type"] == "FC"]   # sellers' stock lives in fulfillment centres
    granted: dict[str, float] = {}
    for earlier in rounds_in_period(GRANTS, ds, before=True):
        for kind, value in lake.read(GRANTS, earlier).groupby("storage_type")["cuft_granted"].sum().items():
            granted[kind] = granted.get(kind, 0.0) + float(value)
    return facilities, lake.read(CAPACITY_PRICES, ds), granted


def publish_round(grants: pd.DataFrame, pools: pd.DataFrame, ds: str) -> dict:
    """Grants and the round's pools, committed together (lake.transaction)."""
    with lake.transaction(ds) as tx:
        return {"grants": tx.publish(grants, GRANTS, gate=True), "rounds": tx.publish(pools, ROUNDS, gate=True)}


def period_grants(ds: str) -> pd.DataFrame | None:
    """Every grant of the period's rounds up to ds, with its round's date; None before the first round."""
    rounds = rounds_in_period(GRANTS, ds)
    if not rounds:
        return None
    return pd.concat([lake.read(GRANTS, r).drop(columns="ds").assign(round=r) for r in rounds], ignore_index=True)


def first_limits(ds: str) -> pd.DataFrame:
    """The base limits announced at the first round of ds's period."""
    return lake.read(BASE_LIMITS, rounds_in_period(BASE_LIMITS, ds)[0])


def publish_statements(lines: pd.DataFrame, ds: str) -> dict:
    return lake.publish(lines, STATEMENTS, ds, gate=True)


def publish_settlement(settled: pd.DataFrame, ds: str, previously_closed: str | None) -> int:
    """Publish a closed period's settlement once. Re-running the closing round is allowed only when it
    gives exactly the same rows: a closed period's statements are never silently rewritten."""
    if previously_closed == ds:
        before = lake.read_manifest(SETTLEMENTS, ds)
        staged = describe(settled)
        if (staged["rows"], staged["checksum"]) != (before["rows"], before["checksum"]):
            raise PeriodClosed(f"settlement of period {settled['period'].iloc[0]} (published ds={ds}) would change "
                               f"on this re-run ({before['rows']} -> {staged['rows']} rows, checksum differs); "
                               f"a closed period's statements are never rewritten")
    return lake.publish(settled, SETTLEMENTS, ds, gate=True)["rows"]


def describe(frame: pd.DataFrame) -> dict:
    """Rows and checksum of a frame as lake.publish would record them."""
    with tempfile.TemporaryDirectory() as folder:
        frame.to_parquet(Path(folder) / "part-00000.parquet", index=False)
        return lake.describe(Path(folder))


def round_pools(ds: str) -> pd.DataFrame:
    return lake.read(ROUNDS, ds)


def statement_lines(ds: str) -> pd.DataFrame:
    return lake.read(STATEMENTS, ds)


def settlement(ds: str) -> pd.DataFrame | None:
    return lake.read(SETTLEMENTS, ds) if lake.exists(SETTLEMENTS, ds) else None
