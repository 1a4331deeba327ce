from __future__ import annotations

import datetime as dt

from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from shopguard import schemas
from shopguard.catalog import Tables
from shopguard.config import ColumnSettings, TableSettings
from shopguard.labels import attach_labels, read_labels

FEATURES = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("snapshot_date", T.DateType()),
        T.StructField("events_7d", T.DoubleType()),
    ]
)
D1, D2 = dt.date(2026, 11, 10), dt.date(2026, 11, 20)


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def test_each_snapshot_sees_only_the_verdicts_given_before_its_cutoff(spark):
    features = spark.createDataFrame(
        [("u1", D1, 1.0), ("u1", D2, 1.0), ("u2", D1, 1.0), ("u3", D2, 1.0)], FEATURES
    )
    labels = spark.createDataFrame(
        [
            ("u1", 0, None, at(D1 - dt.timedelta(days=3))),  # cleared first...
            ("u1", 1, "account_takeover", at(D1 + dt.timedelta(days=5))),  # ...caught later
            ("u2", 1, "brushing", at(D1, 23)),  # labelled on the snapshot day itself: known
            ("u3", 1, "payment_fraud", at(D2 + dt.timedelta(days=1), 0)),  # after the cut-off
        ],
        schemas.LABELS,
    )
    got = {
        (r.user_id, r.snapshot_date): (r.label, r.anomaly_type)
        for r in attach_labels(features, labels).collect()
    }
    assert got == {
        ("u1", D1): (0, None),
        ("u1", D2): (1, "account_takeover"),
        ("u2", D1): (1, "brushing"),
        ("u3", D2): (None, None),
    }


def test_readers_get_verdicts_in_shopguard_columns_with_unusable_rows_left_out(spark, storage, tmp_path):
    source = T.StructType(
        [
            T.StructField("customer", T.StringType()),
            T.StructField("label", T.IntegerType()),
            T.StructField("anomaly_type", T.StringType()),
            T.StructField("labelled_at", T.TimestampType()),
        ]
    )
    raw = spark.createDataFrame(
        [
            (" U1 ", 1, "Brushing", at(D1)),  # as an analyst typed it
            ("u2", 0, None, at(D1)),
            (None, 1, "brushing", at(D1)),  # no user
            ("u3", 7, "brushing", at(D1)),  # not a label
        ],
        source,
    )
    tables = Tables(storage, TableSettings(root=str(tmp_path)))
    tables.overwrite("labels", raw, {})
    got = read_labels(tables, {**ColumnSettings().mapping("labels"), "user_id": "customer"}, None, D2).valid
    assertDataFrameEqual(
        got, spark.createDataFrame([("u1", 1, "brushing", at(D1)), ("u2", 0, None, at(D1))], schemas.LABELS)
    )
