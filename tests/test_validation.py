from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.validation import Rules, SchemaError, conform, deduplicate, normalise, validate

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
D = dt.date(2026, 11, 22)
RULES = Rules(now=NOW, currency_rates={"EUR": 1.0, "USD": 1.0})
T0 = dt.datetime(2026, 11, 22, 10, 0)

RAW_CLICKS = T.StructType(
    [
        T.StructField("customer", T.StringType()),  # mapped to user_id
        T.StructField("ts", T.StringType()),  # parsed row by row
        T.StructField("event_type", T.StringType()),
        T.StructField("session_id", T.StringType()),
        T.StructField("item_id", T.LongType()),  # numeric ids cast to strings
        T.StructField("category_id", T.StringType()),
        T.StructField("device_id", T.StringType()),
        T.StructField("ip", T.StringType()),
        T.StructField("dwell_ms", T.IntegerType()),  # widened to long
        T.StructField("rating", T.IntegerType()),
        T.StructField("event_date", T.DateType()),
        T.StructField("browser", T.StringType()),  # extra: ignored with a warning
    ]
)
MAPPING = {"user_id": "customer", "event_time": "ts"}


def raw_click(
    user="u1", ts="2026-11-22 10:00:00", event_type="page_view", rating=None, dwell=100, session="s1"
):
    return (user, ts, event_type, session, 7, "c1", "d1", "1.2.3.4", dwell, rating, D, "firefox")


def clicks(spark, rows):
    return spark.createDataFrame(rows, RAW_CLICKS)


def run(df, table="clicks"):
    result = validate(df.transform(normalise(table)), table, RULES, D)
    return result.valid.collect(), {
        json.loads(r.record).get("customer", ""): r.reason for r in result.quarantined.collect()
    }


def test_conform_maps_names_casts_types_and_ignores_extra_columns(spark, caplog):
    with caplog.at_level(logging.WARNING):
        df = conform(clicks(spark, [raw_click()]), "clicks", MAPPING)
    assert "browser" in caplog.text
    row = df.select(*schemas.CLICKS.fieldNames()).first()
    assert row.user_id == "u1" and row.event_time == T0 and row.item_id == "7" and row.dwell_ms == 100
    assert df.schema["dwell_ms"].dataType == T.LongType()


def test_missing_required_column_fails_naming_column_and_type(spark):
    df = clicks(spark, [raw_click()]).drop("event_type")
    with pytest.raises(SchemaError, match=r"missing required column 'event_type' \(expected string\)"):
        conform(df, "clicks", MAPPING)


def test_incompatible_type_fails_naming_column_and_expected_type(spark):
    df = clicks(spark, [raw_click()]).withColumn("dwell_ms", F.struct("dwell_ms"))
    with pytest.raises(SchemaError, match=r"'dwell_ms' is struct<dwell_ms:int>, expected bigint"):
        conform(df, "clicks", MAPPING)


def test_missing_optional_column_reads_as_nulls(spark):
    df = conform(clicks(spark, [raw_click()]).drop("rating"), "clicks", MAPPING)
    assert df.first().rating is None


def test_each_bad_click_is_quarantined_with_its_reason(spark):
    rows = [
        raw_click("good"),
        raw_click(" ", event_type="search"),
        raw_click("unparsable", ts="yesterday-ish"),
        raw_click("future", ts="2026-11-24 00:00:00"),
        raw_click("ancient", ts="1970-01-01 00:00:00"),
        raw_click("unknown", event_type="teleport"),
        raw_click("rating", event_type="review", rating=9),
        raw_click("no_rating", event_type="review"),
        raw_click("dwell", dwell=-5),
        raw_click("long", session="x" * 300),
    ]
    valid, quarantined = run(conform(clicks(spark, rows), "clicks", MAPPING))
    assert [r.user_id for r in valid] == ["good"]
    assert quarantined == {
        " ": "missing user_id",
        "unparsable": "unparsable event_time",
        "future": "event_time in the future",
        "ancient": "event_time before 2000-01-01",
        "unknown": "unknown event_type",
        "rating": "rating outside 1..5",
        "no_rating": "review without rating",
        "dwell": "negative dwell_ms",
        "long": "session_id longer than 256",
    }


def test_the_length_limit_counts_characters_not_bytes(spark):
    rows = [raw_click("wide", session="\u00e9" * 256), raw_click("long", session="\u00e9" * 257)]
    valid, quarantined = run(conform(clicks(spark, rows), "clicks", MAPPING))
    assert [r.user_id for r in valid] == ["wide"]
    assert quarantined == {"long": "session_id longer than 256"}


def test_a_click_that_fails_several_rules_is_quarantined_with_each_reason(spark):
    rows = [raw_click("good"), raw_click("twice", event_type="review", dwell=-5)]
    valid, quarantined = run(conform(clicks(spark, rows), "clicks", MAPPING))
    assert [r.user_id for r in valid] == ["good"]
    assert quarantined == {"twice": "review without rating; negative dwell_ms"}


def test_the_checks_run_in_generated_code(spark):
    """A check without generated code (a higher-order function such as `array_compact`) takes its whole
    projection out of whole-stage code generation: every row is then copied and checked interpreted."""
    checked = validate(conform(clicks(spark, [raw_click()]), "clicks", MAPPING).transform(normalise("clicks")),
                       "clicks", RULES, D)  # fmt: skip
    plan = checked.carried()._jdf.queryExecution().executedPlan().toString()
    projects = [line for line in plan.splitlines() if "Project [" in line]
    assert projects and all("*(" in line for line in projects), plan


