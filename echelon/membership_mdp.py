"""The membership choice problem as a discrete MDP, shared by the world (jobs) and the estimators (models).

Members choose each month between three plans: ACTIONS = none (the anchor, reward 0 in every state),
monthly, annual. The state of a customer in a month is the product of five small factors:

  segment   urban/rural x digital/shipping-heavy (fixed)
  status    none | monthly | annual with k months left on a term paid up front (k = 0..11; k = 0: the
            term ended, choosing annual renews it)
  tenure    band 0 (never a member), 1 (1-11 member months), 2 (12+); a member month moves band 0 to
            1 and band 1 to 2 with probability `tenure_up`
  usage     last month's high/low use of each benefit (shipping, video, music, grocery): 16 combinations,
            each benefit an exogenous two-state Markov chain per segment
  cell      the (monthly, annual) price pair the customer was offered (a price test in the world)

`Space(cells)` enumerates these states (4 x 14 x 3 x 16 x cells), `transitions` builds one sparse matrix
per action, and `soft_bellman` solves the entropy-regularised Bellman equation exactly
(V(s) = log sum_a exp Q(s,a), Q = r + beta P_a V), so the truth and every counterfactual re-solve are
exact while the estimators (models/membership) stay neural.

The contract (what the business knows, not what members value): an annual term costs its price up front
and can be cancelled with a refund of REFUND of the unused months. So that the anchor's reward is exactly
zero in every state, the refund is carried in the annual actions' money by potential-based shaping with
Phi(annual, k) = REFUND * price_annual * k / 12 (Ng, Harada & Russell 1999: the same choices as a cash
refund at cancellation): `money(space, beta)` is that shaped money per (state, action), and `cash` the
actual revenue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

ACTIONS = ("none", "monthly", "annual")
ANCHOR = 0
SEGMENTS = ("urban_digital", "urban_shipping", "rural_digital", "rural_shipping")
BENEFITS = ("shipping", "video", "music", "grocery")
TERM = 12
STATUSES = 2 + TERM          # none, monthly, annual k=0..11
TENURES = 3
REFUND = 0.5                 # share of the unused months' price refunded at cancellation
STATE_COLUMNS = ("segment", "plan", "months_left", "tenure_band", *[f"{b}_use" for b in BENEFITS],
                 "price_monthly", "price_annual")


class MembershipError(ValueError):
    """Bad membership input (a panel, a scenario, a fit that is not identified): the message says what and where."""


@dataclass(frozen=True)
class Dynamics:
    """The exogenous parts of the transitions: usage chains (segment x benefit x from x to) and tenure."""
    usage: np.ndarray          # (4, 4, 2, 2) row-stochastic
    tenure_up: float = 1 / 11


def status_of(plan: str, months_left: int) -> int:
    return {"none": 0, "monthly": 1}.get(plan, 2 + int(months_left))


def next_status(status: np.ndarray, action: int) -> np.ndarray:
    status = np.asarray(status)
    if action == 0:
        return np.zeros_like(status)
    if action == 1:
        return np.ones_like(status)
    in_term = status >= 3                                    # annual with k >= 1 months left: continue
    return np.where(in_term, status - 1, 2 + TERM - 1)       # otherwise buy or renew: 11 months left after this one


class Space:
    """Every state of the given price cells, as flat indices and as a frame of state columns."""

    def __init__(self, cells: list[tuple[float, float]]):
        self.cells = [(float(m), float(a)) for m, a in cells]
        self.shape = (len(SEGMENTS), STATUSES, TENURES, 16, len(self.cells))
        self.n = int(np.prod(self.shape))
        self.segment, self.status, self.tenure, self.usage, self.cell = np.unravel_index(np.arange(self.n), self.shape)
        prices = np.array(self.cells)
        self.price_monthly, self.price_annual = prices[self.cell, 0], prices[self.cell, 1]

    def index(self, segment, status, tenure, usage, cell) -> np.ndarray:
        return np.ravel_multi_index((segment, status, tenure, usage, cell), self.shape)

    def uses(self, usage: np.ndarray | None = None) -> np.ndarray:
        """(n, 4) 0/1 high use of each benefit."""
        usage = self.usage if usage is None else np.asarray(usage)
        return ((usage[:, None] >> np.arange(len(BENEFITS))) & 1).astype(float)

    def frame(self) -> pd.DataFrame:
        plan = np.where(self.status == 0, "none", np.where(self.status == 1, "monthly", "annual"))
        frame = pd.DataFrame({"segment": np.array(SEGMENTS)[self.segment], "plan": plan,
                              "months_left": np.maximum(self.status - 2, 0), "tenure_band": self.tenure})
        for j, b in enumerate(BENEFITS):
            frame[f"{b}_use"] = self.uses()[:, j].astype(int)
        frame["price_monthly"], frame["price_annual"] = self.price_monthly, self.price_annual
        return frame

    def locate(self, frame: pd.DataFrame, cell: np.ndarray | None = None) -> np.ndarray:
        """Flat state indices of panel rows (state columns); `cell` defaults to matching their prices."""
        segment = pd.Categorical(frame["segment"], categories=SEGMENTS).codes
        status = np.array([status_of(p, k) for p, k in zip(frame["plan"], frame["months_left"])])
        usage = sum(frame[f"{b}_use"].to_numpy().astype(int) << j for j, b in enumerate(BENEFITS))
        if cell is None:
            lookup = {c: i for i, c in enumerate(self.cells)}
            cell = np.array([lookup[(float(m), float(a))] for m, a in zip(frame["price_monthly"], frame["price_annual"])])
        return self.index(segment, status, frame["tenure_band"].to_numpy().astype(int), usage, cell)


def usage_chain(segment: int, dynamics: Dynamics) -> np.ndarray:
    """(16, 16) transition of the joint usage of one segment (benefits independent)."""
    joint = np.ones((1, 1))
    for b in reversed(range(len(BENEFITS))):       # bit j of the usage index is benefit j: kron from the top bit
        joint = np.kron(joint, dynamics.usage[segment, b])
    return joint


def transitions(space: Space, dynamics: Dynamics) -> list[sparse.csr_matrix]:
    """One (n x n) row-stochastic sparse matrix per action."""
    chains = np.stack([usage_chain(g, dynamics) for g in range(len(SEGMENTS))])   # (4, 16, 16)
    matrices = []
    for action in range(len(ACTIONS)):
        rows, cols, vals = [], [], []
        status = next_status(space.status, action)
        if action == ANCHOR:
            tenure_moves = [(space.tenure, np.ones(space.n))]
        else:
            up = np.minimum(space.tenure + 1, TENURES - 1)
            p_up = np.where(space.tenure == 0, 1.0, np.where(space.tenure == 1, dynamics.tenure_up, 0.0))
            tenure_moves = [(space.tenure, 1 - p_up), (up, p_up)]
        for tenure, p_tenure in tenure_moves:
            for u_next in range(16):
                p = p_tenure * chains[space.segment, space.usage, u_next]
                keep = p > 0
                rows.append(np.arange(space.n)[keep])
                cols.append(space.index(space.segment[keep], status[keep], tenure[keep],
                                        np.full(keep.sum(), u_next), space.cell[keep]))
                vals.append(p[keep])
        matrices.append(sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                          shape=(space.n, space.n)))
    return matrices


def money(space: Space, beta: float, prices: tuple[float, float] | None = None) -> np.ndarray:
    """(n, 3) the money of each action in the shaped units the reward is written in (see the module doc);
    `prices` (monthly, annual) replaces every state's own cell prices (a counterfactual)."""
    pm, pa = (space.price_monthly, space.price_annual) if prices is None else \
        (np.full(space.n, float(prices[0])), np.full(space.n, float(prices[1])))
    k = np.maximum(space.status - 2, 0)
    in_term = space.status >= 3
    out = np.zeros((space.n, len(ACTIONS)))
    out[:, 1] = pm
    purchase = pa * (1 - beta * REFUND * (TERM - 1) / TERM)
    keep_on = REFUND * pa * (k - beta * (k - 1)) / TERM
    out[:, 2] = np.where(in_term, keep_on, purchase)
    return out


