"""The capacity round's pure pieces between the lake reads and the publishes of models/capacity/steps.py:
request caps, the period's statement lines, a closed period's settlement, and the round's HTML page."""
from __future__ import annotations

import numpy as np
import pandas as pd

from echelon.models.capacity import mechanism as mech

LINE_COLUMNS = ["period", "round", "request_id", "seller_id", "storage_type", "cuft_granted", "cleared_price",
                "protected_price", "fee"]


def capped_requests(requests: pd.DataFrame, limits: pd.DataFrame) -> pd.DataFrame:
    """Cap each request at its seller's request cap for the storage type (a seller without a base limit of
    that type gets the floor cap); `cuft_asked` keeps what was asked."""
    frame = requests.merge(limits[["seller_id", "storage_type", "request_cap_cuft"]],
                           on=["seller_id", "storage_type"], how="left")
    frame["request_cap_cuft"] = frame["request_cap_cuft"].fillna(mech.REQUEST_CAP_FLOOR)
    frame["cuft_asked"] = frame["cuft_requested"]
    frame["cuft_requested"] = np.minimum(frame["cuft_asked"], frame["request_cap_cuft"])
    return frame


def statement_lines(grants: pd.DataFrame | None) -> pd.DataFrame:
    """Price-protected lines of a period's grants so far (each with its round's date); empty, typed, when
    the period has no round yet."""
    if grants is None:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in LINE_COLUMNS[5:] else "string")
                             for c in LINE_COLUMNS})
    grants = grants.assign(pool=grants["storage_type"])
    return mech.period_lines(grants)[LINE_COLUMNS]


def settlement(period: str, lines: pd.DataFrame, usage: pd.DataFrame, limits: pd.DataFrame,
               credit_share: float) -> pd.DataFrame:
    """Per-seller settlement of a finished period: fees after price protection, incremental sales over the
    period's weeks (mechanism.incremental_sales), credits and net charge."""
    keys = ["seller_id", "storage_type"]
    granted = lines.groupby(keys)["cuft_granted"].sum().rename("granted_cuft").reset_index()
    usage = granted.merge(usage, on=keys, how="left").merge(
        limits[keys + ["base_limit_cuft"]], on=keys, how="left").fillna(0.0)
    usage["incremental_sales"] = mech.incremental_sales(usage["sales"], usage["used_cuft"], usage["base_limit_cuft"],
                                                        usage["granted_cuft"]).round(2)
    per_seller, _ = mech.settle(lines, usage.groupby("seller_id")["incremental_sales"].sum(), credit_share)
    per_seller.insert(0, "period", period)
    per_seller["status"] = "closed"
    return per_seller


def html(ds: str, period: str, pools: pd.DataFrame, lines: pd.DataFrame, market: pd.DataFrame | None,
         settled: pd.DataFrame | None) -> str:
    """An HTML page: the round per pool, the curves, the open statements, the market simulation."""
    money = "{:,.2f}".format
    parts = [f"<h1>Capacity round ds={ds} (period {period})</h1>",
             "<h2>Pools</h2>", pools.to_html(index=False, float_format=money),
             '<img src="curves.png" width="900">',
             f"<h2>Open statements of the period ({len(lines)} granted lines)</h2>",
             lines.groupby("seller_id")[["cuft_granted", "fee"]].sum().reset_index().to_html(index=False, float_format=money)]
    if market is not None:
        parts += ["<h2>Market simulation (same sellers, three allocation rules)</h2>",
                  market.to_html(index=False, float_format="{:,.3f}".format)]
    if settled is not None:
        parts += ["<h2>Settled period</h2>", settled.to_html(index=False, float_format=money)]
    return "<html><body style='font-family:sans-serif'>" + "\n".join(parts) + "</body></html>"
