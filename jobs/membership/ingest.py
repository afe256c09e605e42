"""Land a monthly membership panel: the clear checks first (one line naming the customer and month),
then the raw table's Great Expectations gate; nothing is published when either fails.

A panel row is one customer in one month: customer_id, month (YYYY-MM-01), the state columns
(echelon.membership_mdp.STATE_COLUMNS), the action chosen and the money paid. Checked here:
- one action per customer and month (a second row for the same month is an error, not a tie to break);
- the action is a plan, and one the customer was offered that month (a plan without a price was not);
- no month missing between a customer's first and last month (the transitions would jump);
- the state columns present and known (segments, plans, months left of an annual term).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from echelon import lake
from echelon.catalog.membership import PANEL, RAW_PANEL
from echelon.membership_mdp import ACTIONS, BENEFITS, SEGMENTS, STATE_COLUMNS, TERM, MembershipError

COLUMNS = ("customer_id", "month", *STATE_COLUMNS, "action", "paid")


def _sample(frame: pd.DataFrame, n: int = 3) -> str:
    return "; ".join(f"{r.customer_id} {r.month}" for r in frame.head(n).itertuples())


def validate_panel(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The panel, sorted and typed, or a MembershipError that names what is wrong and where."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MembershipError(f"{where}: missing columns {missing}")
    frame = frame[list(COLUMNS)].copy()
    frame["month"] = pd.to_datetime(frame["month"]).dt.to_period("M").dt.to_timestamp().dt.strftime("%Y-%m-%d")
    twice = frame[frame.duplicated(["customer_id", "month"], keep=False)]
    if len(twice):
        raise MembershipError(f"{where}: {twice[['customer_id', 'month']].drop_duplicates().shape[0]} customer-months "
                              f"have more than one action (one choice per customer and month), e.g. {_sample(twice)}")
    for column, allowed in (("segment", SEGMENTS), ("plan", ACTIONS)):
        bad = frame[~frame[column].isin(allowed)]
        if len(bad):
            raise MembershipError(f"{where}: unknown {column} {sorted(bad[column].astype(str).unique())[:3]} "
                                  f"(known: {list(allowed)}), e.g. {_sample(bad)}")
    unknown = frame[~frame["action"].isin(ACTIONS)]
    if len(unknown):
        raise MembershipError(f"{where}: unknown action(s) {sorted(unknown['action'].astype(str).unique())[:3]}: "
                              f"the plans are {list(ACTIONS)}, e.g. {_sample(unknown)}")
    for plan in ("monthly", "annual"):
        price = frame[f"price_{plan}"]
        not_offered = frame[(frame["action"] == plan) & (price.isna() | (price < 0))]
        if len(not_offered):
            raise MembershipError(f"{where}: {len(not_offered)} choices of plan {plan!r} in a month it was not offered "
                                  f"(no price_{plan} that month), e.g. {_sample(not_offered)}")
    term = frame["months_left"]
    bad_term = frame[(term < 0) | (term > TERM - 1) | ((frame["plan"] != "annual") & (term != 0))]
    if len(bad_term):
        raise MembershipError(f"{where}: months_left must be 0..{TERM - 1} on an annual plan and 0 otherwise, "
                              f"e.g. {_sample(bad_term)}")
    flags = [f"{b}_use" for b in BENEFITS] + ["tenure_band"]
    bad_flags = frame[~frame[flags[:-1]].isin([0, 1]).all(axis=1) | ~frame["tenure_band"].isin([0, 1, 2])]
    if len(bad_flags):
        raise MembershipError(f"{where}: usage flags must be 0/1 and tenure_band 0..2, e.g. {_sample(bad_flags)}")
    frame = frame.sort_values(["customer_id", "month"]).reset_index(drop=True)
    period = pd.to_datetime(frame["month"]).dt.to_period("M").astype("int64")
    span = period.groupby(frame["customer_id"]).agg(["min", "max", "count"])
    gaps = span[span["max"] - span["min"] + 1 != span["count"]]
    if len(gaps):
        first = gaps.index[0]
        months = set(pd.to_datetime(frame.loc[frame["customer_id"] == first, "month"]).dt.to_period("M"))
        full = pd.period_range(min(months), max(months), freq="M")
        lost = [str(m) for m in full if m not in months]
        raise MembershipError(f"{where}: {len(gaps)} customers have months missing from their panel, e.g. customer "
                              f"{first} has no row for {', '.join(lost[:5])}")
    for column in ("months_left", "tenure_band", *[f"{b}_use" for b in BENEFITS]):
        frame[column] = frame[column].astype(np.int64)
    return frame


def run(ds: str) -> dict:
    """Validate the source panel of ds and publish it to raw through its gate."""
    ds = lake.parse_ds(ds)
    frame = validate_panel(lake.read(PANEL, ds).drop(columns="ds"), where=f"{PANEL} ds={ds}")
    return lake.publish(frame, RAW_PANEL, ds, gate=True,
                        params={"segments": list(SEGMENTS), "actions": list(ACTIONS)})
