"""What a night measures: shares of users per bin of a feature, computed in Spark."""

from __future__ import annotations

import numpy as np
from pyspark.sql import types as T

from shopguard.monitoring import spark_bin_shares

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
