"""`echelon callouts ope`: on a logs folder with a known true policy value, the doubly robust and IPW
intervals cover it whatever the reward model; bad flags and bad logs stop with a message naming them.

Cost: the logs are 12,000 impressions; the eb and cell models fit in well under a second, so the
coverage test runs the command once per reward model (the logistic and trees models run on a smaller
folder, for their output only)."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from echelon import cli

SEGMENTS, CALLOUTS = ["s0", "s1"], ["c0", "c1", "c2", "c3"]
RATES = {("s0", "c0"): 0.02, ("s0", "c1"): 0.05, ("s0", "c2"): 0.10, ("s0", "c3"): 0.04,
         ("s1", "c0"): 0.08, ("s1", "c1"): 0.03, ("s1", "c2"): 0.02, ("s1", "c3"): 0.06}
LOGGING = {"s0": [0.4, 0.3, 0.2, 0.1], "s1": [0.1, 0.2, 0.3, 0.4]}
TARGET = {"s0": [0.0, 0.2, 0.7, 0.1], "s1": [0.6, 0.0, 0.1, 0.3]}


def true_value() -> float:
    """Segments are equally likely: the mean over segments of sum_a pi(a|s) rate(s, a)."""
    return float(np.mean([sum(p * RATES[s, c] for p, c in zip(TARGET[s], CALLOUTS)) for s in SEGMENTS]))


def write_logs(folder, n=12000, seed=0):
    """impressions.csv + clicks.csv (each click 1-30 hours after its impression) + catalog.csv + policy.csv."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(SEGMENTS, n)
    pick = np.array([rng.choice(4, p=LOGGING[s]) for s in segment])
    callout = np.array(CALLOUTS)[pick]
    shown = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 14 * 86400, n), unit="s")
    impressions = pd.DataFrame({"impression_id": [f"i{k}" for k in range(n)], "segment": segment,
                                "callout_id": callout, "layout_id": "default", "position": 1,
                                "propensity": [LOGGING[s][a] for s, a in zip(segment, pick)], "shown_at": shown})
    clicked = rng.random(n) < np.array([RATES[s, c] for s, c in zip(segment, callout)])
    clicks = pd.DataFrame({"impression_id": impressions["impression_id"][clicked],
                           "clicked_at": shown[clicked] + pd.to_timedelta(rng.uniform(1, 30, clicked.sum()), unit="h")})
    folder.mkdir(parents=True, exist_ok=True)
    impressions.to_csv(folder / "impressions.csv", index=False)
    clicks.to_csv(folder / "clicks.csv", index=False)
    pd.DataFrame({"callout_id": CALLOUTS, "family": ["a", "a", "b", "b"], "value": [1.0, 2.0, 3.0, 4.0]}).to_csv(
        folder / "catalog.csv", index=False)
    policy = pd.DataFrame([(s, c, "default", p) for s in SEGMENTS for c, p in zip(CALLOUTS, TARGET[s])],
                          columns=["segment", "callout_id", "layout_id", "probability"])
    policy.to_csv(folder / "policy.csv", index=False)
    return folder, impressions, clicks


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return write_logs(tmp_path_factory.mktemp("ope_cli") / "logs")


def run(*argv) -> int:
    return cli.main(["callouts", "ope", *map(str, argv)])


@pytest.mark.parametrize("model", ["eb", "cell"])
def test_the_intervals_cover_the_known_value(logs, tmp_path, model):
    folder = logs[0]
    assert run("--logs", folder, "--policy", folder / "policy.csv", "--output", tmp_path, "--reward-model", model,
               "--bootstrap", 300) == 0
    table = pd.read_csv(tmp_path / "estimates.csv").set_index("estimator")
    truth = true_value()
    for name in ("ipw", "snipw", "dr", "sndr"):
        assert table.loc[name, "ci_low"] <= truth <= table.loc[name, "ci_high"], (name, table.loc[name], truth)
    assert (table["reward_model"] == model).all() and (table["ci_low"] <= table["ci_high"]).all()
    # the policy differs from the logging policy: the logged click rate alone is far from the truth
    assert abs(table["logged_click_rate"].iloc[0] - truth) > 0.01
    saved = json.loads((tmp_path / "estimates.json").read_text())
    assert saved["reward_model"] == model and saved["coverage"] == pytest.approx(0.95)
    assert {r["estimator"] for r in saved["estimates"]} == set(table.index)


