"""The demand domain's tables, and the forecast contract that placement and capacity read."""
from __future__ import annotations

from typing import Sequence

from echelon.catalog.table import Table

# The forecast contract: one column per quantile, q_0.1 ... q_0.9 (models/demand/base.py re-exports these).
QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# A series is (item_id, location_id): the key of the history frame and of the forecasts (models/demand/base.py
# re-exports it; echelon/formats.py reads files into frames keyed by it).
SERIES = ["item_id", "location_id"]


def qcol(q: float) -> str:
    """Column name of a quantile: 0.1 -> 'q_0.1'."""
    return f"q_{q:g}"


def qcols(quantiles: Sequence[float] = QUANTILES) -> list[str]:
    return [qcol(q) for q in quantiles]


SOURCE_SALES = Table("source", "demand", "sales")     # world mode: what a retailer's extract would hold
SOURCE_PLAN = Table("source", "demand", "plan")
ITEMS = Table("reference", "demand", "items", columns=("item_id", "cube_cuft", "price", "seller_id"))
EVENTS = Table("reference", "demand", "events")
RAW_SALES = Table("raw", "demand", "sales", suite="demand_raw_sales")
RAW_PLAN = Table("raw", "demand", "plan", suite="demand_raw_plan")
FEATURES = Table("features", "demand", "sales_features", suite="demand_features")
FORECASTS = Table("published", "demand", "forecasts", suite="demand_forecasts",
                  columns=("item_id", "location_id", "target_date", "horizon", *qcols(), "model_version"))
# The feature job's carried state (jobs/demand/features.py): per series, the raw rows that anchor the
# unbounded window frames before the lookback window of partition ds. Read by the next night only.
FEATURE_ANCHORS = Table("features", "demand", "sales_anchors")
