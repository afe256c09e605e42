"""A capacity period's state on the lake: its calendar month, whether its settlement closed it, the
rounds published in it and the space its grants hold. Read by the capacity steps and the world generator
(which made jobs/capacity/world.py and models/capacity/steps.py import each other before)."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from echelon import lake
from echelon.catalog.capacity import GRANTS, SETTLEMENTS
from echelon.lake import Table


class PeriodClosed(RuntimeError):
    """A round of a period whose statements are final."""


def period_of(ds: str) -> str:
    return ds[:7]


def period_bounds(period: str) -> tuple[str, str]:
    first = dt.date.fromisoformat(f"{period}-01")
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first.isoformat(), (nxt - dt.timedelta(days=1)).isoformat()


def previous_period(period: str) -> str:
    return (dt.date.fromisoformat(f"{period}-01") - dt.timedelta(days=1)).isoformat()[:7]


def closed_on(period: str) -> str | None:
    """The date of the settlement that closed a period, or None while it is open."""
    end = period_bounds(period)[1]
    for ds in lake.partitions(SETTLEMENTS):
        if ds > end and period in set(lake.read(SETTLEMENTS, ds, columns=["period"])["period"]):
            return ds
    return None


def ensure_open(ds: str) -> None:
    closed = closed_on(period_of(ds))
    if closed:
        raise PeriodClosed(f"round ds={ds}: period {period_of(ds)} was closed and settled on ds={closed}; "
                           f"its statements are final and this round cannot be re-run")


def rounds_in_period(table: Table, ds: str, before: bool = False) -> list[str]:
    start, _ = period_bounds(period_of(ds))
    return [p for p in lake.partitions(table) if start <= p and (p < ds if before else p <= ds)]


def granted_windows(ds: str) -> pd.DataFrame:
    """Every grant of rounds up to ds with the window it holds space: from its round to its period end."""
    frames = []
    for r in [p for p in lake.partitions(GRANTS) if p <= ds]:
        g = lake.read(GRANTS, r, columns=["seller_id", "storage_type", "cuft_granted"])
        frames.append(g.assign(granted_from=r, granted_until=period_bounds(period_of(r))[1]))
    return pd.concat(frames, ignore_index=True) if frames else None
