"""Each behaviour has its own users in one small snapshot, so the feature plan runs once per module."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.features import (
    FeatureSpec,
    build_user_features,
    cutoff_of,
    feature_columns,
    feature_fingerprint,
    user_snapshot,
)
from shopguard.validation import deduplicate

D = dt.date(2026, 11, 22)
SPEC = FeatureSpec(windows_days=(1, 7, 30), lifetime_days=60, currency_rates={"EUR": 1.0, "USD": 0.5})


def at(days_before_cutoff: float, seconds: float = 0, hour: int | None = None) -> dt.datetime:
    moment = cutoff_of(D) - dt.timedelta(days=days_before_cutoff) + dt.timedelta(seconds=seconds)
    return moment.replace(hour=hour) if hour is not None else moment


def click(user, when, event_type="page_view", item="i1", device=None, dwell=30000, rating=None):
    return (
        user,
        when,
        event_type,
        f"s-{user}",
        item,
        "c1",
        device or f"dev-{user}",
        f"ip-{user}",
        dwell,
        rating,
        when.date(),
    )


def order(
    order_id,
    user,
    when,
    amount=10.0,
    currency="EUR",
    quantity=1,
    status="paid",
    payment="card",
    device=None,
    address=None,
):
    return (
        order_id,
        user,
        when,
        amount,
        currency,
        quantity,
        status,
        payment,
        device or f"dev-{user}",
        f"ip-{user}",
        address or f"addr-{user}",
        when.date(),
    )


def plain(user):
    return [click(user, at(1)), click(user, at(2), "add_to_cart")]


CLICKS = [
    # windows: one view 20 days back, three events on D, a failed and a good login 3 days back
    click("u1", at(20)),
    click("u1", at(0.5)),
    click("u1", at(0.4)),
    click("u1", at(0.3), "add_to_cart"),
    click("u1", at(3), "login_failure"),
    click("u1", at(3, 60), "login_success"),
    # point in time: "late" has the events of "ontime" plus some at or after the cut-off
    *plain("ontime"),
    *plain("late"),
    click("late", at(0)),
    click("late", at(-2), "login_failure"),
    # three users on one device, one on its own
    *[click(u, at(2), device="shared") for u in ("s1", "s2", "s3")],
    click("s4", at(2)),
    # a bot: ten views two seconds apart with half-second dwell, all on one item
    *[click("bot", at(1, s), dwell=500) for s in range(0, 20, 2)],
    # a new account and one that signed up before the look-back
    click("new", at(2), "signup"),
    click("old", at(1)),
    # gaps across midnight: 23:59:59 and 00:00:01 are two seconds apart, on two days
    click("owl", at(1, -1)),
    click("owl", at(1, 1)),
    click("owl", at(1, 3)),
    # two clicks at one instant end a day: still one day with clicks
    click("twin", at(1.9)),
    click("twin", at(1.5), item="i1"),
    click("twin", at(1.5), item="i2"),
    # reviews: two extreme, two at night
    click("critic", at(1, hour=2), "review", rating=1),
    click("critic", at(1, hour=3), "review", rating=5),
    click("critic", at(1, hour=14), "review", rating=3),
]
ORDERS = [
    order("o-ontime", "ontime", at(1)),
    order("o-late1", "late", at(1)),
    order("o-late2", "late", at(-0.001), amount=999.0),
    order("o-s1", "s1", at(2), address="a9"),
    order("o-s4", "s4", at(2), address="a9"),
    order("o1", "buyer", at(0.5), amount=100.0, currency="USD", quantity=2),
    order("o2", "buyer", at(2), amount=30.0, status="cancelled", payment="paypal"),
    order("o3", "buyer", at(3), amount=20.0, status="refunded", address="a2", quantity=5),
    order("o-new", "new", at(1.5)),
]


@pytest.fixture(scope="module")
def snapshot(spark):
    clicks = spark.createDataFrame(CLICKS, schemas.CLICKS)
    orders = spark.createDataFrame(ORDERS, schemas.TRANSACTIONS)
    table = build_user_features(clicks, orders, D, SPEC)
    return table, {r["user_id"]: r.asDict() for r in table.collect()}


@pytest.fixture(scope="module")
def f(snapshot):
    return snapshot[1]


def test_counts_and_ratios_follow_their_windows(f):
    u = f["u1"]
    assert (u["events_1d"], u["events_7d"], u["events_30d"]) == (3, 5, 6)
    assert (u["page_views_1d"], u["page_views_30d"]) == (2, 3)
    assert u["cart_per_view_1d"] == pytest.approx(0.5)
    assert u["login_failure_rate_7d"] == pytest.approx(0.5)
    assert u["login_failure_rate_1d"] == 0.0  # no logins: a rate of 0, never null
    assert (u["active_days_1d"], u["active_days_7d"], u["active_days_30d"]) == (1, 2, 3)
    assert (f["twin"]["active_days_1d"], f["twin"]["active_days_7d"]) == (0, 1)


def test_events_at_or_after_the_cutoff_never_reach_the_snapshot(f):
    def without_id(row):
        return {k: v for k, v in row.items() if k != "user_id"}

    assert without_id(f["late"]) == without_id(f["ontime"])


def test_users_sharing_a_device_or_address_count_each_other(f):
    assert [f[u]["shared_device_users_30d"] for u in ("s1", "s2", "s3", "s4")] == [2, 2, 2, 0]
    assert (f["s1"]["shared_address_users_30d"], f["s4"]["shared_address_users_30d"]) == (1, 1)
    assert f["s2"]["shared_address_users_30d"] == 0


def test_order_amounts_are_in_the_base_currency_and_rates_count_statuses(f):
    u = f["buyer"]
    assert u["amount_sum_1d"] == pytest.approx(50.0)
    assert u["amount_max_7d"] == pytest.approx(50.0)
    assert u["amount_mean_7d"] == pytest.approx(100.0 / 3)
    assert (u["orders_7d"], u["quantity_sum_7d"], u["quantity_max_7d"]) == (3, 8, 5)
    assert u["cancel_rate_7d"] == pytest.approx(1 / 3) and u["refund_rate_7d"] == pytest.approx(1 / 3)
    assert (u["cancelled_orders_7d"], u["refunded_orders_7d"], u["cancelled_orders_1d"]) == (1, 1, 0)
    assert (u["payment_methods_7d"], u["shipping_addresses_7d"]) == (2, 2)


def test_fast_regular_clicks_show_as_fast_gaps_short_dwell_and_one_item(f):
    u = f["bot"]
    assert u["fast_gap_share_7d"] == 1.0
    assert u["gap_mean_s_7d"] == pytest.approx(2.0)
    assert u["burstiness_7d"] == pytest.approx(-1.0)  # perfectly regular
    assert u["short_dwell_share_7d"] == 1.0
    assert u["top_item_share_7d"] == 1.0
    assert f["u1"]["top_item_share_30d"] == 1.0 and f["u1"]["fast_gap_share_30d"] == 0.0


def test_gaps_between_clicks_run_across_midnight(f):
    assert f["owl"]["gap_mean_s_7d"] == pytest.approx(2.0)
    assert f["owl"]["fast_gap_share_7d"] == 1.0
    assert f["owl"]["burstiness_7d"] == pytest.approx(-1.0)


def test_a_heavy_users_clicks_are_spread_over_tasks_not_held_by_one(spark):
    """Skew: the windows over clicks (duplicates, gaps) work per user-day, so one user with millions of events
    is not one straggler task. Over a week, the heavy user's de-duplicated clicks lie in several partitions."""
    heavy = [click("heavy", at(days, s)) for days in range(1, 8) for s in range(0, 30, 3)]
    rows = spark.createDataFrame([*heavy, *heavy[:5], *CLICKS], schemas.CLICKS).transform(
        deduplicate("clicks")
    )
    coalescing = spark.conf.get("spark.sql.adaptive.coalescePartitions.enabled")
    spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")  # tiny data: one partition else
    try:
        placed = (
            rows.where("user_id = 'heavy'").groupBy(F.spark_partition_id().alias("task")).count().collect()
        )
    finally:
        spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", coalescing)
    assert sum(r["count"] for r in placed) == len(heavy)  # the five exact duplicates are gone
    assert len(placed) > 1, f"the heavy user's clicks sit in {len(placed)} partition(s)"


