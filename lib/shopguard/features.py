"""Per-user behaviour features over trailing windows, built with Spark's own aggregations (no Python UDFs).

Snapshot D describes each user as of the end of UTC day D: every window ends at the cut-off
D + 1 day 00:00 UTC (exclusive), so nothing after D reaches the snapshot. A window of w days covers
[cut-off - w days, cut-off).

To add a feature: add one aggregate to the function of its group below (`_click_aggregates`,
`_order_aggregates`, `_entity_aggregates`, `_lifetime_features`, `_cross_source_features`) and a test.

How it is computed, and why (bench/speed.py measures it against DuckDB): each log is aggregated per user in
one pass (the clicks already partitioned by user-day and sorted by time by de-duplication, so the gaps
between events cost no further shuffle of the clicks, and a heavy user spreads over many tasks), and every
distinct count (sessions, items, devices, addresses ...) comes from one table of (user, kind, value,
first seen, last seen) rows built from both logs, never from collecting sets per user: a value was seen in
a window when its last sighting falls in it. Days with clicks are counted the same way from each user-day's
last click, which the window of the gaps marks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard.config import FeatureSettings, ValidationSettings
from shopguard.validation import DAY, with_day

KEY_COLUMNS = ("user_id", "snapshot_date")
_VALIDATION: dict[str, Any] = dict(ValidationSettings.model_fields)  # FieldInfo: defaults and checks


class FeatureSpec(FeatureSettings):
    """The `features:` settings plus the validation values the features also need (declared there once)."""

    rating_min: int = _VALIDATION["rating_min"]
    rating_max: int = _VALIDATION["rating_max"]
    currency_rates: dict[str, float] = _VALIDATION["currency_rates"]

    @classmethod
    def from_settings(cls, features: FeatureSettings, validation: ValidationSettings) -> FeatureSpec:
        shared = validation.model_dump(include={"rating_min", "rating_max", "currency_rates"})
        return cls(**features.model_dump(), **shared)

    @property
    def max_window(self) -> int:
        return max(self.windows_days)


def cutoff_of(snapshot_date: date) -> datetime:
    """First instant after snapshot D: events strictly before it belong to D."""
    return datetime.combine(snapshot_date + timedelta(days=1), time.min)


def input_date_range(snapshot_date: date, lifetime_days: int) -> tuple[date, date]:
    """Partitions to read for snapshot D; one day of slack either side for events filed under a
    neighbouring date partition. Rows are still filtered by their own timestamps."""
    return snapshot_date - timedelta(days=lifetime_days + 1), snapshot_date + timedelta(days=1)


# --------------------------------------------------------------------------- SQL helpers
# Features are written as Spark SQL expressions: one JVM call per feature instead of dozens through the
# Column API keeps building the plan fast (measured: about 7 s -> under 2 s for ~130 features).


def _ts(moment: datetime) -> str:
    """A UTC timestamp literal, whatever the session or machine time zone."""
    return f"TIMESTAMP '{moment.replace(tzinfo=None).isoformat(sep=' ')}+00:00'"


def _count(condition: str) -> str:
    return f"count_if({condition})"


def _ratio(numerator: str, denominator: str) -> str:
    """0 when the denominator is 0: no views means no conversion, not an unknown one."""
    return f"coalesce(({numerator}) / nullif({denominator}, 0), 0D)"


# The values a user's distinct counts are taken over, per log: kind -> SQL of the value (null: not seen).
ENTITIES: dict[str, dict[str, str]] = {
    "clicks": {"session": "session_id", "day": "CAST(to_date(event_time) AS STRING)", "item": "item_id",
               "category": "category_id", "device": "device_id", "ip": "ip"},
    "transactions": {"device": "device_id", "ip": "ip", "address": "shipping_address_id",
                     "payment": "payment_method", "order_day": "CAST(to_date(order_time) AS STRING)"},
}  # fmt: skip
_TIME = {"clicks": "event_time", "transactions": "order_time"}
# Kinds whose other users count: how many users share the user's device, IP or shipping address.
SHARED_KINDS = ("device", "ip", "address")
# Counted from each user-day's last click, which the window of the gaps between clicks marks, not from the
# entity rows: those would format every click's date as a string and shuffle one row per user-day.
CLICK_DAY_KINDS = ("day",)
# Each kind's code in the entity rows: a small number, compared by every entity feature on every row, where
# the kind's name was a string comparison each time.
KIND_CODES = {
    kind: code for code, kind in enumerate(dict.fromkeys(k for kinds in ENTITIES.values() for k in kinds))
}


def is_kind(kind: str) -> str:
    """SQL: the entity row is of `kind`."""
    return f"kind = {KIND_CODES[kind]}Y"


@dataclass(frozen=True)
class Distinct:
    """A feature that counts the distinct values of one kind (ENTITIES) a user had since `since`."""

    table: str
    kind: str
    since: str  # SQL literal of the window's first instant

    @property
    def sql(self) -> str:
        """The definition as one aggregate over the log (what a single-node reference computes)."""
        value = ENTITIES[self.table][self.kind]
        return f"size(collect_set(CASE WHEN {_TIME[self.table]} >= {self.since} THEN {value} END))"

    @property
    def from_entities(self) -> str:
        """The same count over the (user, kind, value, first_seen, last_seen) rows of `_entity_rows`."""
        return _count(f"{is_kind(self.kind)} AND last_seen >= {self.since}")

    @property
    def from_last_clicks(self) -> str:
        """A count of click days, over the clicks marked `last_of_day` (`_with_previous_click`): a day was
        seen in a window when its last click falls in it."""
        return _count(f"last_of_day AND event_time >= {self.since}")


Aggregate = str | Distinct  # SQL of an aggregate over the log, or a distinct count


def _or_zero(expression: str) -> str:
    return f"coalesce({expression}, 0D)"


def _seconds(later: str, earlier: str) -> str:
    return f"(unix_micros({later}) - unix_micros({earlier})) / 1e6D"


def _named(features: Sequence[tuple[str, str]]) -> list[Column]:
    return [F.expr(f"{sql} AS `{name}`") for name, sql in features]


# --------------------------------------------------------------------------- feature groups

Windows = dict[int, str]  # window days -> SQL literal of its first instant


def click_flags(spec: FeatureSpec, start: Windows) -> list[tuple[str, str]]:
    """Per click, the conditions the click aggregates test (in which windows it and the click before it
    fall, its type, whether at night), computed once per row rather than once per aggregate: the ~75
    aggregates then only combine booleans (measured: a third less time in the aggregation)."""
    night = f"hour(event_time) >= {spec.night_start_hour} AND hour(event_time) < {spec.night_end_hour}"
    return [
        *((f"in_{w}d", f"event_time >= {start[w]}") for w in spec.windows_days),
        *((f"prev_in_{w}d", f"coalesce(prev_event_time >= {start[w]}, false)") for w in spec.windows_days),
        *((f"is_{t}", f"event_type = '{t}'") for t in ("page_view", "search", "add_to_cart", "favorite",
                                                      "login_success", "login_failure", "review")),
        ("at_night", night),
    ]  # fmt: skip


def _click_aggregates(spec: FeatureSpec, start: Windows) -> list[tuple[str, Aggregate]]:
    """Behaviour in the click log: activity by type, conversion, breadth, timing, dwell, ratings (over the
    clicks with their `click_flags`)."""
    out: list[tuple[str, Aggregate]] = []
    for w in spec.windows_days:
        in_w = f"in_{w}d"

        def of(event_type: str, in_w: str = in_w) -> str:
            return f"{in_w} AND is_{event_type}"

        views, carts = _count(of("page_view")), _count(of("add_to_cart"))
        fails, logins = _count(of("login_failure")), _count(of("login_success"))
        gap = f"{in_w} AND prev_in_{w}d"
        gap_mean, gap_std = (
            f"avg(CASE WHEN {gap} THEN gap_s END)",
            f"stddev_pop(CASE WHEN {gap} THEN gap_s END)",
        )
        extreme = f"{of('review')} AND rating IN ({spec.rating_min}, {spec.rating_max})"
        out += [
            (f"events_{w}d", _count(in_w)),
            (f"sessions_{w}d", Distinct("clicks", "session", start[w])),
            (f"active_days_{w}d", Distinct("clicks", "day", start[w])),
            (f"page_views_{w}d", views),
            (f"searches_{w}d", _count(of("search"))),
            (f"add_to_carts_{w}d", carts),
            (f"favorites_{w}d", _count(of("favorite"))),
            (f"login_successes_{w}d", logins),
            (f"login_failures_{w}d", fails),
            (f"reviews_{w}d", _count(of("review"))),
            (f"cart_per_view_{w}d", _ratio(carts, views)),
            (f"login_failure_rate_{w}d", _ratio(fails, f"{fails} + {logins}")),
            (f"night_share_{w}d", _ratio(_count(f"{in_w} AND at_night"), _count(in_w))),
            (f"distinct_items_{w}d", Distinct("clicks", "item", start[w])),
            (f"distinct_categories_{w}d", Distinct("clicks", "category", start[w])),
            (f"gap_mean_s_{w}d", _or_zero(gap_mean)),
            # Burstiness (sigma - mu) / (sigma + mu): -1 regular, 0 random, towards 1 bursty.
            (f"burstiness_{w}d", _ratio(f"{gap_std} - {gap_mean}", f"{gap_std} + {gap_mean}")),
            (
                f"fast_gap_share_{w}d",
                _ratio(_count(f"{gap} AND gap_s < {spec.fast_gap_seconds}"), _count(gap)),
            ),
            (f"dwell_mean_ms_{w}d", _or_zero(f"avg(CASE WHEN {of('page_view')} THEN dwell_ms END)")),
            (
                f"short_dwell_share_{w}d",
                _ratio(_count(f"{of('page_view')} AND dwell_ms < {spec.short_dwell_ms}"), views),
            ),
            (f"rating_mean_{w}d", _or_zero(f"avg(CASE WHEN {of('review')} THEN rating END)")),
            (f"extreme_rating_share_{w}d", _ratio(_count(extreme), _count(of("review")))),
        ]
    return out


def _item_concentration(spec: FeatureSpec) -> list[tuple[str, str]]:
    """Share of a user's item events on their single most-touched item: click farms hammer a few items.
    Over the user's entity rows, where n_<w> counts the page views and carts of one item in window w."""
    return [(f"top_item_share_{w}d", _ratio(f"max(n_{w})", f"sum(n_{w})")) for w in spec.windows_days]


