"""LightGBM's tabular features (models/demand/tabular_features.py): seasons per frequency, no future leakage,
labels, calendar and the training/validation split."""
import numpy as np
import pandas as pd
import pytest

from echelon.models.demand import tabular_features as tf


def history(freq: str, n: int, series: int = 3, seed: int = 0, ragged: bool = True) -> pd.DataFrame:
    """`series` series on the grid; with `ragged` each later series starts 5 steps later and ends 2 earlier."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2021-01-04", periods=n, freq=freq)
    frames = []
    for k in range(series):
        lo, hi = (5 * k, n - 2 * k) if ragged else (0, n)
        frames.append(pd.DataFrame({"item_id": f"i{k}", "location_id": "all", "timestamp": stamps[lo:hi],
                                    "target": rng.poisson(10 + 5 * k, hi - lo).astype(float)}))
    return pd.concat(frames, ignore_index=True)


def test_seasonal_periods_and_spec_derive_from_the_frequency():
    assert tf.seasonal_periods("h") == (24, 168)
    assert tf.seasonal_periods("D") == (7, 365)
    assert tf.seasonal_periods("W-MON") == (52,)
    assert tf.seasonal_periods("MS") == tf.seasonal_periods("ME") == (12,)
    assert tf.seasonal_periods("QS") == (4,)
    hourly, weekly = tf.Spec.for_freq("h"), tf.Spec.for_freq("W")
    assert 168 in hourly.windows and 24 in hourly.windows and len(hourly.lags) == 24
    assert 52 in weekly.windows and 168 not in weekly.windows


@pytest.mark.parametrize("freq", ["h", "D", "W-SUN", "MS", "QS"])
def test_features_never_read_past_their_origin(freq):
    """Features at origins up to a cutoff are the same whether the table holds the future or not, and
    whatever the future holds; the label is the value h steps ahead."""
    full = history(freq, 400 if freq in ("h", "D") else 120)
    cutoff = full["timestamp"].sort_values().unique()[-30]
    seen = full[full["timestamp"] <= cutoff]
    changed = full.copy()
    changed.loc[changed["timestamp"] > cutoff, "target"] *= 7.0
    tables = [tf.build_table(frame, freq) for frame in (seen, full, changed)]
    horizon = 12
    designs = []
    for table in tables:
        origins = np.flatnonzero(table.step <= table.step_of(cutoff))
        designs.append(tf.design(table, origins, horizon).set_index(["__origin", "horizon"]))
    features = [c for c in designs[0].columns if not c.startswith("__")]
    # the truncated table's rows are a prefix of each series' rows: compare by (series, step)
    keyed = []
    for table, d in zip(tables, designs):
        origin = d.index.get_level_values("__origin")
        keyed.append(d.assign(item=table.keys["item_id"].to_numpy()[origin], at=table.step[origin])
                     .reset_index().set_index(["item", "at", "horizon"]).sort_index())
    pd.testing.assert_frame_equal(keyed[0][features], keyed[1][features])
    pd.testing.assert_frame_equal(keyed[1][features], keyed[2][features])
    # the future does change the labels (so the comparison above could fail), and the label is y[o + h]
    assert not np.allclose(keyed[1]["__label"].fillna(-1), keyed[2]["__label"].fillna(-1))
    table, d = tables[1], designs[1].reset_index()
    inside = d["__label"].notna().to_numpy()
    origin, target = d["__origin"].to_numpy(), (d["__origin"] + d["horizon"]).to_numpy(dtype=np.int64)
    assert np.allclose((d["__label"] * d["level"]).to_numpy()[inside], table.y[target[inside]])
    assert (target[inside] <= table.end[origin[inside]]).all() and inside.mean() > 0.5


def test_calendar_and_target_timestamps_follow_the_frequency():
    table = tf.build_table(history("W-MON", 80, ragged=False), "W-MON")
    d = tf.design(table, table.last_rows(), 3)
    assert {"t_week_of_year", "t_month"} <= set(d.columns) and "t_hour" not in d.columns
    stamps = table.stamps(d["__step"].to_numpy())
    assert (stamps.dayofweek == 0).all() and stamps.min() == pd.Timestamp("2021-01-04") + pd.Timedelta(weeks=80)
    hourly = tf.build_table(history("h", 200, ragged=False), "h")
    assert {"t_hour", "t_day_of_week"} <= set(tf.design(hourly, hourly.last_rows(), 2).columns)


def test_split_holds_out_the_validation_window_and_is_deterministic_by_seed():
    table = tf.build_table(history("D", 300, series=6), "D")
    cutoff, horizon = int(table.step.max()) - 10, 14
    args = dict(max_training_rows=2_000, max_origins_per_series=50, min_origins_per_series=4, valid_share=0.25,
                validation=True)
    train, valid, train_end = tf.split_origins(table, cutoff, horizon, rng=np.random.default_rng(1), **args)
    again = tf.split_origins(table, cutoff, horizon, rng=np.random.default_rng(1), **args)
    assert np.array_equal(train, again[0]) and np.array_equal(valid, again[1])
    assert train_end == cutoff - horizon
    assert (table.step[train] < train_end).all() and (table.step[valid] == train_end).all()
    assert len(train) * horizon <= 2_000 + 6 * horizon
    rows = tf.design(table, train, horizon, last_step=train_end)
    labelled = rows[rows["__label"].notna()]
    assert len(labelled) and (labelled["__step"] <= train_end).all()