def test_account_age_and_time_from_signup_to_first_order(f):
    assert f["new"]["account_age_days"] == pytest.approx(2.0)
    assert f["new"]["days_signup_to_first_order"] == pytest.approx(0.5)
    assert f["old"]["account_age_days"] == SPEC.lifetime_days  # signed up before the look-back


def test_extreme_ratings_and_night_activity(f):
    u = f["critic"]
    assert u["extreme_rating_share_7d"] == pytest.approx(2 / 3)
    assert u["night_share_7d"] == pytest.approx(2 / 3)
    assert u["rating_mean_7d"] == pytest.approx(3.0)


def test_every_feature_is_a_non_null_double_in_a_stable_order(snapshot, spark):
    table, rows = snapshot
    names = feature_columns(table.schema)
    assert table.columns[:2] == ["user_id", "snapshot_date"]
    assert all(table.schema[n].dataType == T.DoubleType() for n in names)
    assert all(v is not None for row in rows.values() for v in row.values())
    assert len(set(names)) == len(names) > 90
    assert set(rows) == {c[0] for c in CLICKS} | {o[1] for o in ORDERS}


def test_the_fingerprint_changes_with_the_feature_columns_only(spark, snapshot):
    table, _ = snapshot
    clicks = spark.createDataFrame(CLICKS[:1], schemas.CLICKS)
    orders = spark.createDataFrame([], schemas.TRANSACTIONS)
    again = build_user_features(clicks, orders, D - dt.timedelta(days=1), SPEC)
    fewer = build_user_features(clicks, orders, D, FeatureSpec(windows_days=(7,), lifetime_days=60))
    assert feature_fingerprint(again.schema) == feature_fingerprint(table.schema)
    assert feature_fingerprint(fewer.schema) != feature_fingerprint(table.schema)


def test_users_quiet_for_the_whole_window_get_no_row_and_are_counted(spark):
    clicks = spark.createDataFrame([*CLICKS, click("quiet", at(45))], schemas.CLICKS)  # in the look-back only
    orders = spark.createDataFrame(ORDERS, schemas.TRANSACTIONS)
    table = build_user_features(clicks, orders, D, SPEC)
    assert "quiet" not in {r.user_id for r in table.select("user_id").collect()}
    seen = {
        r.user_id: r.active
        for r in user_snapshot(clicks, orders, D, SPEC).select("user_id", "active").collect()
    }
    assert seen["quiet"] is False and sum(not active for active in seen.values()) == 1
