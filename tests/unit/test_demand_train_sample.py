"""Training reads only the series it samples: at most ECHELON_DEMAND_TRAIN_SERIES series, whole items, the
same sample whatever the files' row order, and a world that fits is read whole."""
import numpy as np
import pandas as pd

from echelon import lake
from echelon.models.demand import train
from echelon.models.demand.score import FEATURES

DS = "2026-11-20"


def feature_rows(items: int = 12, locations: int = 3, days: int = 4) -> pd.DataFrame:
    keys = pd.MultiIndex.from_product([[f"item{k}" for k in range(items)], [f"L{j}" for j in range(locations)],
                                       pd.date_range("2026-11-17", periods=days).date],
                                      names=["item_id", "location_id", "date"]).to_frame(index=False)
    return keys.assign(target=np.arange(len(keys), dtype=float), is_future=0)


def test_training_reads_a_stable_sample_of_whole_items(lake_dir):
    rows = feature_rows()
    lake.publish(rows, FEATURES, DS)
    sample = train.load_features(DS, max_series=10)
    series = sample[["item_id", "location_id"]].drop_duplicates()
    assert 0 < len(series) <= 10 and len(series) % 3 == 0   # whole items: all three locations each
    # exactly the sampled items' rows, nothing else read
    want = rows[rows["item_id"].isin(series["item_id"])].sort_values(["item_id", "location_id", "date"])
    got = sample.sort_values(["item_id", "location_id", "date"])
    assert got["target"].tolist() == want["target"].tolist()
    assert pd.api.types.is_datetime64_any_dtype(sample["date"])
    # the same sample from the same rows in another order
    lake.publish(rows.sample(frac=1, random_state=1), FEATURES, DS)
    again = train.load_features(DS, max_series=10)
    assert set(again["item_id"]) == set(sample["item_id"])


def test_a_world_within_the_limit_is_read_whole(lake_dir, monkeypatch):
    rows = feature_rows(items=4)
    lake.publish(rows, FEATURES, DS)
    monkeypatch.setenv("ECHELON_DEMAND_TRAIN_SERIES", "12")
    assert len(train.load_features(DS)) == len(rows)
    monkeypatch.setenv("ECHELON_DEMAND_TRAIN_SERIES", "11")
    assert train.load_features(DS)["item_id"].nunique() == 3


def test_evaluation_buckets_hold_whole_items_and_cover_the_sample_once():
    keys = feature_rows(items=7, locations=3, days=1)[["item_id", "location_id"]]
    keys = pd.concat([keys, pd.DataFrame({"item_id": "big", "location_id": [f"L{j}" for j in range(9)]})])
    buckets = train.item_buckets(keys, max_series=7)
    assert sorted(i for b in buckets for i in b) == sorted(keys["item_id"].unique())
    sizes = [keys["item_id"].isin(b).sum() for b in buckets]
    assert all(s <= 7 for s, b in zip(sizes, buckets) if b != ["big"]) and ["big"] in buckets
    assert sizes == [9, 6, 6, 6, 3]     # "big" alone, then two 3-series items per bucket


def test_the_nightly_lightgbm_candidate_uses_the_spark_features_and_their_settings(monkeypatch):
    # `echelon forecast` builds LightGBM on tabular features with interactive settings; the nightly job
    # must train on its Spark table with the settings the accuracy benchmark measures, unless overridden
    from echelon.models.demand.lgbm import DEFAULT_PARAMS, TABULAR_PARAMS

    model = train.new_candidate("lightgbm", seed=0)
    assert model.features == "spark" and model.params["max_bin"] == DEFAULT_PARAMS["max_bin"]
    assert model.params["learning_rate"] != TABULAR_PARAMS["learning_rate"]
    monkeypatch.setenv("ECHELON_DEMAND_MODEL_PARAMS", '{"lightgbm": {"features": "tabular"}}')
    assert train.new_candidate("lightgbm", seed=0).features == "tabular"
