"""`echelon forecast`: argument parsing, frequency handling, and whole runs writing the output file."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from echelon.models.demand.base import qcols
from echelon.models.demand.forecast import build_parser, main, parse_quantiles, resolve_freq

NINE = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


def run_cli(*argv: str) -> int:
    return main(build_parser().parse_args(list(argv)))


def store_item_csv(path, days=90):
    """Kaggle-shaped daily file: 2 stores x 2 items, weekly pattern, one store ends a week early."""
    rng = np.random.default_rng(0)
    rows = []
    for store in (1, 2):
        for item in (1, 2):
            n = days if store == 1 else days - 7
            dates = pd.date_range("2017-01-01", periods=n, freq="D")
            level = 10 * item + 4 * (dates.dayofweek >= 5)
            rows.append(pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "store": store, "item": item,
                                      "sales": rng.poisson(level)}))
    pd.concat(rows).to_csv(path, index=False)
    return path


def weekly_long_csv(path, weeks=60):
    """Long format, no locations, weeks dated on Mondays, with price and promo."""
    rng = np.random.default_rng(1)
    dates = pd.date_range("2022-01-03", periods=weeks, freq="W-MON")
    frames = [pd.DataFrame({"item_id": item, "timestamp": dates.strftime("%Y-%m-%d"),
                            "target": rng.poisson(20 + 5 * k, weeks), "price": 3.0 + k,
                            "promo": (rng.random(weeks) < 0.2).astype(int)})
              for k, item in enumerate(["sku-1", "sku-2", "sku-3"])]
    pd.concat(frames).to_csv(path, index=False)
    return path


def check_output(out, keys, n_series, horizon, last_by_series, freq):
    frame = pd.read_csv(out, parse_dates=["timestamp"], dtype={"item_id": str, "location_id": str})
    assert list(frame.columns) == keys + ["timestamp"] + qcols()
    assert len(frame) == n_series * horizon
    values = frame[qcols()].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()
    for key, group in frame.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        expected = pd.date_range(last_by_series[key], periods=horizon + 1, freq=freq)[1:]
        assert group["timestamp"].tolist() == expected.tolist()
    return frame


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------

def test_quantiles_parse_lists_and_progressions():
    assert parse_quantiles("0.1,0.2,...,0.9") == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert parse_quantiles(NINE) == parse_quantiles("0.1,0.2,...,0.9")
    assert parse_quantiles("0.9, 0.5,0.05") == (0.05, 0.5, 0.9)
    assert parse_quantiles("0.05,0.1,...,0.3") == (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    for bad in ("0,0.5", "0.5,1.2", "a,b", "0.1,...", ""):
        with pytest.raises(ValueError, match="--quantiles"):
            parse_quantiles(bad)


def test_freq_is_checked_against_the_data():
    mondays = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=5, freq="W-MON")})
    assert resolve_freq(mondays, "W") == "W-MON"            # weekly anchor taken from the data
    assert resolve_freq(mondays, "D") == "D"
    hours = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=5, freq="h")})
    assert resolve_freq(hours, "h") == "h"
    mid_month = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-15", "2024-02-15"])})
    with pytest.raises(ValueError, match="not on the 'MS' grid"):
        resolve_freq(mid_month, "MS")
    with pytest.raises(ValueError, match="not a pandas frequency"):
        resolve_freq(mondays, "fortnightly")


def test_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,-5\n")
    code = run_cli("--input", str(bad), "--output", str(tmp_path / "o.csv"), "--horizon", "3",
                   "--model", "feedforward")
    assert code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "negative 'target'" in err
    assert not (tmp_path / "o.csv").exists()


# ---------------------------------------------------------------------------------------------
# Whole runs with the fast models
# ---------------------------------------------------------------------------------------------

def test_daily_seasonal_naive_writes_horizon_rows_per_series(tmp_path, capsys):
    source, out = store_item_csv(tmp_path / "train.csv"), tmp_path / "naive.csv"
    assert run_cli("--input", str(source), "--output", str(out), "--freq", "D", "--horizon", "10",
                   "--model", "seasonal_naive") == 0
    raw = pd.read_csv(source, parse_dates=["date"])
    last = {(str(i), str(s)): d for (i, s), d in raw.groupby(["item", "store"])["date"].max().items()}
    check_output(out, ["item_id", "location_id"], 4, 10, last, "D")
    assert "wrote 40 rows (4 series x 10 steps, model seasonal_naive)" in capsys.readouterr().out


def test_weekly_seasonal_naive_with_fewer_quantiles(tmp_path):
    source, out = weekly_long_csv(tmp_path / "weekly.csv"), tmp_path / "weekly_naive.csv"
    assert run_cli("--input", str(source), "--output", str(out), "--freq", "W", "--horizon", "6",
                   "--quantiles", "0.05,0.5,0.95", "--model", "seasonal_naive") == 0
    frame = pd.read_csv(out, parse_dates=["timestamp"])
    assert list(frame.columns) == ["item_id", "timestamp", "q_0.05", "q_0.5", "q_0.95"]
    assert len(frame) == 3 * 6
    assert (frame["timestamp"].dt.dayofweek == 0).all()       # Monday-dated weeks stay Mondays
    assert frame["timestamp"].min() == pd.Timestamp("2022-01-03") + pd.Timedelta(weeks=60)


@pytest.mark.slow
def test_auto_picks_the_backtest_winner_and_prints_the_table(tmp_path, capsys):
    # LightGBM builds its features with Spark, too slow here; its own tests cover it.
    source, out = store_item_csv(tmp_path / "train.csv", days=120), tmp_path / "auto.csv"
    assert run_cli("--input", str(source), "--output", str(out), "--horizon", "7",
                   "--model", "auto", "--candidates", "seasonal_naive,feedforward", "--epochs", "1",
                   "--backtest-windows", "2") == 0
    printed = capsys.readouterr().out
    table = printed.split("lower is better):")[1].split("chosen model:")[0]
    rows = [line.split() for line in table.strip().splitlines()[1:]]
    assert {r[0] for r in rows} == {"seasonal_naive", "feedforward"}
    assert all(r[-2] == "2" for r in rows)                      # both backtested on 2 windows
    wqls = [float(r[1]) for r in rows]
    assert wqls == sorted(wqls)                                 # best first
    chosen = printed.split("chosen model: ")[1].split()[0]
    assert chosen == rows[0][0]
    assert len(pd.read_csv(out)) == 4 * 7


def backtest_table(printed: str) -> pd.DataFrame:
    """The table `--model auto` prints, as a frame indexed by model."""
    lines = printed.split("lower is better):")[1].split("chosen model:")[0].strip().splitlines()
    header, rows = lines[0].split(), [line.split() for line in lines[1:]]
    return pd.DataFrame(rows, columns=header).set_index("model").astype(float)


def test_auto_leaves_lightgbm_out_of_small_files(tmp_path, capsys):
    # Issue 16 changed this on purpose: auto now backtests the statistical family plus their ensemble
    # (it used to run seasonal naive alone on weekly data and so always chose it); LightGBM joins at any
    # frequency from LGBM_MIN_ROWS observations (this file has 180).
    source, out = weekly_long_csv(tmp_path / "weekly.csv"), tmp_path / "auto_w.csv"
    assert run_cli("--input", str(source), "--output", str(out), "--freq", "W", "--horizon", "4",
                   "--model", "auto") == 0
    printed = capsys.readouterr().out
    table = backtest_table(printed)
    assert "lightgbm" not in table.index
    assert {"naive", "seasonal_naive", "autoets", "autotheta"} <= set(table.index)
    assert any(name.startswith("ensemble:") for name in table.index)
    chosen = printed.split("chosen model: ")[1].split()[0]
    assert table.loc[chosen, "wql"] <= table.loc[["naive", "seasonal_naive"], "wql"].min()
    assert (table["volatility"] >= 0).all() and table["coverage"].between(0, 1).all()


def test_auto_picks_naive_on_random_walks(tmp_path, capsys):
    rng = np.random.default_rng(11)
    frames = [pd.DataFrame({"item_id": f"rw{k}", "timestamp": pd.date_range("2020-01-06", periods=150, freq="W-MON"),
                            "target": 200 + np.cumsum(rng.normal(0, 10, 150))}) for k in range(6)]
    source, out = tmp_path / "rw.csv", tmp_path / "rw_out.csv"
    pd.concat(frames).to_csv(source, index=False)
    assert run_cli("--input", str(source), "--output", str(out), "--freq", "W-MON", "--horizon", "8",
                   "--model", "auto", "--candidates", "naive,seasonal_naive,autoets,autotheta,lightgbm") == 0
    printed = capsys.readouterr().out
    assert "lightgbm" in backtest_table(printed).index
    assert printed.split("chosen model: ")[1].split()[0] == "naive", printed


def test_auto_backtests_small_inputs_over_more_windows():
    """A few series score few forecasts per window: auto adds windows (a stabler choice); many series keep
    the default, and an explicit window count is honoured."""
    from echelon.models.demand.base import canonical
    from echelon.models.demand.forecast import DEFAULT_WINDOWS, MAX_WINDOWS, backtest_models

    rng = np.random.default_rng(9)

    def monthly(n_series):
        return canonical(pd.concat([pd.DataFrame({"item_id": f"m{k}", "target": rng.poisson(30, 400),
                                                  "timestamp": pd.date_range("1990-01-01", periods=400, freq="MS")})
                                    for k in range(n_series)]))

    def windows(frame, **kw):
        return int(backtest_models(frame, "MS", 12, (0.1, 0.5, 0.9), ["naive"], **kw).loc[0, "windows"])

    one, many = monthly(1), monthly(30)
    assert windows(one) == MAX_WINDOWS > DEFAULT_WINDOWS
    assert windows(many) == DEFAULT_WINDOWS
    assert windows(one, windows=3) == 3


def test_auto_picks_a_seasonal_model_on_a_clean_seasonal_series(tmp_path, capsys):
    rng = np.random.default_rng(12)
    t = np.arange(140)
    frames = [pd.DataFrame({"item_id": f"se{k}", "timestamp": pd.date_range("2024-01-01", periods=140, freq="D"),
                            "target": 50 + 30 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, 140)})
              for k in range(4)]
    source, out = tmp_path / "se.csv", tmp_path / "se_out.csv"
    pd.concat(frames).to_csv(source, index=False)
    assert run_cli("--input", str(source), "--output", str(out), "--horizon", "14", "--model", "auto",
                   "--candidates", "naive,seasonal_naive,autoets,autotheta,lightgbm") == 0
    printed = capsys.readouterr().out
    table, chosen = backtest_table(printed), printed.split("chosen model: ")[1].split()[0]
    assert chosen != "naive" and "lightgbm" in table.index
    assert table.loc[chosen, "wql"] < 0.5 * table.loc["naive", "wql"]


@pytest.mark.parametrize("freq, n, horizon", [("h", 24 * 8, 24), ("D", 120, 14), ("W", 120, 13),
                                               ("MS", 60, 12), ("ME", 60, 6), ("QS", 40, 4)])
def test_every_frequency_runs_end_to_end(tmp_path, capsys, freq, n, horizon):
    rng = np.random.default_rng(5)
    season = {"h": 24, "D": 7, "W": 52, "MS": 12, "ME": 12, "QS": 4}[freq]
    t = np.arange(n)
    frames = [pd.DataFrame({"item_id": f"i{k}", "timestamp": pd.date_range("2019-01-01", periods=n, freq=freq),
                            "target": rng.poisson(20 + 10 * np.sin(2 * np.pi * t / season) + 5 * k)})
              for k in range(3)]
    source, out = tmp_path / f"{freq}.csv", tmp_path / f"{freq}_out.csv"
    pd.concat(frames).to_csv(source, index=False)
    assert run_cli("--input", str(source), "--output", str(out), "--freq", freq, "--horizon", str(horizon),
                   "--model", "auto", "--candidates", "naive,seasonal_naive,autoets,autotheta") == 0
    resolved = resolve_freq(pd.concat(frames), freq)
    last = {(f"i{k}",): frames[k]["timestamp"].max() for k in range(3)}
    check_output(out, ["item_id"], 3, horizon, last, resolved)
    assert "chosen model:" in capsys.readouterr().out


@pytest.mark.parametrize("freq, n, horizon", [("h", 24 * 21, 24), ("D", 200, 14), ("W", 160, 13),
                                               ("MS", 72, 12), ("ME", 72, 6), ("QS", 48, 4)])
def test_lightgbm_runs_end_to_end_at_every_frequency(tmp_path, freq, n, horizon):
    """LightGBM's tabular features at any frequency; ragged series (one starts later) pool into one model."""
    rng = np.random.default_rng(6)
    season = {"h": 24, "D": 7, "W": 52, "MS": 12, "ME": 12, "QS": 4}[freq]
    t = np.arange(n)
    frames = [pd.DataFrame({"item_id": f"i{k}", "timestamp": pd.date_range("2019-01-01", periods=n, freq=freq),
                            "target": rng.poisson(20 + 10 * np.sin(2 * np.pi * t / season) + 5 * k)})[2 * k:]
              for k in range(4)]
    source, out = tmp_path / f"{freq}.csv", tmp_path / f"{freq}_lgbm.csv"
    pd.concat(frames).to_csv(source, index=False)
    assert run_cli("--input", str(source), "--output", str(out), "--freq", freq, "--horizon", str(horizon),
                   "--model", "lightgbm") == 0
    resolved = resolve_freq(pd.concat(frames), freq)
    last = {(f"i{k}",): frames[k]["timestamp"].max() for k in range(4)}
    frame = check_output(out, ["item_id"], 4, horizon, last, resolved)
    # the pooled model keeps each series' scale (levels 20..35): its medians are ordered like the series'
    medians = frame.groupby("item_id")["q_0.5"].mean()
    assert medians["i3"] > medians["i0"]


