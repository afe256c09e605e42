"""From fitted estimators to answers: the identification table (what each segment values, against the
truth) and the counterfactual shares of each scenario under each method, with the truth beside them.

Methods: `pqr` (re-solved under its reward: P and Q stages neural, the R stage's expectation under the
estimated transitions the re-solve uses, PQR.simulator_reward), `pqr_neural_r` (the same with the R network's
expectation: the all-neural reward, kept to show what its regression error does to a re-solve), `pqr_exact` (the same P stage, its Q and R stages solved
exactly on the discrete state space with the estimated transitions, then re-solved), `static` (the static logit: its myopic reward, beta = 0),
`bc` (behaviour cloning: its policy at the scenario's prices; benefit changes do not reach it). The truth
comes in as a function (the world lives in jobs/; steps and the benchmark pass it), so everything here is
pure: data and fitted networks in, frames out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from echelon.membership_mdp import ACTIONS, BENEFITS, SEGMENTS, Dynamics, Space, features, transitions
from echelon.models.membership import counterfactual as cf
from echelon.models.membership.pqr import PQR, exact_reward, log_policy, static_reward

METHODS = ("pqr", "pqr_neural_r", "pqr_exact", "static", "bc")


@dataclass
class Setting:
    """What every counterfactual of one fit shares: the panel's price cells, the status quo, the discount,
    the estimated transitions, where the customers start and how many there are per segment."""
    cells: list
    status_quo: tuple[float, float]
    beta: float
    dynamics: Dynamics
    start: pd.DataFrame          # state columns of each customer's last panel month
    choices: np.ndarray          # (n, 3) the panel's choices of each action in each state of Space(cells)

    @property
    def visits(self) -> np.ndarray:
        """Visits of each state of Space(cells) in the panel (weights)."""
        return self.choices.sum(axis=1)

    @property
    def customers(self) -> pd.Series:
        return self.start["segment"].value_counts()


def panel_choices(space: Space, rows: pd.DataFrame) -> np.ndarray:
    """(n, 3) how often each action was chosen in each state of `space` in panel rows."""
    out = np.zeros((space.n, len(ACTIONS)))
    np.add.at(out, (space.locate(rows), pd.Categorical(rows["action"], categories=ACTIONS).codes), 1.0)
    return out


def world_rewards(model: PQR, setting: Setting, P: list | None = None) -> dict[str, np.ndarray]:
    space = Space(setting.cells)
    x = features(space.frame())
    P = transitions(space, setting.dynamics) if P is None else P
    exact = exact_reward(log_policy(model.policy, x), P, setting.beta)
    return {"pqr": model.simulator_reward(x, P), "pqr_neural_r": model.reward(x), "pqr_exact": exact,
            "static": static_reward(model, x)}


def identification(model: PQR, setting: Setting, true_reward: np.ndarray | None = None,
                   true_values: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """segment, benefit, value_pqr, value_static, value_true ($ a member-month of high use) and the price
    sensitivities alpha per method: the static logit's read off its reward's slope across the price cells
    (`cf.price_sensitivity`, beta = 0), Deep PQR's calibrated on the panel's choices across the cells from
    its status-quo reward (`cf.calibrate_price_sensitivity`, which says why), the slope reading its start;
    its benefit values are read with that alpha."""
    space = Space(setting.cells)
    P = transitions(space, setting.dynamics)
    rewards = world_rewards(model, setting, P)
    at_status_quo = space.cell == space.cells.index(tuple(map(float, setting.status_quo)))
    alphas, values = {}, {}
    for name, reward in rewards.items():
        beta = setting.beta if name.startswith("pqr") else 0.0
        alphas[name] = cf.price_sensitivity(reward, space, beta, setting.visits + 1.0)
        if name == "pqr_exact" and "pqr" in alphas:
            # its reward is pqr's plus potential-based shaping (the exact Q stage for the neural one): the same
            # re-solved policy at every alpha, so the same calibrated alpha (benchmark: equal to 3 decimals)
            alphas[name] = alphas["pqr"]
        elif name.startswith("pqr"):
            alphas[name] = cf.calibrate_price_sensitivity(reward[at_status_quo], setting.cells, setting.status_quo,
                                                          setting.beta, P, setting.choices, alphas[name])
        values[name] = cf.benefit_values(reward, space, alphas[name], setting.visits + 1.0)
    if true_reward is not None:
        alphas["true"] = cf.price_sensitivity(true_reward, space, setting.beta, setting.visits + 1.0)
        values["true"] = true_values if true_values is not None else cf.benefit_values(true_reward, space, alphas["true"])
    rows = [{"segment": s, "benefit": b, **{f"value_{k}": round(float(v[g, j]), 3) for k, v in values.items()}}
            for g, s in enumerate(SEGMENTS) for j, b in enumerate(BENEFITS)]
    return pd.DataFrame(rows), {"alpha": alphas, "values": values}


def method_policy(name: str, model: PQR, setting: Setting, scenario: cf.Scenario, ident: dict,
                  P: list) -> np.ndarray:
    """The policy of one method under a scenario, on the one-cell space of the scenario's prices."""
    space = Space([setting.status_quo])
    if name == "bc":
        return np.exp(log_policy(model.policy, features(Space([scenario.prices]).frame())))
    x = features(space.frame())
    base = {"pqr": lambda: model.simulator_reward(x, P), "pqr_neural_r": lambda: model.reward(x), "static": lambda: static_reward(model, x),
            "pqr_exact": lambda: exact_reward(log_policy(model.policy, x), P, setting.beta)}[name]()
    beta = setting.beta if name.startswith("pqr") else 0.0
    reward = cf.scenario_reward(base, space, scenario, setting.status_quo, ident["alpha"][name], ident["values"][name], beta)
    return cf.solve(reward, P, setting.beta) if name.startswith("pqr") else cf.myopic(reward)


def run_scenarios(model: PQR, setting: Setting, scenarios: list[cf.Scenario], ident: dict,
                  truth: Callable[[cf.Scenario], tuple[np.ndarray, list]] | None = None,
                  methods=METHODS, first_month: str | None = None) -> pd.DataFrame:
    """scenario, method, segment, month, plan, share, revenue, share_true, revenue_true (the truth columns
    empty without a truth). `truth(scenario)` returns the true policy and transitions on the one-cell space
    (policy and shares are indexed the same way because both spaces have one cell)."""
    space = Space([setting.status_quo])
    P = transitions(space, setting.dynamics)
    d0 = cf.start_distribution(space, setting.start)
    frames = []
    for scenario in scenarios:
        true_frame = None
        if truth is not None:
            pi_true, P_true = truth(scenario)
            true_frame = cf.shares(Space([scenario.prices]), pi_true, P_true, d0, setting.customers,
                                   first_month=first_month)
        for name in methods:
            pi = method_policy(name, model, setting, scenario, ident, P)
            frame = cf.shares(Space([scenario.prices]), pi, P, d0, setting.customers, first_month=first_month)
            if true_frame is not None:
                frame = frame.merge(true_frame, on=["segment", "month", "plan"], suffixes=("", "_true"))
            else:
                frame["share_true"], frame["revenue_true"] = np.nan, np.nan
            frames.append(frame.assign(scenario=scenario.name, method=name))
    out = pd.concat(frames, ignore_index=True)
    return out[["scenario", "method", "segment", "month", "plan", "share", "revenue", "share_true", "revenue_true"]]


def scenario_errors(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute share error (percentage points) per scenario and method."""
    err = (frame["share"] - frame["share_true"]).abs() * 100
    return err.groupby([frame["scenario"], frame["method"]]).mean().rename("share_error_pp").reset_index()
