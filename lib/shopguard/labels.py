"""Labels as they were known at a point in time, so that training never sees the future."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopguard import schemas
from shopguard.validation import conform, normalise


def usable_verdicts(mapping: dict[str, str]):
    """DataFrame -> DataFrame: a labels table in shopguard's columns (`columns.labels` maps them), ids
    normalised, keeping the rows a reader can use: a user and a 0/1 label. Training validates labels and
    quarantines the rest; jobs that only compare scores with labels read them through this, as train does."""

    def transform(raw: DataFrame) -> DataFrame:
        return (
            conform(raw, "labels", mapping)
            .transform(normalise("labels"))
            .select(*schemas.LABELS.fieldNames())
            .where("user_id IS NOT NULL AND label IN (0, 1)")
        )

    return transform


def attach_labels(features: DataFrame, labels: DataFrame) -> DataFrame:
    """Add `label` and `anomaly_type` to each feature row: the latest verdict on that user labelled before
    the cut-off of the row's snapshot (the end of its UTC day). Rows with no verdict yet get nulls.

    Verdicts given after the snapshot (an investigation that closed later) are not used for that snapshot.
    """
    known = labels.select(
        "user_id",
        F.col("label").alias("_label"),
        F.col("anomaly_type").alias("_anomaly_type"),
        F.col("labelled_at").alias("_labelled_at"),
    )
    cutoff = F.expr("CAST(date_add(snapshot_date, 1) AS TIMESTAMP)")  # session time zone is UTC
    candidates = features.join(known, "user_id", "left").where(
        F.col("_labelled_at").isNull() | (F.col("_labelled_at") < cutoff)
    )
    latest = Window.partitionBy("user_id", "snapshot_date").orderBy(
        F.col("_labelled_at").desc_nulls_last(), F.col("_label").desc()
    )
    with_labels = features.join(
        candidates.withColumn("_n", F.row_number().over(latest))
        .where("_n = 1")
        .select("user_id", "snapshot_date", "_label", "_anomaly_type"),
        ["user_id", "snapshot_date"],
        "left",
    )
    return with_labels.withColumnRenamed("_label", "label").withColumnRenamed("_anomaly_type", "anomaly_type")


def new_rows(rows: DataFrame, existing: DataFrame, key: list[str]) -> DataFrame:
    """Rows whose `key` (nulls equal) is not among `existing`: appending only these makes a load idempotent."""
    new, old = rows.alias("_new"), existing.select(*key).alias("_old")
    condition = reduce(
        lambda a, b: a & b, [F.col(f"_new.`{c}`").eqNullSafe(F.col(f"_old.`{c}`")) for c in key]
    )
    return new.join(old, condition, "left_anti")
