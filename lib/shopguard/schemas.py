"""The canonical shape of every table shopguard reads or writes.

Source tables may use other column names (see `columns:` in conf/base/shopguard.yml); validation maps
them onto these names, so everything downstream of validation speaks only this vocabulary.
"""

from __future__ import annotations

from pyspark.sql import types as T

EVENT_TYPES: tuple[str, ...] = (
    "signup",
    "page_view",
    "search",
    "add_to_cart",
    "favorite",
    "login_success",
    "login_failure",
    "review",
)
ORDER_STATUSES: tuple[str, ...] = ("paid", "cancelled", "refunded")
ACTIONS: tuple[str, ...] = ("pass", "alert", "block")

CLICKS = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("event_type", T.StringType()),
        T.StructField("session_id", T.StringType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("category_id", T.StringType()),
        T.StructField("device_id", T.StringType()),
        T.StructField("ip", T.StringType()),
        T.StructField("dwell_ms", T.LongType()),
        T.StructField("rating", T.IntegerType()),
        T.StructField("event_date", T.DateType()),
    ]
)

TRANSACTIONS = T.StructType(
    [
        T.StructField("order_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("order_time", T.TimestampType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("currency", T.StringType()),
        T.StructField("quantity", T.IntegerType()),
        T.StructField("status", T.StringType()),
        T.StructField("payment_method", T.StringType()),
        T.StructField("device_id", T.StringType()),
        T.StructField("ip", T.StringType()),
        T.StructField("shipping_address_id", T.StringType()),
        T.StructField("order_date", T.DateType()),
    ]
)

LABELS = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("label", T.IntegerType()),
        T.StructField("anomaly_type", T.StringType()),
        T.StructField("labelled_at", T.TimestampType()),
    ]
)

QUARANTINE = T.StructType(
    [
        T.StructField("source_table", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("record", T.StringType()),
        T.StructField("quarantined_at", T.TimestampType()),
        T.StructField("snapshot_date", T.DateType()),
    ]
)

SCORES = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("score_percentile", T.DoubleType()),
        T.StructField("is_anomaly", T.BooleanType()),
        T.StructField("action", T.StringType()),
        T.StructField("reasons", T.ArrayType(T.StringType())),
        T.StructField("model_version", T.StringType()),
        T.StructField("scored_at", T.TimestampType()),
        T.StructField("score_date", T.DateType()),
    ]
)

# One row per measured quantity of one night (shopguard.monitoring): long, so a new measure is a new
# `metric` value, never a schema change.
RUN_METRICS = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("recorded_at", T.TimestampType()),
        T.StructField("step", T.StringType()),  # the step that measured it: features, score, monitor, ...
        T.StructField("metric", T.StringType()),  # e.g. input_rows, quarantine_rate, psi, alert_rate
        T.StructField("subject", T.StringType()),  # what it is about: a table, a reason, a feature, a model
        T.StructField("value", T.DoubleType()),
        T.StructField("status", T.StringType()),  # ok, warn or fail against conf/'s monitoring thresholds
        T.StructField("run_date", T.DateType()),
    ]
)

EVALUATIONS = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("evaluated_at", T.TimestampType()),
        T.StructField("truth_source", T.StringType()),
        T.StructField("anomaly_type", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("snapshot_date", T.DateType()),
        T.StructField("model_version", T.StringType()),
    ]
)

# The time each row happened (windows use it; the date it is filed under is in shopguard.catalog).
TIME_COLUMN: dict[str, str] = {"clicks": "event_time", "transactions": "order_time", "labels": "labelled_at"}

# Columns that hold identifiers: trimmed and lower-cased by validation so "U1 " and "u1" are one user.
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "clicks": ("user_id", "session_id", "item_id", "category_id", "device_id"),
    "transactions": ("order_id", "user_id", "device_id", "shipping_address_id"),
    "labels": ("user_id",),
}

# Columns validation requires to be present and non-null.
REQUIRED_NON_NULL: dict[str, tuple[str, ...]] = {
    "clicks": ("user_id", "event_time", "event_type", "event_date"),
    "transactions": ("order_id", "user_id", "order_time", "amount", "quantity", "status", "order_date"),
    "labels": ("user_id", "label"),
}

# Columns a source table may lack entirely (filled with nulls) without failing the schema check.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "clicks": ("rating", "dwell_ms", "session_id", "item_id", "category_id"),
    "transactions": ("shipping_address_id", "payment_method", "currency"),
    "labels": ("anomaly_type", "labelled_at"),
}

CANONICAL: dict[str, T.StructType] = {
    "clicks": CLICKS,
    "transactions": TRANSACTIONS,
    "labels": LABELS,
}