def _order_aggregates(spec: FeatureSpec, start: Windows) -> list[tuple[str, Aggregate]]:
    """Orders: volume, amounts in the base currency, quantities, cancellations, payment breadth."""
    out: list[tuple[str, Aggregate]] = []
    for w in spec.windows_days:
        in_w = f"order_time >= {start[w]}"
        amount, quantity = f"CASE WHEN {in_w} THEN amount_base END", f"CASE WHEN {in_w} THEN quantity END"
        orders = _count(in_w)
        out += [
            (f"orders_{w}d", orders),
            (f"amount_sum_{w}d", _or_zero(f"sum({amount})")),
            (f"amount_mean_{w}d", _or_zero(f"avg({amount})")),
            (f"amount_max_{w}d", _or_zero(f"max({amount})")),
            (f"amount_std_{w}d", _or_zero(f"stddev_pop({amount})")),
            (f"quantity_sum_{w}d", _or_zero(f"sum({quantity})")),
            (f"quantity_max_{w}d", _or_zero(f"max({quantity})")),
            (f"cancelled_orders_{w}d", _count(f"{in_w} AND status = 'cancelled'")),
            (f"refunded_orders_{w}d", _count(f"{in_w} AND status = 'refunded'")),
            (f"cancel_rate_{w}d", _ratio(_count(f"{in_w} AND status = 'cancelled'"), orders)),
            (f"refund_rate_{w}d", _ratio(_count(f"{in_w} AND status = 'refunded'"), orders)),
            (f"payment_methods_{w}d", Distinct("transactions", "payment", start[w])),
            (f"shipping_addresses_{w}d", Distinct("transactions", "address", start[w])),
        ]
    return out


