"""Market simulation: the same sellers under three ways of handing out a round's extra space.

Each seller agent has, privately: a need for extra space this period (launches, campaigns the
platform cannot see), the sales each used cubic foot makes (productivity), and a value per cubic
foot = margin x productivity. It knows its own need only roughly (a noisy signal).

- mechanism:  requests at the seller's value, uniform price = lowest granted fee, credits of 15% of
              the incremental sales, capped at the fee (models/capacity/mechanism.py);
- forecast:   the platform splits the space by its own forecast of each seller's need, which sees
              only the seller's history (base limit), not its plans; no fee;
- pay_as_bid: the same ranking, but each seller pays its own bid, so sellers shade their bids by
              how much they guess the price will be below their value, which scrambles the ranking.
Space beyond a seller's true need sits idle and sells nothing. Reported per variant: space
productivity (sales per allocated cubic foot), sellers' surplus (value of used space - fees + credits),
net fees, the share of granted sellers who pay nothing after credits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from echelon.models.capacity.mechanism import CREDIT_SHARE, clear_pool, credits, request_cap

MARGIN = 0.30
PERIOD_DAYS = 30


def agents_from_limits(limits: pd.DataFrame) -> pd.DataFrame:
    """One agent per seller and storage type with a base limit."""
    frame = limits[["seller_id", "storage_type", "base_limit_cuft"]].copy()
    sales = limits["projected_daily_sales"] if "projected_daily_sales" in limits else limits["base_limit_cuft"] * 2.0
    frame["sales_per_cuft"] = (sales * PERIOD_DAYS / limits["base_limit_cuft"].clip(lower=1.0)).clip(lower=0.5)
    return frame.reset_index(drop=True)


def synthetic_agents(n: int, seed: int) -> pd.DataFrame:
    """Agents without a lake: base limits log-normal around 5,000 cuft, sales per cuft around $25/month."""
    rng = np.random.default_rng([seed, 99])
    return pd.DataFrame({"seller_id": [f"S{k:06d}" for k in range(n)], "storage_type": "standard",
                         "base_limit_cuft": np.round(rng.lognormal(np.log(5000.0), 1.0, n), 1),
                         "sales_per_cuft": rng.lognormal(np.log(25.0), 0.4, n)})


def draw(agents: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Private need, productivity and value; the seller's noisy view of its need; the platform's forecast."""
    rng = np.random.default_rng([seed, 7])
    n = len(agents)
    a = agents.copy()
    base = a["base_limit_cuft"].to_numpy(dtype="float64")
    a["need_cuft"] = base * rng.lognormal(np.log(0.15), 0.8, n)
    a["productivity"] = a["sales_per_cuft"].to_numpy() * rng.lognormal(0.0, 0.6, n)
    a["value_per_cuft"] = MARGIN * a["productivity"]
    a["asked_cuft"] = np.minimum(a["need_cuft"] * rng.lognormal(0.0, 0.25, n), request_cap(base))
    a["forecast_cuft"] = base * 0.15 * rng.lognormal(0.0, 0.3, n)   # sees history, not plans
    a["shade"] = rng.uniform(0.5, 0.95, n)
    a["submitted_at"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 7 * 86400, n), unit="s")
    a["request_id"] = [f"q{k:07d}" for k in range(n)]
    return a


def _outcome(a: pd.DataFrame, granted: np.ndarray, unit_fee: np.ndarray, credit_share: float) -> dict:
    used = np.minimum(granted, a["need_cuft"].to_numpy())
    sales = used * a["productivity"].to_numpy()
    fee = unit_fee * granted
    credit, net = credits(fee, sales, credit_share) if credit_share else (np.zeros_like(fee), fee)
    surplus = used * a["value_per_cuft"].to_numpy() - net
    got = granted > 0
    return {"allocated_cuft": granted.sum(), "used_share": used.sum() / max(granted.sum(), 1e-9),
            "sales_per_cuft": sales.sum() / max(granted.sum(), 1e-9), "seller_surplus": surplus.sum(),
            "net_fees": net.sum(), "granted_sellers": int(got.sum()),
            "share_paying_zero": float((net[got] <= 1e-9).mean()) if got.any() else 0.0}


def simulate(agents: pd.DataFrame, capacity: float, seed: int, credit_share: float = CREDIT_SHARE) -> pd.DataFrame:
    a = draw(agents, seed)
    rows = []
    bids = a.assign(max_fee_per_cuft=a["value_per_cuft"], cuft_requested=a["asked_cuft"])
    granted, price = clear_pool(bids, capacity)
    rows.append({"variant": "mechanism", **_outcome(a, granted, np.where(granted > 0, price, 0.0), credit_share)})
    forecast = a["forecast_cuft"].to_numpy()
    scale = min(1.0, capacity / forecast.sum()) if forecast.sum() > 0 else 0.0
    rows.append({"variant": "forecast", **_outcome(a, forecast * scale, np.zeros(len(a)), 0.0)})
    shaded = a.assign(max_fee_per_cuft=a["value_per_cuft"] * a["shade"], cuft_requested=a["asked_cuft"])
    granted, _ = clear_pool(shaded, capacity)
    rows.append({"variant": "pay_as_bid", **_outcome(a, granted, shaded["max_fee_per_cuft"].to_numpy(), credit_share)})
    return pd.DataFrame(rows).assign(seed=seed, agents=len(a), capacity_cuft=capacity)


SCARCITY = 0.6


def compare(agents: pd.DataFrame, capacity: float, seeds=(1, 2, 3), detail: bool = False) -> pd.DataFrame:
    """Mean over seeds per variant (or every seed's rows with detail=True). The rules differ only when
    space is scarce, so capacity is capped at SCARCITY x the sellers' total need (first seed's draw)."""
    capacity = min(float(capacity), SCARCITY * float(draw(agents, seeds[0])["need_cuft"].sum()))
    runs = pd.concat([simulate(agents, capacity, s) for s in seeds], ignore_index=True)
    if detail:
        return runs
    means = runs.drop(columns=["seed"]).groupby("variant", sort=False).mean().reset_index()
    return means.assign(seeds=",".join(map(str, seeds)))