def order(order_id="o1", user="u1", amount=10.0, quantity=1, status="paid", currency="EUR", at=T0):
    return (order_id, user, at, amount, currency, quantity, status, "card", "d1", "1.2.3.4", "a1", at.date())


def test_each_bad_order_is_quarantined_with_its_reason(spark):
    rows = [
        order("good"),
        order("negative", amount=-1.0),
        order("nan", amount=float("nan")),
        order("inf", amount=float("inf")),
        order("huge", amount=2e6),
        order("zero_qty", quantity=0),
        order("status", status="lost"),
        order("currency", currency="XYZ"),
    ]
    df = conform(spark.createDataFrame(rows, schemas.TRANSACTIONS), "transactions", {})
    result = validate(df.transform(normalise("transactions")), "transactions", RULES, D)
    reasons = {json.loads(r.record)["order_id"]: r.reason for r in result.quarantined.collect()}
    assert [r.order_id for r in result.valid.collect()] == ["good"]
    assert reasons == {
        "negative": "amount negative, NaN or infinite",
        "nan": "amount negative, NaN or infinite",
        "inf": "amount negative, NaN or infinite",
        "huge": "amount above 1e+06",
        "zero_qty": "quantity zero or negative",
        "status": "unknown status",
        "currency": "currency not in ['EUR', 'USD']",
    }


def test_ids_differing_in_case_or_spaces_become_one_id(spark):
    df = conform(clicks(spark, [raw_click(" U1 "), raw_click("u1")]), "clicks", MAPPING)
    valid, _ = run(df)
    assert {r.user_id for r in valid} == {"u1"}
    assert (
        len(
            df.transform(normalise("clicks"))
            .select(*schemas.CLICKS.fieldNames())
            .transform(deduplicate("clicks"))
            .collect()
        )
        == 1
    )


def test_repeated_orders_keep_the_latest_status(spark):
    later = T0 + dt.timedelta(hours=1)
    rows = [
        order("o1", status="paid"),
        order("o1", status="cancelled"),
        order("o1", status="paid", at=later),
        order("o2"),
        order("o2"),
    ]
    df = spark.createDataFrame(rows, schemas.TRANSACTIONS).transform(deduplicate("transactions"))
    assert sorted((r.order_id, r.status, r.order_time) for r in df.collect()) == [
        ("o1", "paid", later),
        ("o2", "paid", T0),
    ]


def test_failed_orders_are_all_kept_and_never_displace_the_valid_latest_row(spark):
    later = T0 + dt.timedelta(hours=1)
    rows = [
        order("o1", status="paid"),
        order("o1", status="lost", at=later),  # later, but failed: it must not win o1's slot
        order("o1", status="lost", at=later),  # a failed duplicate goes to quarantine too, as read
        order("o2", amount=-1.0),
    ]
    df = conform(spark.createDataFrame(rows, schemas.TRANSACTIONS), "transactions", {})
    checked = validate(df.transform(normalise("transactions")), "transactions", RULES, D)
    kept = checked.carried().transform(deduplicate("transactions"))
    valid = kept.where("NOT _bad").select("order_id", "status", "order_time").collect()
    assert [tuple(r) for r in valid] == [("o1", "paid", T0)]
    assert sorted(json.loads(r.record)["order_id"] for r in checked.quarantine_of(kept).collect()) == [
        "o1",
        "o1",
        "o2",
    ]


# --------------------------------------------------------------------------- property: nothing is lost

BAD_CLICKS = {
    "no_user": lambda r: ("", *r[1:]),
    "bad_time": lambda r: (r[0], "not a time", *r[2:]),
    "future": lambda r: (r[0], "2031-01-01 00:00:00", *r[2:]),
    "bad_type": lambda r: (r[0], r[1], "teleport", *r[3:]),
    "bad_rating": lambda r: (*r[:2], "review", *r[3:9], 11, *r[10:]),
    "long_id": lambda r: ("u" * 300, *r[1:]),
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["u1", "U1 ", "u2", " u3"]),
            st.integers(0, 3),  # event minute: few values, so exact duplicates happen
            st.sampled_from([None, *BAD_CLICKS]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_rows_read_equal_rows_used_plus_quarantined_plus_duplicates(spark, rows):
    raw = []
    for user, minute, corruption in rows:
        row = raw_click(user, ts=f"2026-11-22 10:0{minute}:00")
        raw.append(BAD_CLICKS[corruption](row) if corruption else row)
    checked = validate(
        conform(clicks(spark, raw), "clicks", MAPPING).transform(normalise("clicks")), "clicks", RULES, D
    )
    read, quarantined = checked.counts()
    used = checked.valid.transform(deduplicate("clicks")).count()
    duplicates = read - quarantined - used

    good = {(u.strip().lower(), m) for u, m, c in rows if c is None}
    assert read == len(rows)
    assert quarantined == sum(c is not None for _, _, c in rows)
    assert used == len(good)
    assert duplicates == sum(c is None for _, _, c in rows) - len(good) >= 0
