from __future__ import annotations

from pyspark.sql import types as T

from shopguard.config import ModelSettings
from shopguard.steps.train import training_sample

SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("label", T.IntegerType()),
        T.StructField("orders_1d", T.DoubleType()),
    ]
)


def test_the_training_sample_keeps_every_labelled_user_and_caps_the_others(spark):
    rows = [(f"u{i}", (i // 100) % 2 if i % 100 == 0 else None, float(i)) for i in range(3000)]
    features = spark.createDataFrame(rows, SCHEMA)

    sample = training_sample(features, ModelSettings(max_training_rows=300)).collect()
    again = training_sample(features, ModelSettings(max_training_rows=300)).collect()

    assert sum(r.label is not None for r in sample) == 30  # all of them, though 10% of the cap
    assert 200 < len(sample) < 400
    assert sorted(r.user_id for r in sample) == sorted(r.user_id for r in again)  # by hash, not by chance


def test_below_the_cap_every_user_trains(spark):
    features = spark.createDataFrame([(f"u{i}", None, 1.0) for i in range(50)], SCHEMA)

    assert training_sample(features, ModelSettings(max_training_rows=50)).count() == 50
