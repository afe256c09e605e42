"""Promotion: the challenger's method becomes @champion only with confidence (train.decide, the pure
decision evaluate_and_promote makes; the DAG test covers the first promotion, with no champion yet)."""
import numpy as np
import pandas as pd

from echelon.models.callouts import train

SEGMENTS, CALLOUTS = ["s0", "s1"], ["c0", "c1", "c2"]
RATE = {"c0": 0.02, "c1": 0.05, "c2": 0.08}


def policy(probabilities):
    return pd.DataFrame([(s, c, "default", p) for s in SEGMENTS for c, p in zip(CALLOUTS, probabilities)],
                        columns=["segment", "callout_id", "layout_id", "probability"])


def uniform_logs(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    callout = rng.choice(CALLOUTS, n)
    return pd.DataFrame({"segment": rng.choice(SEGMENTS, n), "callout_id": callout, "layout_id": "default",
                         "propensity": 1 / 3, "reward": (rng.random(n) < pd.Series(callout).map(RATE)).astype(int)})


def test_a_clearly_better_challenger_is_promoted_with_its_evidence():
    best, worst = policy([0.0, 0.0, 1.0]), policy([1.0, 0.0, 0.0])
    promoted, reason, evidence = train.decide("meta_ts", "flat_ts", uniform_logs(),
                                              {"meta_ts": best, "flat_ts": worst})
    assert promoted and evidence["ci_low"] > 0 and reason.startswith("DR difference +")


def test_a_challenger_no_better_than_the_champion_is_not_promoted():
    same = policy([0.2, 0.3, 0.5])
    promoted, reason, evidence = train.decide("contextual", "meta_ts", uniform_logs(),
                                              {"contextual": same, "meta_ts": same})
    assert not promoted and evidence["ci_low"] <= 0 <= evidence["ci_high"]
    # a slightly worse challenger (true click rates 0.0497 vs 0.0530) stays a challenger
    promoted, _, evidence = train.decide("contextual", "meta_ts", uniform_logs(2000, seed=1),
                                         {"contextual": policy([0.34, 0.33, 0.33]), "meta_ts": policy([0.3, 0.3, 0.4])})
    assert not promoted and evidence["ci_low"] < 0


def test_without_an_evaluation_of_both_methods_the_champion_stays():
    promoted, reason, evidence = train.decide("meta_ts", "flat_ts", uniform_logs(500), {"meta_ts": policy([0, 0, 1])})
    assert not promoted and "champion kept" in reason and evidence is None
    assert train.decide("meta_ts", None, None, {})[:2] == (True, "no champion yet")
    assert train.decide("meta_ts", "meta_ts", None, {})[0]
