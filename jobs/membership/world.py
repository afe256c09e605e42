"""The synthetic membership world, where the truth is known: customers, their true reward, and a monthly
panel of choices drawn from the true dynamic-logit policy (the exact soft-Bellman solution).

The true reward of a member action in state s (segment g, tenure band t, usage u), in utility units:
    alpha_g * (BASE + sum_b VALUE[g, b] * u_b - money(s, a)) + HABIT[t] - JOIN (from none) - SWITCH (between plans)
and 0 for not being a member (the anchor). VALUE[g, b] is the dollars a month that high use of benefit b
is worth to segment g (shipping-heavy segments value shipping and grocery; digital-heavy ones video and
music); alpha_g turns dollars into utility. Customers are offered one of nine (monthly, annual) price
cells at random (a price test), so the price response is identified from the data.

`simulate(ds, seed, customers, months)` writes the panel ending at ds's month; the same seed gives the same
panel, and customer ids carry the seed, so a world of another seed is made of customers never seen.
"""
from __future__ import annotations

import argparse
import functools
import logging

import numpy as np
import pandas as pd

from echelon import lake
from echelon.catalog.membership import PANEL
from echelon.membership_mdp import (ACTIONS, BENEFITS, SEGMENTS, Dynamics, Space, cash, money, next_status,
                                    soft_bellman, transitions)

log = logging.getLogger(__name__)

BETA = 0.95
CELLS = [(m, a) for m in (12.99, 14.99, 16.99) for a in (99.0, 119.0, 139.0)]
STATUS_QUO = (14.99, 119.0)
ALPHA = np.array([0.30, 0.25, 0.35, 0.28])                 # utility per dollar, by segment
BASE = 6.0                                                 # dollars a month any member gets
VALUE = np.array([[3.0, 7.0, 4.0, 2.0],                    # urban_digital:  shipping, video, music, grocery
                  [9.0, 2.0, 1.0, 4.0],                    # urban_shipping
                  [4.0, 6.0, 3.0, 0.5],                    # rural_digital
                  [11.0, 1.0, 0.5, 0.5]])                  # rural_shipping
HABIT = np.array([0.0, 0.3, 0.6])
JOIN, SWITCH = 1.0, 0.4
SEGMENT_SHARES = np.array([0.3, 0.25, 0.2, 0.25])
HIGH_USE = np.array([[0.35, 0.6, 0.5, 0.2], [0.6, 0.25, 0.2, 0.4],     # stationary share of high use
                     [0.35, 0.6, 0.5, 0.15], [0.6, 0.25, 0.2, 0.15]])
STAY_HIGH = 0.85


def dynamics() -> Dynamics:
    usage = np.zeros((len(SEGMENTS), len(BENEFITS), 2, 2))
    low_to_high = (1 - STAY_HIGH) * HIGH_USE / (1 - HIGH_USE)       # keeps HIGH_USE stationary
    usage[..., 1, 1], usage[..., 1, 0] = STAY_HIGH, 1 - STAY_HIGH
    usage[..., 0, 1], usage[..., 0, 0] = low_to_high, 1 - low_to_high
    return Dynamics(usage=usage)


def true_reward(space: Space, beta: float = BETA, prices: tuple[float, float] | None = None,
                extra_dollars: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) the true reward; `prices` and `extra_dollars` (per state, added to member actions) make a
    counterfactual."""
    g = space.segment
    alpha = ALPHA[g]
    benefit = BASE + (space.uses() * VALUE[g]).sum(axis=1) + (0.0 if extra_dollars is None else extra_dollars)
    pay = money(space, beta, prices)
    reward = np.zeros((space.n, len(ACTIONS)))
    member_status = space.status >= 1
    for a in (1, 2):
        switching = np.where(space.status == 0, JOIN, 0.0)
        changes_plan = (space.status >= 2) if a == 1 else (space.status == 1)
        switching = switching + np.where(changes_plan & member_status, SWITCH, 0.0)
        reward[:, a] = alpha * (benefit - pay[:, a]) + HABIT[space.tenure] - switching
    return reward


@functools.lru_cache(maxsize=1)
def true_policy() -> np.ndarray:
    """(n, 3) the true dynamic-logit policy on Space(CELLS), solved once per process (a 24,192-state soft
    Bellman solve: seconds; every panel and test world draws from it). Read-only."""
    space = Space(CELLS)
    pi = soft_bellman(true_reward(space), transitions(space, dynamics()), BETA)[2]
    pi.setflags(write=False)
    return pi


def panel(seed: int, customers: int, months: int, end_month: str, burn_in: int = 24) -> pd.DataFrame:
    """`months` months of choices of `customers` customers, the last in the month of end_month."""
    rng = np.random.default_rng(seed)
    space = Space(CELLS)
    dyn = dynamics()
    pi = true_policy()
    segment = rng.choice(len(SEGMENTS), size=customers, p=SEGMENT_SHARES)
    cell = rng.integers(len(CELLS), size=customers)
    uses = (rng.random((customers, len(BENEFITS))) < HIGH_USE[segment]).astype(int)
    status, tenure = np.zeros(customers, dtype=int), np.zeros(customers, dtype=int)
    first = pd.Timestamp(end_month).to_period("M") - (months - 1)
    frames = []
    for t in range(burn_in + months):
        usage = (uses << np.arange(len(BENEFITS))).sum(axis=1)
        index = space.index(segment, status, tenure, usage, cell)
        p = pi[index]
        action = (rng.random(customers)[:, None] > p.cumsum(axis=1)).sum(axis=1).clip(0, len(ACTIONS) - 1)
        if t >= burn_in:
            frame = space.frame().iloc[index].reset_index(drop=True)
            frame.insert(0, "customer_id", [f"m{seed}-{i:06d}" for i in range(customers)])
            frame.insert(1, "month", str((first + (t - burn_in)).to_timestamp().date()))
            frame["action"] = np.array(ACTIONS)[action]
            frame["paid"] = np.round(cash(space)[index, action], 2) + 0.0
            frames.append(frame)
        member = action != 0
        p_up = np.where(tenure == 0, 1.0, np.where(tenure == 1, dyn.tenure_up, 0.0))
        tenure = np.where(member & (rng.random(customers) < p_up), np.minimum(tenure + 1, 2), tenure)
        status = np.choose(action, [next_status(status, a) for a in range(len(ACTIONS))])
        chain = dyn.usage[segment[:, None], np.arange(len(BENEFITS))[None, :], uses]      # (customers, 4, 2)
        uses = (rng.random((customers, len(BENEFITS))) < chain[..., 1]).astype(int)
    return pd.concat(frames, ignore_index=True)


def simulate(ds: str, seed: int = 1, customers: int = 3000, months: int = 24) -> dict:
    """Write the panel ending at ds's month to the source table (as the membership system's extract)."""
    ds = lake.parse_ds(ds)
    frame = panel(seed, customers, months, ds)
    manifest = lake.publish(frame, PANEL, ds, extra={"seed": seed, "customers": customers, "months": months})
    log.info("membership world seed %d: %d customers x %d months -> %s ds=%s", seed, customers, months, PANEL, ds)
    return {"ds": ds, "rows": manifest["rows"], "seed": seed, "customers": customers, "months": months}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds", required=True, help="the panel's last month is the month of this date")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
