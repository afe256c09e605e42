"""Counterfactual plan shares: a scenario (prices, benefits) -> re-solve the choices under a reward -> the
shares of annual, monthly and none and the revenue, by segment, over the next months.

A scenario file (JSON or YAML):
    name: annual_price_cut
    prices: {monthly: 14.99, annual: 99.0}          # both plans, each a non-negative number
    benefits:                                        # optional
      - {change: add, benefit: live_tv, segment: urban_digital, dollars: 3.0}   # a new benefit, $/member-month
      - {change: value, benefit: video, segment: all, dollars: 1.5}             # high users value it $1.5 more
      - {change: remove, benefit: music, segment: rural_digital}               # its value is lost

The estimated reward answers a scenario structurally: reward is linear in money with a price sensitivity
alpha_g per segment (Deep PQR's: the alpha that best explains the choices in the price cells the panel saw
when its status-quo reward is moved there this same way, `calibrate_price_sensitivity`; the static logit's:
its reward's slope across those cells, `price_sensitivity`), so
r_scn = r(status-quo prices) - alpha_g * (money at the scenario prices - money at the status quo) +
alpha_g * (dollars the scenario's benefits add); the policy is then re-solved exactly (soft Bellman) with
the transitions estimated from the panel. The static logit answers with beta = 0 (no re-solve: softmax
of its myopic reward), behaviour cloning with its policy at the scenario's prices (no answer to benefits).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.membership_mdp import (ACTIONS, BENEFITS, SEGMENTS, MembershipError, Space, cash, money, propagate,
                                    soft_bellman)

CHANGES = ("add", "value", "remove")
HORIZON = 24


@dataclass(frozen=True)
class Scenario:
    name: str
    prices: tuple[float, float]                         # monthly, annual
    benefits: tuple[dict, ...] = field(default=())


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; every problem is one MembershipError naming the file."""
    path = Path(path)
    if not path.exists():
        raise MembershipError(f"scenario file {path} does not exist")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(path.read_text())
        else:
            raw = json.loads(path.read_text())
    except Exception as error:   # a parse error of either format: one line, the file named
        raise MembershipError(f"scenario file {path}: cannot be read as {path.suffix.lstrip('.') or 'JSON'}: "
                              f"{str(error).splitlines()[0]}") from None
    return check_scenario(raw, where=f"scenario file {path}", default_name=path.stem)


def check_scenario(raw, where: str, default_name: str = "scenario") -> Scenario:
    if not isinstance(raw, dict):
        raise MembershipError(f"{where}: expected a mapping with 'prices' (and 'benefits'), got {type(raw).__name__}")
    unknown = set(raw) - {"name", "prices", "benefits", "description"}
    if unknown:
        raise MembershipError(f"{where}: unknown keys {sorted(unknown)}; a scenario has name, prices, benefits")
    prices = raw.get("prices")
    if not isinstance(prices, dict):
        raise MembershipError(f"{where}: 'prices' is missing; give the price of each plan: {{monthly: ..., annual: ...}}")
    plans = [a for a in ACTIONS if a != "none"]
    extra = set(prices) - set(plans)
    if extra:
        raise MembershipError(f"{where}: unknown plan(s) {sorted(extra)} in prices; the plans are {plans}")
    checked = []
    for plan in plans:
        value = prices.get(plan)
        if value is None:
            raise MembershipError(f"{where}: the price of plan {plan!r} is missing")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise MembershipError(f"{where}: the price of plan {plan!r} must be a non-negative number, got {value!r}")
        checked.append(float(value))
    benefits = raw.get("benefits") or []
    if not isinstance(benefits, list):
        raise MembershipError(f"{where}: 'benefits' must be a list of changes")
    out = []
    for i, change in enumerate(benefits):
        at = f"{where}: benefits[{i}]"
        if not isinstance(change, dict):
            raise MembershipError(f"{at}: expected a mapping, got {change!r}")
        kind, benefit, segment = change.get("change"), change.get("benefit"), change.get("segment", "all")
        if kind not in CHANGES:
            raise MembershipError(f"{at}: unknown change {kind!r}; one of {list(CHANGES)}")
        if not isinstance(benefit, str) or not benefit:
            raise MembershipError(f"{at}: 'benefit' is missing")
        if kind != "add" and benefit not in BENEFITS:
            raise MembershipError(f"{at}: unknown benefit {benefit!r}; the benefits are {list(BENEFITS)} "
                                  f"(a new one is added with change: add)")
        if kind == "add" and benefit in BENEFITS:
            raise MembershipError(f"{at}: benefit {benefit!r} exists already; change its value with change: value")
        if segment != "all" and segment not in SEGMENTS:
            raise MembershipError(f"{at}: unknown segment {segment!r}; one of {list(SEGMENTS)} or 'all'")
        dollars = change.get("dollars", 0.0 if kind == "remove" else None)
        if isinstance(dollars, bool) or not isinstance(dollars, (int, float)) or not math.isfinite(dollars):
            raise MembershipError(f"{at}: 'dollars' (value per member-month) must be a number, got {dollars!r}")
        out.append({"change": kind, "benefit": benefit, "segment": segment, "dollars": float(dollars)})
    return Scenario(str(raw.get("name") or default_name), tuple(checked), tuple(out))


