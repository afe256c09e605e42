"""Membership (issue 19): the exact soft-Bellman solver, the world's truth, Deep PQR against the static
logit, the anchor-only Q stage, and every bad input (panel, scenario, identification) with its one-line error.

Cost: one small PQR fit (~20-40 s on the loaded 2-core machine); everything else is under a second."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from echelon.jobs.membership import world
from echelon.jobs.membership.ingest import validate_panel
from echelon.membership_mdp import (ACTIONS, MembershipError, Space, attach_next, estimate_dynamics, features,
                                    soft_bellman, transitions)
from echelon.models.membership import counterfactual as cf
from echelon.models.membership import pqr


# ---- the solver -----------------------------------------------------------------------------------

def test_soft_bellman_matches_the_hand_solved_one_state_mdp():
    """One state, two actions with rewards 0 and 1, staying put: V = beta V + log(1 + e), so
    V = log(1 + e) / (1 - beta) and pi = (1, e) / (1 + e), whatever beta."""
    from scipy import sparse

    beta = 0.9
    P = [sparse.csr_matrix(np.ones((1, 1)))] * 2
    V, Q, pi = soft_bellman(np.array([[0.0, 1.0]]), P, beta)
    assert V[0] == pytest.approx(math.log(1 + math.e) / (1 - beta), rel=1e-9)
    assert pi[0] == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)], rel=1e-9)


def test_soft_bellman_matches_plain_value_iteration_on_a_two_state_mdp():
    """A: stay (0) or go to B (reward 1); B: back to A either way (rewards 0 and -0.5). Checked against a
    value iteration written out state by state."""
    from scipy import sparse

    beta, r = 0.8, np.array([[0.0, 1.0], [0.0, -0.5]])
    P = [sparse.csr_matrix(np.array([[1.0, 0.0], [1.0, 0.0]])), sparse.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]]))]
    va = vb = 0.0
    for _ in range(2000):
        va, vb = (math.log(math.exp(beta * va) + math.exp(1 + beta * vb)),
                  math.log(math.exp(beta * va) + math.exp(-0.5 + beta * va)))
    V, _, pi = soft_bellman(r, P, beta)
    assert V == pytest.approx([va, vb], abs=1e-8)
    assert pi[0, 1] == pytest.approx(math.exp(1 + beta * vb - va), abs=1e-8)


def test_the_worlds_identification_answers_itself():
    """The identification and price-sensitivity readers, given the true reward, return the world's own
    VALUE and ALPHA (so the table's estimates are read the way the truth is written)."""
    space = Space(world.CELLS)
    truth = world.true_reward(space)
    alpha = cf.price_sensitivity(truth, space, world.BETA)
    assert alpha == pytest.approx(world.ALPHA, abs=1e-9)
    assert cf.benefit_values(truth, space, alpha) == pytest.approx(world.VALUE, abs=1e-9)


def test_pqr_with_known_transitions_recovers_the_true_reward_exactly():
    """The paper's identification result, on the world: from the true policy and transitions, the Q and R
    stages solved exactly give back the true reward of every action in every state (anchor: 0)."""
    space = Space([world.STATUS_QUO])
    P = transitions(space, world.dynamics())
    truth = world.true_reward(space)
    _, _, pi = soft_bellman(truth, P, world.BETA)
    np.testing.assert_allclose(pqr.exact_reward(np.log(pi), P, world.BETA), truth, atol=1e-6)


def test_the_simulator_reward_re_solves_to_the_p_stage_whatever_the_q_stage():
    """PQR.simulator_reward's construction (the R stage's expectation under the re-solve's own transitions):
    re-solving it gives back the policy it came from exactly, and an error in Q(s, a0) changes the reward
    (so the check can fail) but not the re-solved policy (it enters as potential-based shaping)."""
    space = Space([world.STATUS_QUO])
    P = transitions(space, world.dynamics())
    noisy = world.true_reward(space) + np.random.default_rng(0).normal(0, 0.5, (space.n, len(ACTIONS)))
    log_pi = np.log(soft_bellman(noisy, P, world.BETA)[2])           # some policy, not the truth's
    wrong_q0 = np.random.default_rng(1).normal(0, 3.0, space.n)
    exact, shaped = pqr.exact_reward(log_pi, P, world.BETA), pqr.exact_reward(log_pi, P, world.BETA, q0=wrong_q0)
    assert np.abs(shaped - exact).max() > 1.0
    for reward in (exact, shaped):
        np.testing.assert_allclose(soft_bellman(reward, P, world.BETA)[2], np.exp(log_pi), atol=1e-7)


def test_alpha_calibrated_on_the_choices_is_immune_to_the_unobserved_anchor_at_a_new_term():
    """The benchmark's finding in miniature: nobody cancels in the first month of a new annual term, so how
    log pi(a0|s) moves with the annual price there is the P stage's guess. Flatten that slope (as the
    P network did: 0.31 per $20 against the truth's 0.51) and shift its level in an otherwise true policy: the reward the Q and R
    stages give back reads alpha off its slope too high in every segment, while the calibration on the
    choices across the price cells (which that guess does not touch) gives the truth back."""
    cells = [(14.99, 119.0), (14.99, 139.0)]
    space = Space(cells)
    P = transitions(space, world.dynamics())
    pi = soft_bellman(world.true_reward(space), P, world.BETA)[2]
    log_pi = np.log(pi)
    new_term = space.status == 13                                  # annual, 11 months left
    log_pi[new_term, 0] -= 1.0 + 0.2 * (space.price_annual[new_term] - 119.0) / 20.0    # its level too
    reward = pqr.exact_reward(log_pi, P, world.BETA)
    slope = cf.price_sensitivity(reward, space, world.BETA)
    assert (slope > world.ALPHA * 1.03).all(), slope
    choices = pi * 100.0                                           # the true policy's choices, 100 a state
    calibrated = cf.calibrate_price_sensitivity(reward[space.cell == 0], cells, (14.99, 119.0), world.BETA, P,
                                                choices, slope)
    np.testing.assert_allclose(calibrated, world.ALPHA, rtol=0.01)


def test_post_decision_features_are_the_features_of_the_status_the_action_leads_to():
    from echelon.membership_mdp import next_status, post_decision

    space = Space([world.STATUS_QUO])
    x, frame = features(space.frame()), space.frame()
    for a in range(len(ACTIONS)):
        after = next_status(space.status, a)
        moved = frame.assign(plan=np.select([after == 0, after == 1], ["none", "monthly"], "annual"),
                             months_left=np.maximum(after - 2, 0))
        y = post_decision(x, a)
        np.testing.assert_array_equal(y[:, :-1], features(moved))
        assert (y[:, -1] == (a != 0)).all()


def test_the_world_is_deterministic_and_every_plan_is_chosen():
    a, b = world.panel(3, 200, 6, "2026-11-30"), world.panel(3, 200, 6, "2026-11-30")
    pd.testing.assert_frame_equal(a, b)
    assert set(a["action"]) == set(ACTIONS)
    assert validate_panel(a, "panel").shape[0] == 1200


# ---- the estimators ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    """One P-stage member (the ensemble's averaging is exercised end to end by tests/dag) at 0.6 of the steps."""
    rows = attach_next(world.panel(11, 2000, 24, "2026-11-30"))
    model = pqr.fit_pqr(rows, pqr.FitConfig(beta=world.BETA, p_members=1).scaled(0.6))
    return model, estimate_dynamics(rows)


def test_pqr_recovers_the_reward_and_the_static_logit_is_biased(fitted):
    """On held-out states (another seed) Deep PQR's member-action reward correlates with the truth above
    0.9 (the full-size fit of the benchmark reaches ~0.97; this fit is smaller to stay fast), while the
    static logit, reading the same choices with beta = 0, misses the future and stays far below it with a
    relative RMSE at least 0.3 worse."""
    model, dynamics = fitted
    space = Space(world.CELLS)
    index = space.locate(world.panel(12, 800, 12, "2026-11-30"))
    x, truth = features(space.frame().iloc[index]), world.true_reward(space)[index][:, 1:].ravel()
    simulator = model.simulator_reward(features(space.frame()), transitions(space, dynamics))[index]
    scores = {}
    for name, estimate in (("pqr", model.reward(x)), ("pqr_simulator", simulator), ("static", pqr.static_reward(model, x))):
        e = estimate[:, 1:].ravel()
        scores[name] = (np.corrcoef(e, truth)[0, 1], np.sqrt(np.mean((e - truth) ** 2) / np.mean(truth ** 2)))
    assert scores["pqr"][0] > 0.9 and scores["pqr_simulator"][0] > 0.9, scores
    assert scores["static"][0] < scores["pqr"][0] - 0.1, scores
    assert scores["static"][1] > scores["pqr"][1] + 0.3, scores


def test_fitted_q_uses_only_anchor_transitions():
    """Scrambling the next states of every non-anchor transition changes nothing in Q(s, a0); scrambling an
    anchor transition's does (so the test can fail)."""
    rows = attach_next(world.panel(5, 150, 6, "2026-11-30")).dropna(subset=["next_plan"]).reset_index(drop=True)
    x = features(rows)
    x_next = features(pqr.next_state(rows))
    actions = pqr.action_codes(rows["action"])
    log_pi0 = np.full(len(rows), -1.0, dtype=np.float32)
    config = pqr.FitConfig(q_iterations=3, q_inner=5)
    noise = np.random.default_rng(0).normal(size=x_next.shape).astype(np.float32) * 5
    scrambled = np.where((actions != 0)[:, None], noise, x_next)
    base, _ = pqr.fit_anchor_q(x, x_next, log_pi0, actions, config)
    other, _ = pqr.fit_anchor_q(x, scrambled, log_pi0, actions, config)
    anchor_scrambled = np.where((actions == 0)[:, None], noise, x_next)
    third, _ = pqr.fit_anchor_q(x, anchor_scrambled, log_pi0, actions, config)
    import torch

    with torch.no_grad():
        q = [net(torch.as_tensor(pqr.post_decision(x, 0))).numpy() for net in (base, other, third)]
    np.testing.assert_array_equal(q[0], q[1])
    assert not np.allclose(q[0], q[2])


# ---- bad input --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def panel():
    return world.panel(4, 30, 4, "2026-11-30")


def test_two_actions_in_one_month(panel):
    twice = pd.concat([panel, panel.iloc[[5]].assign(action="none")])
    with pytest.raises(MembershipError, match=r"more than one action .* e\.g\. m4-0000\d\d 20"):
        validate_panel(twice, "panel.parquet")


def test_a_plan_not_offered_that_month(panel):
    bad = panel.copy()
    row = bad.index[bad["action"] == "monthly"][0]
    bad.loc[row, "price_monthly"] = np.nan
    with pytest.raises(MembershipError, match=r"panel.parquet: 1 choices of plan 'monthly' in a month it was not offered"):
        validate_panel(bad, "panel.parquet")


def test_an_unknown_action(panel):
    with pytest.raises(MembershipError, match=r"unknown action\(s\) \['family'\]"):
        validate_panel(panel.assign(action=np.where(panel.index == 3, "family", panel["action"])), "panel")


def test_months_missing_in_a_customers_panel(panel):
    customer = panel["customer_id"].iloc[0]
    months = sorted(panel.loc[panel["customer_id"] == customer, "month"])
    holed = panel[~((panel["customer_id"] == customer) & (panel["month"] == months[1]))]
    with pytest.raises(MembershipError, match=rf"customer {customer} has no row for {months[1][:7]}"):
        validate_panel(holed, "panel")


def test_an_anchor_that_never_occurs_is_not_fitted(panel):
    members = attach_next(panel.assign(action="monthly"))
    with pytest.raises(MembershipError, match="anchor action 'none' never occurs .* reward is not identified; not fitting"):
        pqr.fit_pqr(members, pqr.FitConfig(), where="transitions ds=2026-11-30")


def _scenario(tmp_path, text: str, suffix=".yaml"):
    path = tmp_path / f"s{suffix}"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("prices: {monthly: 14.99, annual: 119, family: 20}", r"unknown plan\(s\) \['family'\]"),
    ("prices: {monthly: -1, annual: 119}", r"price of plan 'monthly' must be a non-negative number, got -1"),
    ("prices: {monthly: 14.99}", r"the price of plan 'annual' is missing"),
    ("name: x", r"'prices' is missing"),
    ("prices: {monthly: 14.99, annual: .nan}", r"price of plan 'annual' must be a non-negative number"),
    ("prices: {monthly: 14.99, annual: 119}\nbenefits: [{change: value, benefit: podcasts, dollars: 1}]",
     r"unknown benefit 'podcasts'"),
    ("prices: {monthly: 14.99, annual: 119}\nbenefits: [{change: add, benefit: tv, segment: suburban, dollars: 1}]",
     r"unknown segment 'suburban'"),
])
def test_bad_scenarios(tmp_path, text, message):
    with pytest.raises(MembershipError, match=message):
        cf.load_scenario(_scenario(tmp_path, text))


