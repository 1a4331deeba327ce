"""Labels as they were known at a point in time, so that training never sees the future."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import reduce
from typing import NamedTuple

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopguard.catalog import Tables
from shopguard.privacy import pseudonymise
from shopguard.validation import Rules, Validated, conform, normalise, validate


class Verdicts(NamedTuple):
    """The labels table as read at one version, every row checked."""

    checked: Validated
    version: int

    @property
    def valid(self) -> DataFrame:
        """Usable verdicts: a user, a 0/1 label and the time it was given, in shopguard's columns."""
        return self.checked.valid

    @property
    def quarantined(self) -> DataFrame:
        return self.checked.quarantined


def read_labels(tables: Tables, mapping: dict[str, str], key: bytes | None, day: date) -> Verdicts:
    """The one way shopguard reads labels: `columns.labels` maps them, ids are normalised, rows that are not
    verdicts go to `.quarantined` with the reason, and ids are pseudonymised the way the features are."""
    version = tables.version("labels")
    raw = tables.read("labels", version=version)
    conformed = conform(raw, "labels", mapping).transform(normalise("labels"))
    checked = validate(conformed, "labels", Rules(now=datetime.now(UTC)), day)
    if key is not None:
        checked = checked.transform(pseudonymise("labels", key, mapping))
    return Verdicts(checked, version)


def latest_anomalous(verdicts: DataFrame) -> DataFrame:
    """user_id, anomaly_type of every user whose latest verdict is anomalous (type 'unknown' if not given)."""
    latest = Window.partitionBy("user_id").orderBy(F.col("labelled_at").desc_nulls_last())
    return (
        verdicts.withColumn("_n", F.row_number().over(latest))
        .where("_n = 1 AND label = 1")
        .withColumn("anomaly_type", F.coalesce("anomaly_type", F.lit("unknown")))
        .select("user_id", "anomaly_type")
    )


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
