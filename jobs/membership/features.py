"""State features with Spark: each validated panel row with the next month's state of the same customer
(sql/membership/transitions.sql), the (state, action, next state) rows every estimator stage reads."""
from __future__ import annotations

from echelon import lake
from echelon.catalog.membership import RAW_PANEL, TRANSITIONS
from echelon.spark import get_spark, load_sql


def transitions(spark, ds: str):
    lake.read_spark(spark, RAW_PANEL, ds).drop("ds").createOrReplaceTempView("membership_panel")
    return spark.sql(load_sql("membership/transitions"))


def run(ds: str, spark=None) -> dict:
    ds = lake.parse_ds(ds)
    spark = spark or get_spark("echelon-membership")
    return lake.publish(transitions(spark, ds), TRANSITIONS, ds, gate=True)
