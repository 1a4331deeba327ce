"""What a night measures: shares of users per bin of a feature, computed in Spark."""

from __future__ import annotations

import numpy as np
from pyspark.sql import types as T

from shopguard.monitoring import bin_shares, spark_bin_shares

SCHEMA = T.StructType(
    [T.StructField("logins_1d", T.DoubleType()), T.StructField("amount_share", T.DoubleType())]
)


def test_bin_shares_put_ties_in_the_lower_bin_and_missing_values_in_the_top_one(spark):
    rows = [(0.0, 0.1), (1.0, 0.1), (1.0, 0.3), (2.0, 0.7), (5.0, None), (float("nan"), 0.0)]
    edges = {"logins_1d": [1.0, 2.0], "amount_share": [0.1, 0.5], "not_today": [1.0]}

    shares = spark_bin_shares(spark.createDataFrame(rows, SCHEMA), edges)

    assert set(shares) == {"logins_1d", "amount_share"}  # a profiled column absent today is skipped
    # (-inf, 1], (1, 2], (2, inf) with NaN above every edge
    assert np.allclose(shares["logins_1d"], [3 / 6, 1 / 6, 2 / 6])
    # 0.1 is the double 0.1 (a SQL literal 0.1 would be a decimal); null counts in the top bin
    assert np.allclose(shares["amount_share"], [3 / 6, 1 / 6, 2 / 6])


def test_bin_shares_in_spark_equal_the_numpy_ones_and_an_empty_day_has_none(spark):
    rng = np.random.default_rng(7)
    values = np.concatenate([np.zeros(40), rng.integers(1, 6, 40).astype(float), rng.normal(3, 2, 40)])
    edges = {"logins_1d": [0.0, 1.0, 2.5, 4.0], "amount_share": [-1.0, 0.0, 3.0]}
    frame = spark.createDataFrame([(float(v), float(v)) for v in values], SCHEMA)

    shares = spark_bin_shares(frame, edges)

    for column, column_edges in edges.items():
        assert np.allclose(shares[column], bin_shares(values, column_edges)), column
    empty = spark_bin_shares(spark.createDataFrame([], SCHEMA), edges)
    assert all(np.array_equal(empty[c], bin_shares(np.array([]), e)) for c, e in edges.items())
    assert not empty["logins_1d"].any()