def benefit_dollars(space: Space, scenario: Scenario, values: np.ndarray) -> np.ndarray:
    """(n,) dollars a member-month the scenario's benefit changes add in each state; `values` (4 segments x
    4 benefits) is the value of high use of each benefit (the truth's, or the estimate's)."""
    out = np.zeros(space.n)
    uses = space.uses()
    for change in scenario.benefits:
        hit = np.ones(space.n, bool) if change["segment"] == "all" else space.segment == SEGMENTS.index(change["segment"])
        if change["change"] == "add":
            out += np.where(hit, change["dollars"], 0.0)
        else:
            j = BENEFITS.index(change["benefit"])
            delta = change["dollars"] if change["change"] == "value" else -values[space.segment, j]
            out += np.where(hit, delta * uses[:, j], 0.0)
    return out


def price_sensitivity(reward: np.ndarray, space: Space, beta: float, weight: np.ndarray | None = None) -> np.ndarray:
    """(4,) alpha_g: minus the slope of the member actions' reward on their money across the price cells,
    within each (segment, status, tenure, usage) state (the cells vary only the prices), by segment."""
    pay = money(space, beta)
    weight = np.ones(space.n) if weight is None else weight
    key = np.ravel_multi_index((space.segment, space.status, space.tenure, space.usage), space.shape[:4])
    alpha = np.zeros(len(SEGMENTS))
    num, den = np.zeros(len(SEGMENTS)), np.zeros(len(SEGMENTS))
    for a in (1, 2):
        frame = pd.DataFrame({"key": key, "r": reward[:, a], "m": pay[:, a], "w": weight})
        frame["r"] -= frame.groupby("key")["r"].transform("mean")
        frame["m"] -= frame.groupby("key")["m"].transform("mean")
        np.add.at(num, space.segment, (frame["w"] * frame["r"] * frame["m"]).to_numpy())
        np.add.at(den, space.segment, (frame["w"] * frame["m"] ** 2).to_numpy())
    alpha = -num / np.maximum(den, 1e-12)
    return alpha


def calibrate_price_sensitivity(base: np.ndarray, cells: list, status_quo: tuple[float, float], beta: float, P: list,
                                choices: np.ndarray, start: np.ndarray) -> np.ndarray:
    """(4,) alpha_g by the price test itself: the alpha for which the reward at status-quo prices (`base`, on
    Space([status_quo])), moved to each price cell the panel saw the way a scenario moves it
    (`scenario_reward`: -alpha_g times the change in money) and re-solved under P (transitions of
    Space(cells)), best explains the panel's choices there (`choices`: (n, 3) counts per state of
    Space(cells)); segments do not interact, so one re-solve scores every segment's alpha at once. Maximised
    per segment by two rounds of a parabola through three log-likelihoods, from `start` (the slope reading).

    Why not the slope reading (`price_sensitivity`) alone: it reads alpha off the reward's slope across the
    cells, and the annual purchase's reward is Q(s, annual) less beta E[Q(s', a0) - log pi(a0|s')] at s' = the
    first month of the new term, where nobody cancels (the true probability ~1e-7; none of 3,000 customers
    cancels with 6+ months left), so how log pi(a0|s') moves with the annual price is the P network's
    extrapolation. On the benchmark world (seed 1) the P stage's slope there is 0.31 per $20 against the
    truth's 0.51; with the true policy put in that one status alone, pqr_exact's alpha goes from
    0.330 / 0.289 / 0.402 / 0.349 to 0.315 / 0.255 / 0.353 / 0.292 (true 0.30 / 0.25 / 0.35 / 0.28). The
    choices across cells identify alpha without that extrapolation: 0.316 / 0.237 / 0.349 / 0.275 here."""
    space, one = Space(cells), Space([status_quo])
    start = np.clip(np.asarray(start, dtype=float), 0.02, None)
    if len(space.cells) < 2:
        return start                                       # one price cell: no price response to read
    base_full = base[one.index(space.segment, space.status, space.tenure, space.usage, np.zeros(space.n, dtype=int))]
    delta = money(space, beta) - money(space, beta, status_quo)
    has = np.bincount(space.segment, weights=choices.sum(axis=1), minlength=len(SEGMENTS)) > 0
    V = None

    def loglik(alpha: np.ndarray) -> np.ndarray:
        nonlocal V
        V, _, pi = soft_bellman(base_full - alpha[space.segment][:, None] * delta, P, beta, tol=1e-8, V0=V)
        per_state = (choices * np.log(np.clip(pi, 1e-300, None))).sum(axis=1)
        return np.bincount(space.segment, weights=per_state, minlength=len(SEGMENTS))

    center = start
    for spread in (0.2, 0.06):
        x = np.stack([center, center * (1 - spread), center * (1 + spread)])
        y = np.stack([loglik(row) for row in x])
        # the parabola through the three points: vertex where it is concave, else the best point
        d1, d2 = (y[2] - y[1]) / (x[2] - x[1]), ((y[2] - y[0]) / (x[2] - x[0]) - (y[0] - y[1]) / (x[0] - x[1])) / (x[2] - x[1])
        vertex = 0.5 * (x[1] + x[2]) - d1 / np.where(d2 < 0, 2 * d2, -1.0)
        best = x[np.argmax(y, axis=0), np.arange(len(SEGMENTS))]
        lo, hi = center * (1 - 2 * spread), center * (1 + 2 * spread)
        center = np.where(has, np.where(d2 < 0, np.clip(vertex, lo, hi), best), center)
    return center


