"""The FBA capacity mechanism as pure functions on pandas/NumPy: validation, weekly clearing, price
protection across the rounds of a period, performance credits, base limits and program capacity.

Rules (the README's "Capacity" section states them with the worked example):
- each storage type is its own pool: a round clears every pool separately;
- clearing grants requests from the highest max fee per cubic foot down (ties: earlier submission,
  then seller id, then request id) until the pool is used; the marginal request is partly filled;
  every granted request pays the pool's clearing price = the lowest max fee granted in that round;
- price protection: a round's fee per cubic foot is the lowest clearing price of that round and every
  later round of the same period cleared so far (a reverse running minimum);
- credits: share x incremental sales, capped at the fee; the seller owes fee - credit, never < 0.
The clearing is vectorised (one lexsort and one cumulative sum), so a million requests clear in well
under a second.

Size: the rules of one mechanism (validation, clearing, price protection, credits, limits) on shared frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

REQUEST_COLUMNS = ["request_id", "seller_id", "storage_type", "max_fee_per_cuft", "cuft_requested", "submitted_at"]
STORAGE_TYPES = ("standard", "oversize")
CREDIT_SHARE = 0.15
REQUEST_CAP_SHARE = 0.20       # a request may ask for the larger of 20% of the base limit ...
REQUEST_CAP_FLOOR = 2000.0     # ... and 2,000 cubic feet
SAFETY_BUFFER = 0.10           # share of every facility's storage kept free for surges
OVERSIZE_CUFT = 1.0            # items above one cubic foot per unit are stored as oversize


class RequestError(ValueError):
    """Requests that must not be cleared; the message names each problem and the offending requests."""


class CapacityError(ValueError):
    """Program capacity that is missing, negative or not a number."""


def _sample(frame: pd.DataFrame, mask, columns=("request_id", "seller_id")) -> str:
    rows = frame.loc[mask, [c for c in columns if c in frame.columns]].head(5)
    return ", ".join(str(r) for r in rows.to_dict("records"))


def validate_requests(requests: pd.DataFrame, *, sellers=None, storage_types=STORAGE_TYPES,
                      cutoff: pd.Timestamp | str | None = None, where: str = "requests") -> pd.DataFrame:
    """Check one round's requests and return them typed; raise RequestError naming every problem.

    `sellers`: the known seller ids (None: any); `cutoff`: the round's cut-off (inclusive, UTC)."""
    missing = [c for c in REQUEST_COLUMNS if c not in requests.columns]
    if missing:
        raise RequestError(f"{where}: missing columns {missing}; found {list(requests.columns)}")
    frame = requests[REQUEST_COLUMNS].copy()
    problems: list[str] = []
    for column in ("max_fee_per_cuft", "cuft_requested"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    # microseconds: Spark cannot read parquet's nanosecond timestamps
    frame["submitted_at"] = pd.to_datetime(frame["submitted_at"], utc=True, errors="coerce").astype("datetime64[us, UTC]")
    for column in ("request_id", "seller_id", "storage_type"):
        frame[column] = frame[column].astype("string")

    def check(mask, what: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            problems.append(f"{int(mask.sum())} {what}: {_sample(frame, mask)}")

    check(frame[REQUEST_COLUMNS].isna().any(axis=1), "requests with a missing or unreadable value")
    for column, name in (("max_fee_per_cuft", "fees"), ("cuft_requested", "volumes")):
        values = frame[column].to_numpy()
        check(~np.isnan(values) & ~(np.isfinite(values) & (values > 0)),
              f"requests with negative, zero or infinite {name} ({column} must be > 0)")
    check(frame["request_id"].duplicated(keep=False) & frame["request_id"].notna(), "requests with a duplicate request_id")
    check(~frame["storage_type"].isin(list(storage_types)) & frame["storage_type"].notna(),
          f"requests with an unknown storage_type (known: {sorted(storage_types)})")
    if sellers is not None:
        check(~frame["seller_id"].isin(list(sellers)) & frame["seller_id"].notna(), "requests from unknown sellers")
    if cutoff is not None:
        cutoff = pd.Timestamp(cutoff)
        cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
        check(frame["submitted_at"] > cutoff, f"requests submitted after the round's cut-off {cutoff.isoformat()}")
    if problems:
        raise RequestError(f"{where}: {len(frame)} requests rejected, nothing cleared:\n  - " + "\n  - ".join(problems))
    return frame


def check_capacity(capacity, pool: str = "program") -> float:
    """A pool's program capacity in cubic feet: present, a finite number, not negative."""
    if capacity is None or (isinstance(capacity, float) and math.isnan(capacity)):
        raise CapacityError(f"program capacity for {pool!r} is missing")
    try:
        value = float(capacity)
    except (TypeError, ValueError):
        raise CapacityError(f"program capacity for {pool!r} is not a number: {capacity!r}") from None
    if not math.isfinite(value) or value < 0:
        raise CapacityError(f"program capacity for {pool!r} must be a finite number >= 0 cubic feet, got {value}")
    return value


def priority_order(requests: pd.DataFrame) -> np.ndarray:
    """Positions of the requests in clearing order: fee high to low, then earlier submission, then
    seller id, then request id (so the order is total and the same on every run).

    Sorting a million string ids is the slow part, and they only matter among requests with the same
    fee and the same submission time, so they are ranked only within those (rare) ties."""
    fee = requests["max_fee_per_cuft"].to_numpy(dtype="float64")
    submitted = pd.to_datetime(requests["submitted_at"], utc=True).to_numpy(dtype="datetime64[ns]").astype("int64")
    order = np.lexsort((submitted, -fee))            # np.lexsort sorts by the last key first
    f, t = fee[order], submitted[order]
    tie = (f[1:] == f[:-1]) & (t[1:] == t[:-1])
    if tie.any():
        involved = np.zeros(len(order), dtype=bool)
        involved[1:] |= tie
        involved[:-1] |= tie
        group = np.cumsum(np.r_[True, ~tie])[involved]
        rows = order[involved]
        sellers = pd.factorize(requests["seller_id"].to_numpy()[rows], sort=True)[0]
        ids = pd.factorize(requests["request_id"].to_numpy()[rows], sort=True)[0]
        order[involved] = rows[np.lexsort((ids, sellers, group))]
    return order


def clear_pool(requests: pd.DataFrame, capacity: float) -> tuple[np.ndarray, float]:
    """Granted cubic feet per request (in the frame's row order) and the clearing price (NaN when
    nothing is granted) for one pool. Requests must already be valid."""
    capacity = check_capacity(capacity)
    order = priority_order(requests)
    wanted = requests["cuft_requested"].to_numpy(dtype="float64")[order]
    before = np.cumsum(wanted) - wanted                    # cubic feet granted ahead of each request
    granted_sorted = np.clip(capacity - before, 0.0, wanted)
    granted = np.empty_like(granted_sorted)
    granted[order] = granted_sorted
    fees = requests["max_fee_per_cuft"].to_numpy(dtype="float64")
    price = float(fees[granted > 0].min()) if (granted > 0).any() else math.nan
    return granted, price


@dataclass(frozen=True)
class RoundResult:
    grants: pd.DataFrame    # the requests with cuft_granted and fee_per_cuft (0 when not granted)
    pools: pd.DataFrame     # storage_type, capacity_cuft, requested_cuft, granted_cuft, clearing_price, ...

    def summary(self) -> dict:
        """The round in a few numbers (clearing_price is per pool when there are several)."""
        pools = {row.storage_type: {"clearing_price": None if math.isnan(row.clearing_price) else row.clearing_price,
                                    "granted_cuft": row.granted_cuft, "capacity_cuft": row.capacity_cuft,
                                    "requested_cuft": row.requested_cuft, "requests": int(row.requests),
                                    "granted_requests": int(row.granted_requests)}
                 for row in self.pools.itertuples()}
        one = next(iter(pools.values())) if len(pools) == 1 else None
        granted, capacity = float(self.pools["granted_cuft"].sum()), float(self.pools["capacity_cuft"].sum())
        requested = float(self.pools["requested_cuft"].sum())
        return {"clearing_price": one["clearing_price"] if one else None, "granted_cuft": granted,
                "capacity_cuft": capacity, "requested_cuft": requested,
                "fill_ratio": granted / requested if requested else 0.0,
                "requests": int(self.pools["requests"].sum()),
                "granted_requests": int(self.pools["granted_requests"].sum()), "pools": pools}


def clear_round(requests: pd.DataFrame, capacity: float | dict[str, float]) -> RoundResult:
    """Clear one weekly round. `capacity`: one number (every request competes for one pool) or cubic
    feet per storage type (each type clears separately; a type with requests but no entry is an error)."""
    frame = requests.reset_index(drop=True).copy()
    if isinstance(capacity, dict):
        pools = {t: check_capacity(capacity.get(t), t) for t in sorted(frame["storage_type"].unique())}
        for t, value in capacity.items():
            pools.setdefault(t, check_capacity(value, t))
        keys = frame["storage_type"].to_numpy()
    else:
        pools = {"all": check_capacity(capacity)}
        keys = np.full(len(frame), "all", dtype=object)
    frame["pool"] = keys
    frame["cuft_granted"] = 0.0
    frame["fee_per_cuft"] = 0.0
    rows = []
    for pool, cap in pools.items():
        mask = keys == pool
        part = frame if mask.all() else frame.loc[mask]   # one pool: no copy of a million rows
        granted, price = clear_pool(part, cap) if len(part) else (np.zeros(0), math.nan)
        frame.loc[mask, "cuft_granted"] = granted
        frame.loc[mask, "fee_per_cuft"] = np.where(granted > 0, price, 0.0)
        rows.append({"storage_type": pool, "capacity_cuft": cap, "requested_cuft": float(part["cuft_requested"].sum()),
                     "granted_cuft": float(granted.sum()), "clearing_price": price, "requests": int(len(part)),
                     "granted_requests": int((granted > 0).sum())})
    pools_frame = pd.DataFrame(rows)
    pools_frame["fill_ratio"] = np.where(pools_frame["requested_cuft"] > 0,
                                         pools_frame["granted_cuft"] / pools_frame["requested_cuft"].where(
                                             pools_frame["requested_cuft"] > 0, 1.0), 0.0)
    return RoundResult(grants=frame, pools=pools_frame)


def protected_prices(prices: pd.Series) -> pd.Series:
    """Fee per cubic foot of each round after price protection.

    `prices`: clearing price per round of one period and pool, indexed in round order (NaN: nothing
    granted, so no fee to protect against). Each round pays the lowest price of itself and every later
    round: a reverse running minimum, which can only lower a fee."""
    values = prices.to_numpy(dtype="float64")
    reversed_min = np.fmin.accumulate(values[::-1])[::-1]   # fmin skips NaN rounds
    return pd.Series(np.where(np.isnan(values), np.nan, reversed_min), index=prices.index, name="protected_price")


def period_lines(grants: pd.DataFrame) -> pd.DataFrame:
    """Price protection over the granted lines of one period.

    `grants`: round (sortable: the round's date), pool, request_id, seller_id, cuft_granted,
    fee_per_cuft (the round's clearing price). Returns the granted lines with cleared_price,
    protected_price (per pool, see protected_prices) and fee = protected_price x cuft_granted."""
    lines = grants[grants["cuft_granted"] > 0].copy()
    prices = lines.groupby(["pool", "round"])["fee_per_cuft"].min().rename("cleared_price").reset_index()
    prices = prices.sort_values(["pool", "round"])
    prices["protected_price"] = prices.groupby("pool", group_keys=False)["cleared_price"].apply(
        lambda s: protected_prices(s.reset_index(drop=True)).set_axis(s.index))
    lines = lines.drop(columns=["cleared_price", "protected_price"], errors="ignore").merge(prices, on=["pool", "round"])
    lines["fee"] = (lines["protected_price"] * lines["cuft_granted"]).round(2)
    return lines.sort_values(["round", "pool", "request_id"]).reset_index(drop=True)


def settle(lines: pd.DataFrame, incremental: pd.Series, share: float = CREDIT_SHARE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Credits for a closed period. `lines` from period_lines; `incremental`: incremental sales per
    seller_id (absent: 0). Returns (per-seller statements, lines with their share of the credit).

    The credit is computed per seller over the whole period (share x incremental sales, capped at the
    seller's total fee) and spread over its lines in proportion to their fees, so no line's credit
    exceeds its fee either."""
    per_seller = lines.groupby("seller_id").agg(cuft_granted=("cuft_granted", "sum"), fee=("fee", "sum"),
                                                 lines=("request_id", "count")).reset_index()
    per_seller["incremental_sales"] = per_seller["seller_id"].map(incremental).fillna(0.0).astype("float64")
    credit, net = credits(per_seller["fee"], per_seller["incremental_sales"], share)
    per_seller["credit"], per_seller["net_charge"] = credit.round(2), net.round(2)
    lines = lines.merge(per_seller[["seller_id", "fee", "credit"]].rename(columns={"fee": "_seller_fee", "credit": "_seller_credit"}),
                        on="seller_id")
    lines["credit"] = np.where(lines["_seller_fee"] > 0, lines["_seller_credit"] * lines["fee"] / lines["_seller_fee"].where(
        lines["_seller_fee"] > 0, 1.0), 0.0).round(2)
    lines["net_charge"] = np.maximum(lines["fee"] - lines["credit"], 0.0).round(2)
    return per_seller, lines.drop(columns=["_seller_fee", "_seller_credit"])


def credits(fee, incremental_sales, share: float = CREDIT_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Performance credit and net charge: credit = min(share x incremental sales, fee), net = fee - credit."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"credit share must lie in [0, 1], got {share}")
    fee = np.asarray(fee, dtype="float64")
    sales = np.asarray(incremental_sales, dtype="float64")
    if (fee < 0).any() or (sales < 0).any():
        raise ValueError("fees and incremental sales must be >= 0")
    credit = np.minimum(share * sales, fee)
    return credit, np.maximum(fee - credit, 0.0)


def incremental_sales(sales, used_cuft, base_limit_cuft, granted_cuft) -> np.ndarray:
    """Sales attributed to the extra space: the seller's sales in proportion to the part of its occupied
    space that lies above its base limit and within its grant, i.e. each occupied cubic foot sold the
    seller's average sales per cubic foot, and only the extra cubic feet actually used earn credit."""
    sales, used = np.asarray(sales, dtype="float64"), np.asarray(used_cuft, dtype="float64")
    extra_used = np.clip(used - np.asarray(base_limit_cuft, dtype="float64"), 0.0, np.asarray(granted_cuft, dtype="float64"))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(used > 0, sales * extra_used / used, 0.0)


def request_cap(base_limit_cuft) -> np.ndarray:
    """Most extra cubic feet one request may be granted: max(20% of the base limit, 2,000)."""
    return np.maximum(REQUEST_CAP_SHARE * np.asarray(base_limit_cuft, dtype="float64"), REQUEST_CAP_FLOOR)


def base_limits(sellers: pd.DataFrame, cover_days: float = 42.0, floor_cuft: float = 100.0) -> pd.DataFrame:
    """Base limit per seller and storage type for a period.

    `sellers`: seller_id, storage_type, projected_daily_cuft (forecast cube sold per day),
    sell_through (cube sold / (sold + on hand) over the last 13 weeks), aged_share (share of on-hand
    cube older than 90 days). The limit covers `cover_days` of projected sales, scaled by an efficiency
    factor in [0.5, 1.5]: 0.5 + the seller's sell-through percentile within its storage type, times
    (1 - aged share / 2). Everything else equal, a seller that turns its space faster or holds less
    aged stock gets more."""
    frame = sellers.copy()
    pct = frame.groupby("storage_type")["sell_through"].rank(pct=True, method="average")
    frame["efficiency"] = np.clip((0.5 + pct) * (1.0 - 0.5 * frame["aged_share"].clip(0, 1)), 0.5, 1.5)
    frame["base_limit_cuft"] = np.maximum(floor_cuft, np.round(
        frame["projected_daily_cuft"].clip(lower=0) * cover_days * frame["efficiency"], 1))
    frame["request_cap_cuft"] = request_cap(frame["base_limit_cuft"])
    return frame


def program_capacity(facilities: pd.DataFrame, capacity_prices: pd.DataFrame, base_share: pd.Series,
                     already_granted: dict[str, float] | None = None, buffer: float = SAFETY_BUFFER) -> dict[str, float]:
    """Cubic feet the round can offer per storage type.

    Free storage = sum over facilities of capacity x max(0, 1 - buffer - utilisation), utilisation from
    placement's capacity_prices (resource = storage); split across storage types by their share of base
    limits; minus what earlier rounds of the period already granted (never below zero)."""
    if not 0.0 <= buffer < 1.0:
        raise CapacityError(f"safety buffer must lie in [0, 1), got {buffer}")
    storage = capacity_prices[capacity_prices["resource"] == "storage"][["facility_id", "utilisation"]]
    joined = facilities[["facility_id", "storage_capacity_cuft"]].merge(storage, on="facility_id", how="inner")
    if joined.empty:
        raise CapacityError("program capacity is missing: no facility has a storage utilisation in capacity_prices")
    bad = joined[~np.isfinite(joined["utilisation"].astype(float)) | (joined["utilisation"] < 0)]
    if len(bad):
        raise CapacityError(f"storage utilisation missing or negative for facilities {bad['facility_id'].tolist()[:5]}")
    free = float((joined["storage_capacity_cuft"] * np.clip(1.0 - buffer - joined["utilisation"], 0.0, None)).sum())
    shares = base_share / base_share.sum() if base_share.sum() > 0 else base_share * 0 + 1.0 / len(base_share)
    granted = already_granted or {}
    return {t: check_capacity(max(0.0, round(free * float(s), 1) - granted.get(t, 0.0)), t) for t, s in shares.items()}


def storage_type_of(cube_cuft) -> np.ndarray:
    return np.where(np.asarray(cube_cuft, dtype="float64") > OVERSIZE_CUFT, "oversize", "standard")