def test_refit_intervals_also_cover_the_model_s_own_noise(logs, tmp_path):
    """With the reward model held fixed the DM's interval is a sliver; refit on every resample it widens."""
    folder, truth = logs[0], true_value()
    widths = {}
    for mode in ("fixed", "refit"):
        assert run("--logs", folder, "--policy", folder / "policy.csv", "--output", tmp_path / mode,
                   "--reward-model", "cell", "--bootstrap", 60, "--intervals", mode) == 0
        table = pd.read_csv(tmp_path / mode / "estimates.csv").set_index("estimator")
        widths[mode] = table["ci_high"] - table["ci_low"]
        assert table.loc["dr", "ci_low"] <= truth <= table.loc["dr", "ci_high"]
    assert widths["refit"]["dm"] > 5 * widths["fixed"]["dm"]
    assert json.loads((tmp_path / "refit" / "estimates.json").read_text())["intervals"] == "refit"


def test_the_eb_model_is_the_default_and_records_its_fitted_strengths(logs, tmp_path):
    folder = logs[0]
    assert run("--logs", folder, "--policy", folder / "policy.csv", "--output", tmp_path, "--bootstrap", 20) == 0
    saved = json.loads((tmp_path / "estimates.json").read_text())
    assert saved["reward_model"] == "eb" and len(saved["reward_model_settings"]["fits"]) == 3
    assert {"action_strength", "cell_strength", "family_strength"} <= set(saved["reward_model_settings"]["fits"][0])


@pytest.mark.parametrize("model", ["logistic", "trees"])
def test_the_feature_models_run_from_the_command_line(tmp_path, model):
    folder, _, _ = write_logs(tmp_path / "logs", n=3000, seed=1)
    assert run("--logs", folder, "--policy", folder / "policy.csv", "--output", tmp_path / "out",
               "--reward-model", model, "--bootstrap", 20, "--folds", 2) == 0
    table = pd.read_csv(tmp_path / "out" / "estimates.csv")
    assert table["value"].between(0, 1).all() and (table["reward_model"] == model).all()


@pytest.mark.parametrize("flags, problem", [
    (["--reward-model", "forest"], r"--reward-model: invalid choice: 'forest'"),
    (["--bootstrap", "0"], r"--bootstrap: expected an integer >= 2, got 0"),
    (["--folds", "two"], r"--folds: expected an integer >= 1, got 'two'"),
])
def test_a_bad_flag_is_refused_by_name(logs, tmp_path, capsys, flags, problem):
    folder = logs[0]
    with pytest.raises(SystemExit) as stopped:
        run("--logs", folder, "--policy", "uniform", "--output", tmp_path, *flags)
    assert stopped.value.code == 2
    assert re.search(problem, capsys.readouterr().err)
    assert not (tmp_path / "estimates.csv").exists()


def test_an_unknown_policy_or_a_missing_logs_folder_is_refused_by_name(logs, tmp_path, capsys):
    assert run("--logs", logs[0], "--policy", "greedy", "--output", tmp_path) == 2
    assert "unknown policy 'greedy'" in capsys.readouterr().err
    assert run("--logs", tmp_path / "nowhere", "--policy", "uniform", "--output", tmp_path) == 2
    assert "no impressions.csv or impressions.parquet in" in capsys.readouterr().err
    pd.DataFrame({"segment": ["s0"], "callout_id": ["c0"], "weight": [1.0]}).to_csv(tmp_path / "p.csv", index=False)
    assert run("--logs", logs[0], "--policy", tmp_path / "p.csv", "--output", tmp_path) == 2
    assert "lacks columns ['layout_id', 'probability']" in capsys.readouterr().err
    assert not (tmp_path / "estimates.csv").exists()


@pytest.mark.parametrize("case, problem", [
    ("duplicate", r"impressions: 1 duplicate impression ids, e.g. \['i1'\]"),
    ("unknown", r"clicks: 1 clicks for unknown impressions, e.g. \['ghost'\]"),
    ("early", r"clicks: 1 clicks before their impression, e.g. \['i2'\]"),
    ("propensity", r"1 logged propensities outside \(0, 1\]"),
])
def test_bad_logs_are_refused_by_name(tmp_path, capsys, case, problem):
    folder, impressions, clicks = write_logs(tmp_path / "logs", n=200, seed=2)
    if case == "duplicate":
        impressions.loc[0, "impression_id"] = "i1"
    elif case == "unknown":
        clicks = pd.concat([clicks, pd.DataFrame({"impression_id": ["ghost"], "clicked_at": [clicks["clicked_at"].iloc[0]]})])
    elif case == "early":
        clicks = pd.concat([clicks, pd.DataFrame({"impression_id": ["i2"],
                                                  "clicked_at": [impressions.loc[2, "shown_at"] - pd.Timedelta("1h")]})])
    else:
        impressions.loc[3, "propensity"] = 0.0
    impressions.to_csv(folder / "impressions.csv", index=False)
    clicks.to_csv(folder / "clicks.csv", index=False)
    assert run("--logs", folder, "--policy", folder / "policy.csv", "--output", tmp_path / "out") == 2
    assert re.search(problem, capsys.readouterr().err)
    assert not (tmp_path / "out" / "estimates.csv").exists()
