"""Damage's Spark and lake side: score a batch's images in parallel with Spark (the scoring function comes
from the steps module, so this layer never imports the model), and publish a batch's rows into its day's
partition of damage_scores through the table's gate."""
from __future__ import annotations

from typing import Callable, Iterator

import pandas as pd

from echelon import lake
from echelon.catalog.damage import SCORES

CONTRACT = list(SCORES.columns)
SIGNALS_SCHEMA = ("image_id string, score_supervised double, score_anomaly double, supervised_reference double, "
                  "type_index long")


def map_images_with_spark(rows: pd.DataFrame, score_chunk: Callable[[pd.DataFrame], pd.DataFrame],
                          partitions: int | None = None) -> pd.DataFrame:
    """score_chunk(image_id, item_id, file rows) -> per-image signals, run by Spark over the image paths
    (the same job on a cluster, where `file` points at shared or object storage). In the order of `rows`."""
    from echelon.spark import get_spark

    def score_partition(chunks: Iterator[pd.DataFrame]):
        for chunk in chunks:
            yield score_chunk(chunk)

    spark = get_spark("damage-score")
    partitions = partitions or max(1, min(len(rows) // 64 + 1, spark.sparkContext.defaultParallelism))
    frame = spark.createDataFrame(rows[["image_id", "item_id", "file"]]).repartition(partitions)
    out = frame.mapInPandas(score_partition, SIGNALS_SCHEMA).toPandas()
    return rows[["image_id"]].merge(out, on="image_id", how="left").drop(columns="image_id")


def publish_batch(scores: pd.DataFrame, batch: dict, model_version: str) -> dict:
    """Replace this batch's rows in its day's partition of damage_scores, gated, atomically."""
    ds = batch["ds"]
    new = scores.assign(batch_id=batch["batch_id"], model_version=model_version)[CONTRACT + ["gallery_refreshed"]]
    if lake.exists(SCORES, ds):
        old = lake.read(SCORES, ds).drop(columns="ds")
        new = pd.concat([old[old["batch_id"] != batch["batch_id"]], new], ignore_index=True)
    new = new.sort_values(["batch_id", "image_id"]).reset_index(drop=True)
    return lake.publish(new, SCORES, ds, gate=True,
                        extra={"batches": sorted(new["batch_id"].unique().tolist())})