def cash(space: Space, prices: tuple[float, float] | None = None) -> np.ndarray:
    """(n, 3) revenue of each action in each state: monthly pays its price, an annual purchase or renewal
    its price up front, and leaving an annual term (none or monthly) refunds REFUND of its unused months
    (booked against the annual plan by `plan_revenue`)."""
    pm, pa = (space.price_monthly, space.price_annual) if prices is None else \
        (np.full(space.n, float(prices[0])), np.full(space.n, float(prices[1])))
    k = np.maximum(space.status - 2, 0)
    in_term = space.status >= 3
    refund = np.where(in_term, REFUND * pa * k / TERM, 0.0)
    out = np.zeros((space.n, len(ACTIONS)))
    out[:, 0] = -refund
    out[:, 1] = pm - refund
    out[:, 2] = np.where(in_term, 0.0, pa)
    return out


def soft_bellman(reward: np.ndarray, P: list, beta: float, tol: float = 1e-10, max_iter: int = 5000,
                 V0: np.ndarray | None = None):
    """Exact solve of V(s) = log sum_a exp(r(s,a) + beta E[V(s')|s,a]) by value iteration (a beta-contraction),
    from V0 (zero by default; a nearby problem's V saves iterations). Returns V (n,), Q (n, A), pi (n, A)."""
    if not 0 <= beta < 1:
        raise MembershipError(f"beta must be in [0, 1), got {beta}")
    V = np.zeros(reward.shape[0]) if V0 is None else np.asarray(V0, dtype=float).copy()
    for _ in range(max_iter):
        Q = reward + beta * np.column_stack([p @ V for p in P])
        top = Q.max(axis=1)
        V_new = top + np.log(np.exp(Q - top[:, None]).sum(axis=1))
        if np.max(np.abs(V_new - V)) < tol:
            V = V_new
            break
        V = V_new
    Q = reward + beta * np.column_stack([p @ V for p in P])
    pi = np.exp(Q - V[:, None])
    return V, Q, pi / pi.sum(axis=1, keepdims=True)


