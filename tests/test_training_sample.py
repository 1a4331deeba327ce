from __future__ import annotations

from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard.config import ModelSettings
from shopguard.sampling import user_sample
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


def test_the_evaluated_sample_keeps_every_known_user_and_nests_in_a_larger_one(spark):
    users = spark.createDataFrame(
        [(f"u{i}", i % 80 == 0) for i in range(4000)], "user_id string, known boolean"
    )
    small, large = (user_sample(4000, 50, cap, seed=7) for cap in (400, 1000))

    def kept(drawn):
        return {r.user_id: r.known for r in users.where(drawn.keep(F.col("known"))).collect()}

    chosen = kept(small)
    assert sum(chosen.values()) == 50  # every known user
    assert 300 < len(chosen) - 50 < 500 and small.share == 400 / 3950
    assert set(chosen) <= set(kept(large))  # one seed: the smaller share's users are in the larger one
    assert not user_sample(4000, 50, 3950, seed=7).sampled