def _one_line_exit_2(argv, capsys, *needles) -> str:
    from echelon.models.membership import steps

    assert steps.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(n in err for n in needles), err
    return err


@pytest.mark.parametrize("text, suffix, needle", [
    ('{"prices": {"monthly": 14.99, "annual": 119, "family": 9}}', ".json", "unknown plan(s) ['family']"),
    ('{"prices": {"monthly": 14.99, "annual": "cheap"}}', ".json", "must be a non-negative number, got 'cheap'"),
    ("prices: {monthly: -1, annual: 119}", ".yaml", "must be a non-negative number, got -1"),
    ("prices: {monthly: 14.99}", ".yaml", "the price of plan 'annual' is missing"),
    ("prices: {monthly: 14.99, annual: 119}\nbenefits: [{change: remove, benefit: podcasts}]", ".yaml",
     "unknown benefit 'podcasts'"),
    ("prices: [", ".yaml", "cannot be read as yaml"),
])
def test_a_bad_scenario_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys, text, suffix, needle):
    path = _scenario(tmp_path, text, suffix)
    _one_line_exit_2(["counterfactual", "--ds", "2026-11-30", "--scenario", str(path)], capsys, str(path), needle)


def test_a_missing_scenario_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    _one_line_exit_2(["counterfactual", "--ds", "2026-11-30", "--scenario", str(path)], capsys, str(path), "does not exist")