def test_auto_builds_lightgbm_features_once_for_backtest_and_final_fit(caplog):
    from echelon.models.demand.base import canonical
    from echelon.models.demand.forecast import forecast_frame

    rng = np.random.default_rng(8)
    history = canonical(pd.concat([pd.DataFrame({"item_id": f"s{k}", "target": rng.poisson(10 + k, 150),
                                                 "timestamp": pd.date_range("2021-03-01", periods=150, freq="D")})
                                   for k in range(5)]))
    with caplog.at_level("INFO", logger="echelon.models.demand.lgbm"):
        out, chosen, table = forecast_frame(history, freq="D", horizon=7, model="auto",
                                            candidates=["naive", "lightgbm"])
    assert chosen in ("naive", "lightgbm") and "lightgbm" in set(table["model"]) and len(out) == 5 * 7
    builds = [r for r in caplog.records if "tabular features of" in r.getMessage()]
    fits = [r for r in caplog.records if "training rows" in r.getMessage()]
    assert len(builds) == 1 and len(fits) == table["windows"].iloc[0] + (chosen == "lightgbm")


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the input and what is wrong, exit 2; short series fall back
# ---------------------------------------------------------------------------------------------

def daily(item, n, start="2024-01-01", value=None, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.poisson(10, n).astype(float) if value is None else np.full(n, float(value))
    return pd.DataFrame({"item_id": item, "timestamp": pd.date_range(start, periods=n, freq="D"), "target": target})


def run_bad(tmp_path, capsys, frame, *argv):
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    code = run_cli("--input", str(source), "--output", str(tmp_path / "o.csv"), *argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(source) in err, err   # the one line names the input
    return err


def test_bad_input_irregular_timestamps(tmp_path, capsys):
    frame = daily("gappy", 60).drop(index=[20, 21, 22])
    err = run_bad(tmp_path, capsys, frame, "--horizon", "7", "--model", "naive")
    assert "irregular timestamps" in err and "gappy" in err


def test_bad_input_frequency_the_data_contradicts(tmp_path, capsys):
    frame = pd.DataFrame({"item_id": "wk", "timestamp": pd.date_range("2024-01-07", periods=40, freq="W"),
                          "target": 5.0})
    err = run_bad(tmp_path, capsys, frame, "--freq", "D", "--horizon", "7", "--model", "naive")
    assert "--freq D contradicts the data" in err and "7 x D apart" in err


def test_bad_input_all_zero_and_horizon_longer_than_history(tmp_path, capsys):
    err = run_bad(tmp_path, capsys, daily("z", 30, value=0), "--horizon", "7", "--model", "naive")
    assert "every target is zero" in err
    err = run_bad(tmp_path, capsys, daily("short", 10), "--horizon", "28", "--model", "naive")
    assert "--horizon 28 is longer than the history" in err and "10 steps" in err


def test_short_and_constant_series_fall_back_per_series(tmp_path, capsys, caplog):
    frame = pd.concat([daily("long", 120, seed=1), daily("tiny", 5, start="2024-04-26"),
                       daily("flat", 60, start="2024-03-01", value=3), daily("twoweeks", 10, start="2024-04-21")])
    source, out = tmp_path / "mixed.csv", tmp_path / "mixed_out.csv"
    frame.to_csv(source, index=False)
    with caplog.at_level("INFO", logger="echelon.models.demand.stats"):
        assert run_cli("--input", str(source), "--output", str(out), "--horizon", "14",
                       "--model", "autoets") == 0
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "echelon.models.demand.stats")
    assert "tiny" in logged and "flat" in logged and "twoweeks" in logged and "long" not in logged
    result = pd.read_csv(out)
    assert len(result) == 4 * 14
    flat = result[result["item_id"] == "flat"]
    assert np.allclose(flat[qcols()].to_numpy(), 3.0)            # a constant series stays constant


# ---------------------------------------------------------------------------------------------
# Whole runs (neural nets: slow, one short epoch)
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_daily_store_item_file_with_locations(tmp_path, capsys):
    source, out = store_item_csv(tmp_path / "train.csv"), tmp_path / "out" / "forecasts.csv"
    code = run_cli("--input", str(source), "--output", str(out), "--freq", "D", "--horizon", "14",
                   "--quantiles", "0.1,0.2,...,0.9", "--model", "tft", "--epochs", "1", "--seed", "3")
    assert code == 0
    raw = pd.read_csv(source, parse_dates=["date"])
    last = {(str(i), str(s)): d for (i, s), d in raw.groupby(["item", "store"])["date"].max().items()}
    frame = check_output(out, ["item_id", "location_id"], 4, 14, last, "D")
    assert frame.groupby("item_id")["q_0.5"].mean()["2"] > frame.groupby("item_id")["q_0.5"].mean()["1"]
    assert "wrote 56 rows" in capsys.readouterr().out


@pytest.mark.slow
def test_weekly_long_file_without_locations_via_python_m(tmp_path):
    source, out = weekly_long_csv(tmp_path / "weekly.csv"), tmp_path / "weekly_out.csv"
    result = subprocess.run(
        [sys.executable, "-m", "echelon.models.demand.forecast", "--input", str(source),
         "--output", str(out), "--freq", "W", "--horizon", "8", "--quantiles", NINE,
         "--model", "feedforward", "--epochs", "1"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    last = {(item,): pd.Timestamp("2022-01-03") + pd.Timedelta(weeks=59)
            for item in ("sku-1", "sku-2", "sku-3")}
    frame = check_output(out, ["item_id"], 3, 8, last, "W-MON")
    assert (frame["timestamp"].dt.dayofweek == 0).all()
