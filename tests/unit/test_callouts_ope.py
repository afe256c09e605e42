"""Off-policy estimators recover a known policy value on simulated logs.

Cost: ope.estimate's bootstrap is a (n_bootstrap x rows) matrix product and its merges cost ~50 ms a
call; the estimator tests share ONE estimate of the same logs (module fixture), and the unbiasedness test
draws 20 logs of 5,000 impressions (its standard error, ~0.0016 on a value of 0.113, still resolves a
bias above ~4%)."""
import numpy as np
import pandas as pd
import pytest

from echelon.models.callouts import ope

CONTEXT, ACTION = ["segment"], ["callout_id", "layout_id"]


def world(seed=0):
    rng = np.random.default_rng(seed)
    segments, actions = ["a", "b", "c"], [f"c{k}" for k in range(6)]
    rates = pd.DataFrame([(s, c, "default", r) for s in segments for c in actions
                          for r in [rng.uniform(0.01, 0.2)]], columns=["segment", "callout_id", "layout_id", "rate"])
    logging_policy = rates[CONTEXT + ACTION].copy()
    logging_policy["probability"] = rng.dirichlet(np.ones(6) * 2, size=3).ravel()   # stochastic, non-uniform
    target = rates[CONTEXT + ACTION].copy()
    target["probability"] = rng.dirichlet(np.ones(6) * 0.5, size=3).ravel()
    true_value = float((target["probability"] * rates["rate"]).groupby(rates["segment"]).sum().mean())
    return rates, logging_policy, target, true_value


def draw_logs(rates, logging_policy, n, rng):
    seg = rng.choice(["a", "b", "c"], size=n)
    rows = []
    for s in ["a", "b", "c"]:
        who = np.flatnonzero(seg == s)
        table = logging_policy[logging_policy["segment"] == s].reset_index(drop=True)
        pick = rng.choice(len(table), size=len(who), p=table["probability"])
        chosen = table.iloc[pick].reset_index(drop=True)
        rate = chosen.merge(rates, on=CONTEXT + ACTION, how="left")["rate"].to_numpy()
        rows.append(chosen.assign(propensity=chosen["probability"], reward=(rng.random(len(who)) < rate).astype(int)))
    return pd.concat(rows, ignore_index=True).drop(columns="probability")


def test_ipw_is_unbiased_on_a_simulated_logging_policy():
    rates, logging_policy, target, truth = world()
    rng = np.random.default_rng(1)
    values = [ope.estimate(draw_logs(rates, logging_policy, 5000, rng), target, CONTEXT, ACTION,
                           n_bootstrap=2).set_index("estimator").loc["ipw", "value"] for _ in range(20)]
    standard_error = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values) - truth) < 3 * standard_error


@pytest.fixture(scope="module")
def estimates():
    """Every estimator on the same 40,000 logged impressions (one bootstrap serves all four tests)."""
    rates, logging_policy, target, truth = world()
    logs = draw_logs(rates, logging_policy, 40000, np.random.default_rng(2))
    return ope.estimate(logs, target, CONTEXT, ACTION, n_bootstrap=300).set_index("estimator"), truth


@pytest.mark.parametrize("estimator", ope.ESTIMATORS)
def test_every_estimator_recovers_the_value_within_its_interval(estimator, estimates):
    table, truth = estimates
    row = table.loc[estimator]
    assert row["ci_low"] <= truth <= row["ci_high"] or (estimator == "dm" and abs(row["value"] - truth) < 0.01)
    assert row["value"] == pytest.approx(truth, abs=0.01)


def test_doubly_robust_survives_a_wrong_reward_model():
    rates, logging_policy, target, truth = world()
    logs = draw_logs(rates, logging_policy, 40000, np.random.default_rng(3))
    wrong = rates[CONTEXT + ACTION].assign(q=0.5)
    table = ope.estimate(logs, target, CONTEXT, ACTION, reward_model=wrong, n_bootstrap=200).set_index("estimator")
    assert abs(table.loc["dm", "value"] - truth) > 0.2                 # the model alone is far off
    assert table.loc["dr", "value"] == pytest.approx(truth, abs=0.01)  # DR corrects it with the weights


def test_paired_comparison_needs_confidence_to_promote():
    rates, logging_policy, target, _ = world()
    logs = draw_logs(rates, logging_policy, 30000, np.random.default_rng(4))
    best = rates.loc[rates.groupby("segment")["rate"].idxmax(), CONTEXT + ACTION].assign(probability=1.0)
    assert ope.compare(logs, best, logging_policy, CONTEXT, ACTION)["confident_win"]
    assert not ope.compare(logs, logging_policy, logging_policy, CONTEXT, ACTION)["confident_win"]


@pytest.mark.parametrize("bad", [0.0, np.nan, 1.5])
def test_bad_propensities_are_rejected_by_name(bad):
    logs = pd.DataFrame({"segment": ["a"], "callout_id": ["c0"], "layout_id": ["default"], "reward": [1],
                         "propensity": [bad]})
    with pytest.raises(ope.OPEError, match=r"propensities outside \(0, 1\]"):
        ope.estimate(logs, logs.assign(probability=1.0), CONTEXT, ACTION)