def _entity_rows(
    clicks: DataFrame, orders: DataFrame, kinds: Sequence[str], spec: FeatureSpec, start: Windows
) -> DataFrame:
    """(user_id, kind, entity, first_seen, last_seen, n_<w>) for the given kinds of ENTITIES: every value of
    those kinds a user was seen with in the look-back, from both logs, in one aggregation; n_<w>: the user's
    page views and carts of that item in window w (0 for other kinds)."""

    def sightings(df: DataFrame, table: str, hot: str) -> DataFrame:
        pairs = ", ".join(
            f"named_struct('kind', {KIND_CODES[kind]}Y, 'entity', {value}, "
            f"'hot', {hot if kind == 'item' else 'false'})"
            for kind, value in ENTITIES[table].items()
            if kind in kinds
        )
        return df.selectExpr("user_id", f"{_TIME[table]} AS t", f"inline(array({pairs}))")

    seen = sightings(clicks, "clicks", "event_type IN ('page_view', 'add_to_cart')").unionByName(
        sightings(orders, "transactions", "false")
    )
    per_window = [(f"n_{w}", _count(f"hot AND t >= {start[w]}")) for w in spec.windows_days]
    return (
        seen.where("entity IS NOT NULL")
        .groupBy("user_id", "kind", "entity")
        .agg(*_named([("first_seen", "min(t)"), ("last_seen", "max(t)"), *per_window]))
    )