def _two_actions(panel):
    return pd.concat([panel, panel.iloc[[5]].assign(action="none")])


def _not_offered(panel):
    row = panel.index[panel["action"] == "annual"][0]
    return panel.assign(price_annual=np.where(panel.index == row, np.nan, panel["price_annual"]))


def _month_missing(panel):
    first = panel["customer_id"].iloc[0]
    return panel[~((panel["customer_id"] == first) & (panel["month"] == sorted(set(panel["month"]))[1]))]


@pytest.mark.parametrize("corrupt, needle", [(_two_actions, "more than one action"),
                                             (_not_offered, "plan 'annual' in a month it was not offered"),
                                             (_month_missing, "have months missing from their panel")])
def test_a_bad_panel_on_the_command_line_is_one_line_exit_2_and_publishes_nothing(lake_dir, panel, capsys, corrupt,
                                                                                   needle):
    from echelon import lake
    from echelon.catalog.membership import PANEL, RAW_PANEL

    lake.publish(corrupt(panel), PANEL, "2026-11-30")
    _one_line_exit_2(["ingest", "--ds", "2026-11-30"], capsys, f"{PANEL} ds=2026-11-30", needle)
    assert not lake.exists(RAW_PANEL, "2026-11-30")


def test_fit_without_an_anchor_choice_on_the_command_line_is_one_line_and_exit_2(lake_dir, panel, capsys):
    from echelon import lake
    from echelon.catalog.membership import TRANSITIONS

    lake.publish(attach_next(panel.assign(action="monthly")), TRANSITIONS, "2026-11-30")
    _one_line_exit_2(["fit", "--ds", "2026-11-30"], capsys, f"{TRANSITIONS} ds=2026-11-30", "not identified; not fitting")


def test_the_shipped_scenarios_load():
    from echelon.models.membership import steps

    names = {cf.load_scenario(p).name for p in steps.scenario_files()}
    assert {"status_quo", "monthly_price_rise", "annual_price_cut", "new_digital_benefit"} <= names


def test_shares_sum_to_one_and_revenue_follows_prices():
    space = Space([world.STATUS_QUO])
    P = transitions(space, world.dynamics())
    pi = cf.solve(world.true_reward(space), P, world.BETA)
    start = world.panel(6, 300, 1, "2026-11-30")
    out = cf.shares(space, pi, P, cf.start_distribution(space, start), start["segment"].value_counts(), horizon=3)
    total = out.groupby(["segment", "month"])["share"].sum()
    assert total.to_numpy() == pytest.approx(1.0)
    assert (out.loc[out["plan"] == "none", "revenue"] == 0).all()
    assert (out.loc[out["plan"] == "monthly", "revenue"] > 0).all()