def benefit_values(reward: np.ndarray, space: Space, alpha: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) dollars a member-month that high use of each benefit is worth to each segment: the monthly
    plan's reward with the benefit's use high minus low, the rest of the state the same, over alpha_g."""
    weight = np.ones(space.n) if weight is None else weight
    uses = space.uses()
    out = np.zeros((len(SEGMENTS), len(BENEFITS)))
    for j in range(len(BENEFITS)):
        low = uses[:, j] == 0
        partner = space.index(space.segment[low], space.status[low], space.tenure[low], space.usage[low] | (1 << j),
                              space.cell[low])
        gain = reward[partner, 1] - reward[low, 1]
        w = weight[low] + weight[partner]
        for g in range(len(SEGMENTS)):
            mine = space.segment[low] == g
            out[g, j] = np.average(gain[mine], weights=w[mine] + 1e-12) / alpha[g]
    return out


def start_distribution(space: Space, last_month: pd.DataFrame) -> np.ndarray:
    """The distribution over a one-cell space of the customers' states in the panel's last month."""
    index = space.locate(last_month, cell=np.zeros(len(last_month), dtype=int))
    return np.bincount(index, minlength=space.n) / len(index)


def shares(space: Space, pi: np.ndarray, P: list, d0: np.ndarray, customers: pd.Series, horizon: int = HORIZON,
           first_month: str | None = None) -> pd.DataFrame:
    """segment, month, plan, share, revenue over `horizon` months: the share of the segment's customers
    choosing each plan and the revenue it brings (refunds of cancelled annual terms booked to annual)."""
    flows = cash(space)
    refund = np.minimum(flows[:, 0], 0.0)
    rows = []
    months = pd.period_range(first_month, periods=horizon, freq="M") if first_month else range(1, horizon + 1)
    for t, d in enumerate(propagate(d0, pi, P, horizon)):
        for g, segment in enumerate(SEGMENTS):
            mine = space.segment == g
            mass = d[mine].sum()
            if mass <= 0:
                continue
            dg = d[mine] / mass
            n = float(customers.get(segment, 0))
            for a, plan in enumerate(ACTIONS):
                p_a = pi[mine, a]
                revenue = (dg * p_a * flows[mine, a]).sum()
                if plan == "annual":       # refunds of leaving an annual term, whichever plan they leave for
                    revenue += (dg * (pi[mine, 0] + pi[mine, 1]) * refund[mine]).sum()
                elif plan == "monthly":
                    revenue -= (dg * p_a * refund[mine]).sum()
                else:
                    revenue = 0.0
                rows.append({"segment": segment, "month": str(months[t]), "plan": plan,
                             "share": float((dg * p_a).sum()), "revenue": round(float(revenue * n), 2)})
    return pd.DataFrame(rows)


def solve(reward: np.ndarray, P: list, beta: float) -> np.ndarray:
    return soft_bellman(reward, P, beta)[2]


def myopic(reward: np.ndarray) -> np.ndarray:
    """The static logit's policy: softmax of the reward, no future."""
    z = np.exp(reward - reward.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def scenario_reward(base: np.ndarray, space: Space, scenario: Scenario, status_quo: tuple[float, float],
                    alpha: np.ndarray, values: np.ndarray, beta: float) -> np.ndarray:
    """An estimated reward at status-quo prices moved to the scenario: price change through alpha_g and the
    money function, benefit changes in dollars through alpha_g; the anchor stays 0."""
    a = alpha[space.segment]
    shift = -(money(space, beta, scenario.prices) - money(space, beta, status_quo)) * a[:, None]
    shift[:, 1:] += (a * benefit_dollars(space, scenario, values))[:, None]
    shift[:, 0] = 0.0
    return base + shift


def share_error(estimate: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Mean absolute error of the plan shares, in percentage points, over segments x months x plans."""
    merged = estimate.merge(truth, on=["segment", "month", "plan"], suffixes=("", "_true"))
    return float((merged["share"] - merged["share_true"]).abs().mean() * 100)