def _entities(clicks: DataFrame, orders: DataFrame, spec: FeatureSpec, start: Windows) -> DataFrame:
    """The rows of `_entity_rows` for every kind, with `users`: how many users were seen with the same
    device, IP or address in the longest window (null for the other kinds, whose rows need no second
    shuffle). Every click has a day and every order an order day, so these rows hold every user of the
    look-back. Each part explodes only its own kinds: one set of rows filtered by kind afterwards made each
    part explode every kind of every click (10 M events: 120 M rows generated for 60 M used)."""
    recent = f"last_seen >= {start[spec.max_window]}"
    others = [k for kinds in ENTITIES.values() for k in kinds if k not in (*SHARED_KINDS, *CLICK_DAY_KINDS)]
    shared = _entity_rows(clicks, orders, SHARED_KINDS, spec, start).withColumn(
        "users", F.expr(f"count_if({recent}) OVER (PARTITION BY kind, entity)")
    )
    rest = _entity_rows(clicks, orders, others, spec, start).withColumn("users", F.lit(None).cast("long"))
    return shared.unionByName(rest)


_PLURAL = {"device": "devices", "ip": "ips", "address": "addresses"}


def _entity_aggregates(spec: FeatureSpec, start: Windows) -> list[tuple[str, str]]:
    """Breadth and novelty of devices, IPs and addresses, and how many other users share them (rings)."""
    recent = f"last_seen >= {start[spec.max_window]}"
    breadth = [
        (f"distinct_{_PLURAL[kind]}_{w}d", _count(f"{is_kind(kind)} AND last_seen >= {start[w]}"))
        for kind in ("device", "ip")
        for w in spec.windows_days
    ]
    novelty = [
        (f"new_{_PLURAL[kind]}_{w}d", _count(f"{is_kind(kind)} AND first_seen >= {start[w]}"))
        for kind in _PLURAL
        for w in spec.windows_days
        if w < spec.max_window
    ]
    # The user's most shared entity of each kind counts.
    sharing = [
        (
            f"shared_{kind}_users_{spec.max_window}d",
            f"max(CASE WHEN {is_kind(kind)} AND {recent} THEN users - 1 END)",
        )
        for kind in _PLURAL
    ]
    return breadth + novelty + sharing