def propagate(d0: np.ndarray, pi: np.ndarray, P: list, months: int) -> list[np.ndarray]:
    """The state distribution of each of `months` months, starting from d0, under policy pi."""
    out, d = [], np.asarray(d0, dtype=float)
    for _ in range(months):
        out.append(d)
        d = sum(P[a].T @ (d * pi[:, a]) for a in range(pi.shape[1]))
    return out


def estimate_dynamics(transitions_frame: pd.DataFrame, prior: float = 1.0) -> Dynamics:
    """Usage chains and the tenure promotion rate counted from observed transitions (rows with a next
    state), with `prior` pseudo-counts so an unseen move is not impossible."""
    rows = transitions_frame.dropna(subset=["next_plan"])
    segment = pd.Categorical(rows["segment"], categories=SEGMENTS).codes
    usage = np.full((len(SEGMENTS), len(BENEFITS), 2, 2), prior)
    for j, b in enumerate(BENEFITS):
        np.add.at(usage[:, j], (segment, rows[f"{b}_use"].to_numpy().astype(int),
                                rows[f"next_{b}_use"].to_numpy().astype(int)), 1.0)
    usage /= usage.sum(axis=-1, keepdims=True)
    band1 = rows[(rows["tenure_band"] == 1) & (rows["action"] != ACTIONS[ANCHOR])]
    up = (band1["next_tenure_band"] == 2).sum() + prior
    return Dynamics(usage=usage, tenure_up=float(up / (len(band1) + 2 * prior)))


def features(frame: pd.DataFrame) -> np.ndarray:
    """The estimators' inputs from state columns (a panel, a transitions table or Space.frame())."""
    segment = frame["segment"].astype(str)
    plan = frame["plan"].astype(str).to_numpy()
    k = frame["months_left"].to_numpy().astype(int)
    status = np.where(plan == "none", 0, np.where(plan == "monthly", 1, 2 + k))
    cols = [segment.str.startswith("urban"), segment.str.endswith("digital"), *_status_block(status).T,
            frame["tenure_band"] == 1, frame["tenure_band"] == 2, *[frame[f"{b}_use"] for b in BENEFITS],
            (frame["price_monthly"].astype(float) - 15.0) / 2.0, (frame["price_annual"].astype(float) - 119.0) / 20.0]
    return np.column_stack([np.asarray(c, dtype=np.float32) for c in cols]).astype(np.float32)


STATUS_FEATURES = slice(2, 7)     # the columns of `features` that encode the status (plan, months left)


def _status_block(status: np.ndarray) -> np.ndarray:
    """(n, 5) the status columns of `features`: none, monthly, annual in term, annual term ended, months left / 11."""
    status = np.asarray(status)
    k = np.maximum(status - 2, 0)
    return np.column_stack([status == 0, status == 1, status >= 3, status == 2, k / (TERM - 1)]).astype(np.float32)


def post_decision(x: np.ndarray, actions) -> np.ndarray:
    """The features of the post-decision state of (s, a): s's features with its status replaced by the status
    the action leads to (the contract: none, monthly, or the annual term bought or continued), and a last
    column 1 for a member action (tenure accrues). The next month's state depends on (s, a) only through it,
    which is what `transitions` assumes too, so the Q and R stages regress on it: an expectation learned
    from the plans members did choose then holds in every state, e.g. for cancelling mid-term."""
    x = np.asarray(x, dtype=np.float32)
    actions = np.broadcast_to(np.asarray(actions), (len(x),))
    k = np.rint(x[:, 6] * (TERM - 1)).astype(int)
    status = np.where(x[:, 2] > 0.5, 0, np.where(x[:, 3] > 0.5, 1, 2 + k))
    after = np.choose(actions, [next_status(status, a) for a in range(len(ACTIONS))])
    out = x.copy()
    out[:, STATUS_FEATURES] = _status_block(after)
    return np.hstack([out, (actions != ANCHOR).astype(np.float32)[:, None]])


def attach_next(panel: pd.DataFrame) -> pd.DataFrame:
    """The panel with each row's next month's state as next_* columns (null in a customer's last month):
    the pandas twin of the Spark job jobs/membership/features.py, for tools and tests without Spark."""
    panel = panel.sort_values(["customer_id", "month"]).reset_index(drop=True)
    following = panel.groupby("customer_id")[list(STATE_COLUMNS)].shift(-1)
    return panel.join(following.add_prefix("next_"))