def _lifetime_features(cutoff: datetime, spec: FeatureSpec) -> list[tuple[str, str]]:
    """Account age and time from sign-up to first order, within the lifetime look-back (over the user's
    `signup_time` and `first_order_time`). An account whose sign-up is older than the look-back counts as
    `lifetime_days` old."""
    days = spec.lifetime_days
    since_signup = _seconds(_ts(cutoff), "signup_time")
    age = f"CASE WHEN signup_time IS NOT NULL THEN {since_signup} / 86400 ELSE {days} END"
    to_first_order = (
        "CASE WHEN signup_time IS NOT NULL AND first_order_time IS NOT NULL "
        f"THEN {_seconds('first_order_time', 'signup_time')} / 86400 ELSE {days} END"
    )
    return [
        ("account_age_days", f"least({age}, {days}D)"),
        ("days_signup_to_first_order", f"greatest(least({to_first_order}, {days}D), 0D)"),
    ]


def _cross_source_features(spec: FeatureSpec) -> list[tuple[str, str]]:
    """Features that need both logs, computed after the join."""
    return [
        feature
        for w in spec.windows_days
        for feature in (
            (f"orders_per_view_{w}d", _ratio(f"orders_{w}d", f"page_views_{w}d")),
            (f"orders_per_cart_{w}d", _ratio(f"orders_{w}d", f"add_to_carts_{w}d")),
        )
    ]


# --------------------------------------------------------------------------- the table


def _with_previous_click(clicks: DataFrame) -> DataFrame:
    """`prev_event_time`: the user's click before each click (null for the first), for the gaps; and
    `last_of_day`: true on exactly one click of each user-day, its last (for the days seen, CLICK_DAY_KINDS).

    Within a day by a window over user-days (`with_day`: de-duplication's partitioning and order, no
    shuffle), across days from the last click of the user's previous active day (one small row per
    user-day): no task holds more than a user-day, however many events one user has."""
    clicks = with_day(clicks)
    in_day = Window.partitionBy("user_id", DAY).orderBy("event_time")
    rows = clicks.withColumn("_prev_in_day", F.lag("event_time").over(in_day)).withColumn(
        "last_of_day", F.lead("event_time").over(in_day).isNull()
    )
    days = clicks.groupBy("user_id", DAY).agg(F.max("event_time").alias("_last"))
    days = days.select(
        "user_id", DAY, F.lag("_last").over(Window.partitionBy("user_id").orderBy(DAY)).alias("_prev_day")
    )
    return (
        rows.join(days, ["user_id", DAY], "left")
        .withColumn("prev_event_time", F.coalesce("_prev_in_day", "_prev_day"))
        .drop(DAY, "_prev_in_day", "_prev_day")
    )


def user_snapshot(clicks: DataFrame, orders: DataFrame, snapshot_date: date, spec: FeatureSpec) -> DataFrame:
    """Every user seen in the look-back before the cut-off of `snapshot_date`, with `active` (seen in the
    longest window: the snapshot's rows, see `build_user_features`) and the features. The inactive ones
    get no row and no score, but are counted (evaluate counts known anomalies among them as misses)."""
    cutoff = cutoff_of(snapshot_date)
    start = {w: _ts(cutoff - timedelta(days=w)) for w in (*spec.windows_days, spec.lifetime_days)}
    rates = ", ".join(f"'{code}', {float(rate)}D" for code, rate in sorted(spec.currency_rates.items()))
    life, recent = f">= {start[spec.lifetime_days]} AND {{t}} < {_ts(cutoff)}", start[spec.max_window]

    life_clicks = clicks.where(f"event_time {life.format(t='event_time')}")
    life_orders = orders.where(f"order_time {life.format(t='order_time')}").withColumn(
        "amount_base", F.expr(f"amount * coalesce(map({rates})[currency], 1D)")
    )
    timed_clicks = _with_previous_click(life_clicks).selectExpr(
        "*", f"{_seconds('event_time', 'prev_event_time')} AS gap_s", *(
            f"{sql} AS {name}" for name, sql in click_flags(spec, start)
        ))  # fmt: skip

    click_features, order_features = _click_aggregates(spec, start), _order_aggregates(spec, start)
    counts = [(name, a) for name, a in (*click_features, *order_features) if isinstance(a, Distinct)]
    by_day = [(name, a.from_last_clicks) for name, a in counts if a.kind in CLICK_DAY_KINDS]
    distinct = [(name, a.from_entities) for name, a in counts if a.kind not in CLICK_DAY_KINDS]
    entity_features = [*distinct, *_item_concentration(spec), *_entity_aggregates(spec, start)]
    per_user = [
        timed_clicks.groupBy("user_id").agg(*_named([
            *_plain(click_features),
            *by_day,
            ("signup_time", "min(CASE WHEN event_type = 'signup' THEN event_time END)"),
            ("recent_clicks", _count(f"event_time >= {recent}")),
        ])),
        life_orders.groupBy("user_id").agg(*_named([
            *_plain(order_features),
            ("first_order_time", "min(order_time)"),
            ("recent_orders", _count(f"order_time >= {recent}")),
        ])),
        _entities(life_clicks, life_orders, spec, start).groupBy("user_id").agg(*_named(entity_features)),
    ]  # fmt: skip
    # entities first: they hold every user, and left joins keep their partitioning by user (no shuffle)
    joined = reduce(lambda left, part: left.join(part, "user_id", "left"), [per_user[2], *per_user[:2]])
    derived = [*_lifetime_features(cutoff, spec), *_cross_source_features(spec)]
    joined = joined.select("*", *_named(derived))
    names = [
        *(name for name, _ in click_features),
        *(name for name, _ in _item_concentration(spec)),
        *(name for name, _ in order_features),
        *(name for name, _ in _entity_aggregates(spec, start)),
        *(name for name, _ in derived),
    ]
    return joined.selectExpr(
        "user_id",
        f"DATE '{snapshot_date.isoformat()}' AS snapshot_date",
        "coalesce(recent_clicks, 0) + coalesce(recent_orders, 0) > 0 AS active",
        *[f"CAST(coalesce(`{c}`, 0) AS DOUBLE) AS `{c}`" for c in names],
    )


def _plain(features: Sequence[tuple[str, Aggregate]]) -> list[tuple[str, str]]:
    return [(name, a) for name, a in features if isinstance(a, str)]


def build_user_features(
    clicks: DataFrame, orders: DataFrame, snapshot_date: date, spec: FeatureSpec
) -> DataFrame:
    """One row per user active in the longest window before the cut-off of `snapshot_date`.

    `clicks` and `orders` are validated canonical rows (see validation.py). All features are doubles, never
    null; column order is stable, so the feature fingerprint only changes when the features do.
    """
    return user_snapshot(clicks, orders, snapshot_date, spec).where("active").drop("active")


def feature_columns(schema: T.StructType) -> list[str]:
    """The model's inputs, in table order."""
    return [f.name for f in schema.fields if f.name not in KEY_COLUMNS]


def feature_fingerprint(schema: T.StructType) -> str:
    """Hash of the ordered feature names and types: a model only scores the features it was trained on."""
    described = [(f.name, f.dataType.simpleString()) for f in schema.fields if f.name not in KEY_COLUMNS]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()
