"""Realistic synthetic clicks, orders and labels, with labelled injected anomalies.

Users are simulated in blocks; each block draws from its own random stream seeded by (seed, block), so the
output depends only on the settings, never on how Spark splits the work, and blocks run in parallel
(`synthetic_records` is a mapInPandas over a DataFrame of block numbers).

Normal users are deliberately heterogeneous so the detection problem is not trivially separable: several
behaviour profiles (casual, regular, window shopper, power buyer, reseller buying in bulk, keen reviewer),
heavy-tailed activity, a weekly rhythm, night owls, families sharing a device and an address, mobile users
behind carrier IPs shared by thousands, travellers who change devices. Six anomaly types are injected,
each with an intensity in [0.35, 1.5]; a share of them is "subtle" (intensity < 0.6).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.anomalies import ANOMALIES, DESIGNED
from shopguard.config import GenerateSettings
from shopguard.simulation import (
    DAY,
    ITEMS_PER_CATEGORY,
    N_CATEGORIES,
    PAYMENT_METHODS,
    click_rows,
    ip_address,
    order_rows,
)

CARRIER_IPS = 300  # mobile carriers put many users behind few addresses (CGNAT)
CURRENCIES = np.array(["EUR", "USD", "GBP"])

PROFILES = ("casual", "regular", "window_shopper", "power_buyer", "reseller", "reviewer")
PROFILE_SHARE = np.array([0.40, 0.28, 0.15, 0.08, 0.03, 0.06])
# sessions per day (median), events per session (mean), probability that a cart becomes an order
PROFILE_RATE = np.array([0.12, 0.3, 0.25, 0.6, 0.4, 0.2])
PROFILE_SESSION_LEN = np.array([5.0, 7.0, 9.0, 8.0, 6.0, 6.0])
PROFILE_ORDER_P = np.array([0.35, 0.5, 0.08, 0.7, 0.85, 0.4])
PROFILE_AMOUNT = np.array([35.0, 45.0, 30.0, 90.0, 250.0, 40.0])
# event type mix after the first event: page_view, search, add_to_cart, favorite, review
BROWSE_TYPES = np.array(["page_view", "search", "add_to_cart", "favorite", "review"])
PROFILE_MIX = np.array(
    [
        [0.62, 0.20, 0.09, 0.08, 0.01],
        [0.58, 0.20, 0.12, 0.08, 0.02],
        [0.66, 0.20, 0.05, 0.09, 0.00],
        [0.52, 0.18, 0.18, 0.09, 0.03],
        [0.50, 0.22, 0.20, 0.06, 0.02],
        [0.55, 0.15, 0.09, 0.08, 0.13],
    ]
)
NORMAL_RATINGS = np.array([0.08, 0.07, 0.15, 0.33, 0.37])  # 1..5 stars

UNION_SCHEMA = T.StructType(
    [T.StructField("record_type", T.StringType())]
    + list(schemas.CLICKS.fields)
    + [f for f in schemas.TRANSACTIONS.fields if f.name not in ("user_id", "device_id", "ip")]
    + [f for f in schemas.LABELS.fields if f.name != "user_id"]
    + [T.StructField("intensity", T.DoubleType())]
)

# Ground truth of a generated data set: every injected anomaly, labelled or not (benchmarks only).
TRUTH = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("anomaly_type", T.StringType()),
        T.StructField("intensity", T.DoubleType()),
        T.StructField("subtle", T.BooleanType()),
    ]
)
SUBTLE_BELOW = 0.6
_NULL = np.array(None, dtype=object)  # a null id where a click has no item


class SyntheticSpec(GenerateSettings):
    """The `generate:` settings with the last day resolved (the settings' default, null, means yesterday)."""

    end_date: date = date(2026, 11, 22)

    @classmethod
    def from_settings(cls, generate: GenerateSettings, today: date) -> SyntheticSpec:
        return cls(**{**generate.model_dump(), "end_date": generate.end_date or today - timedelta(days=1)})

    @property
    def blocks(self) -> int:
        return -(-self.users // self.users_per_block)

    @property
    def start(self) -> datetime:
        """First instant simulated: midnight UTC, `days` days before the end of `end_date`."""
        first_day = self.end_date - timedelta(days=self.days - 1)
        return datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)


# --------------------------------------------------------------------------- small helpers


def _ids(prefix: str, numbers: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, numbers.astype(np.int64).astype(str))


def _carrier_ip(k: np.ndarray) -> np.ndarray:
    k = k.astype(int)
    return np.char.add(
        np.char.add("100.64.", (k // 256).astype(str)), np.char.add(".", (k % 256).astype(str))
    )


def _diurnal_hours(rng: np.random.Generator, n: int, night_owl: np.ndarray) -> np.ndarray:
    """Hours of day with lunch and evening peaks; night owls shifted towards 0-4 h."""
    peak = rng.choice([9.5, 13.0, 20.5], size=n, p=[0.2, 0.3, 0.5])
    hours = rng.normal(peak, 2.2)
    hours = np.where(night_owl, rng.normal(1.5, 2.0, size=n), hours)
    return np.mod(hours, 24.0)


@dataclass
class _Users:
    uid: np.ndarray
    profile: np.ndarray
    rate: np.ndarray
    signup_day: np.ndarray  # -1: signed up before the simulated period
    night_owl: np.ndarray
    traveller: np.ndarray
    n_devices: np.ndarray
    household: np.ndarray  # uid of the household head (self when alone)
    mobile_share: np.ndarray
    currency: np.ndarray
    payment: np.ndarray  # (n, 2) indices into PAYMENT_METHODS
    categories: np.ndarray  # (n, 3) preferred categories


def _draw_users(rng: np.random.Generator, uid: np.ndarray, spec: SyntheticSpec) -> _Users:
    n = len(uid)
    profile = rng.choice(len(PROFILES), size=n, p=PROFILE_SHARE)
    rate = PROFILE_RATE[profile] * rng.lognormal(0.0, 0.9, size=n)  # heavy-tailed activity
    new = rng.random(n) < 0.12
    signup_day = np.where(new, rng.integers(0, spec.days, size=n), -1)
    household = uid.copy()
    families = np.flatnonzero(rng.random(n) < 0.12)
    if n > 1 and len(families):
        household[families] = uid[rng.integers(0, n, size=len(families))]
    return _Users(
        uid=uid,
        profile=profile,
        rate=np.clip(rate, 0.01, 12.0),
        signup_day=signup_day,
        night_owl=rng.random(n) < 0.08,
        traveller=rng.random(n) < 0.04,
        n_devices=1 + rng.poisson(0.5, size=n),
        household=household,
        mobile_share=rng.beta(1.2, 2.0, size=n),
        currency=rng.choice(3, size=n, p=[0.7, 0.2, 0.1]),
        payment=rng.choice(3, size=(n, 2), p=[0.6, 0.3, 0.1]),
        categories=rng.integers(0, N_CATEGORIES, size=(n, 3)),
    )


# --------------------------------------------------------------------------- normal behaviour


@dataclass
class _Sessions:
    user: np.ndarray  # index into the block's users
    start: np.ndarray  # seconds since epoch
    length: np.ndarray  # events
    profile: np.ndarray
    device: np.ndarray
    ip: np.ndarray
    id: np.ndarray
    signup_at: np.ndarray  # per user of the block


def _normal_behaviour(
    rng: np.random.Generator, users: _Users, spec: SyntheticSpec, t0: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sessions -> events and orders for every user of the block, vectorised. (The draws happen in this
    order, sessions, events, orders: the same seed gives the same data.)"""
    sessions = _sessions(rng, users, spec, t0)
    events, typo, e_type, e_session = _events(rng, users, sessions)
    orders = _orders_of(rng, users, sessions, e_type, e_session)
    typos = events[typo].assign(event_type="login_failure", t=lambda d: d.t - 20, dwell_ms=np.nan)
    return pd.concat([events, typos, _signups(users, sessions.signup_at)], ignore_index=True), orders


def _sessions(rng: np.random.Generator, users: _Users, spec: SyntheticSpec, t0: int) -> _Sessions:
    """When each user browses (weekly rhythm, bursts of interest, time of day), from which device and IP."""
    n, days = len(users.uid), spec.days
    weekday = (np.arange(days) + spec.start.weekday()) % 7
    day_factor = np.where(weekday >= 5, 1.35, 1.0) * rng.gamma(8.0, 1 / 8.0, size=days)
    user_day = rng.gamma(2.0, 0.5, size=(n, days))  # bursts of interest
    lam = users.rate[:, None] * day_factor[None, :] * user_day
    lam[np.arange(days)[None, :] < users.signup_day[:, None]] = 0.0
    counts = rng.poisson(lam)
    s_user, s_day = np.nonzero(counts)
    reps = counts[s_user, s_day]
    s_user, s_day = np.repeat(s_user, reps), np.repeat(s_day, reps)
    n_sessions = len(s_user)
    hours = _diurnal_hours(rng, n_sessions, users.night_owl[s_user])
    s_start = t0 + s_day * DAY + (hours * 3600).astype(np.int64)
    signup_at = t0 + users.signup_day * DAY + rng.integers(0, DAY // 2, size=n)
    s_start = np.where(users.signup_day[s_user] >= 0, np.maximum(s_start, signup_at[s_user] + 60), s_start)

    profile = users.profile[s_user]
    s_len = 1 + rng.geometric(1.0 / PROFILE_SESSION_LEN[profile])
    s_device_k = rng.integers(0, users.n_devices[s_user])
    travelling = users.traveller[s_user] & (rng.random(n_sessions) < 0.3)
    s_device = np.where(
        travelling,
        _ids("dv-t", users.uid[s_user] * 100 + rng.integers(0, 20, size=n_sessions)),
        np.where(
            (s_device_k == 0) & (users.household[s_user] != users.uid[s_user]),
            _ids("dv-h", users.household[s_user]),
            np.char.add(_ids("dv", users.uid[s_user]), _ids("-", s_device_k)),
        ),
    )
    on_mobile = rng.random(n_sessions) < users.mobile_share[s_user]
    s_ip = np.where(
        on_mobile,
        _carrier_ip(rng.integers(0, CARRIER_IPS, size=n_sessions)),
        np.where(
            travelling,
            ip_address(rng.integers(10**6, 10**9, size=n_sessions)),
            ip_address(users.household[s_user]),
        ),
    )
    s_id = np.char.add(_ids("s", users.uid[s_user]), _ids("-", np.arange(n_sessions)))
    return _Sessions(s_user, s_start, s_len, profile, s_device, s_ip, s_id, signup_at)


def _events(
    rng: np.random.Generator, users: _Users, sessions: _Sessions
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The events of each session: (events, which logins were mistyped first, event types, session of each)."""
    s_user, s_start, s_len, profile = sessions.user, sessions.start, sessions.length, sessions.profile
    s_device, s_ip, s_id, n_sessions = sessions.device, sessions.ip, sessions.id, len(sessions.user)
    e_session = np.repeat(np.arange(n_sessions), s_len)
    n_events = len(e_session)
    first = np.r_[0, np.cumsum(s_len)[:-1]]
    position = np.arange(n_events) - np.repeat(first, s_len)
    u = rng.random(n_events)
    cum = np.cumsum(PROFILE_MIX[profile[e_session]], axis=1)
    e_type = BROWSE_TYPES[(u[:, None] > cum).sum(axis=1).clip(max=len(BROWSE_TYPES) - 1)].astype(object)
    login = (position == 0) & (rng.random(n_events) < 0.35)
    e_type[login] = "login_success"
    typo = login & (rng.random(n_events) < 0.04)  # a mistyped password now and then
    gaps = rng.lognormal(np.log(25.0), 1.0, size=n_events)
    gaps[position == 0] = 0.0
    offsets = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], s_len)
    e_time = s_start[e_session] + offsets.astype(np.int64)
    e_user = s_user[e_session]
    category = users.categories[e_user, rng.integers(0, 3, size=n_events)]
    category = np.where(rng.random(n_events) < 0.15, rng.integers(0, N_CATEGORIES, size=n_events), category)
    item = category * ITEMS_PER_CATEGORY + np.minimum(
        rng.zipf(1.6, size=n_events) - 1, ITEMS_PER_CATEGORY - 1
    )
    browsing = np.isin(e_type, ["page_view", "search", "add_to_cart", "favorite", "review"])
    dwell = np.where(browsing, rng.lognormal(np.log(18_000), 0.9, size=n_events), np.nan)
    rating = np.where(e_type == "review", rng.choice(5, size=n_events, p=NORMAL_RATINGS) + 1, np.nan)

    events = pd.DataFrame(
        {
            "user_id": users.uid[e_user],
            "t": e_time,
            "event_type": e_type,
            "session_id": s_id[e_session],
            "item": np.where(browsing, item, -1),
            "category": np.where(browsing, category, -1),
            "device_id": s_device[e_session],
            "ip": s_ip[e_session],
            "dwell_ms": dwell,
            "rating": rating,
        }
    )
    return events, typo, e_type, e_session


def _signups(users: _Users, signup_at: np.ndarray) -> pd.DataFrame:
    new_users = np.flatnonzero(users.signup_day >= 0)
    return pd.DataFrame(
        {
            "user_id": users.uid[new_users],
            "t": signup_at[new_users],
            "event_type": "signup",
            "session_id": _ids("s-signup", users.uid[new_users]),
            "item": -1,
            "category": -1,
            "device_id": np.char.add(_ids("dv", users.uid[new_users]), "-0"),
            "ip": ip_address(users.household[new_users]),
            "dwell_ms": np.nan,
            "rating": np.nan,
        }
    )


def _orders_of(
    rng: np.random.Generator, users: _Users, sessions: _Sessions, e_type: np.ndarray, e_session: np.ndarray
) -> pd.DataFrame:
    """A session with a cart may end in an order."""
    s_user, s_start, s_len, profile = sessions.user, sessions.start, sessions.length, sessions.profile
    s_device, s_ip, n_sessions = sessions.device, sessions.ip, len(sessions.user)
    carts = (
        pd.Series(e_type == "add_to_cart").groupby(e_session).sum().reindex(range(n_sessions), fill_value=0)
    )
    ordering = np.flatnonzero((carts.to_numpy() > 0) & (rng.random(n_sessions) < PROFILE_ORDER_P[profile]))
    o_user = s_user[ordering]
    o_profile = profile[ordering]
    reseller = PROFILES.index("reseller")
    quantity = np.where(
        o_profile == reseller,
        rng.integers(5, 45, size=len(ordering)),
        1 + rng.poisson(0.4, size=len(ordering)),
    )
    unit = PROFILE_AMOUNT[o_profile] * rng.lognormal(0.0, 0.7, size=len(ordering))
    amount = np.round(unit * np.where(o_profile == reseller, quantity / 6.0, np.sqrt(quantity)), 2)
    status = rng.choice(np.array(list(schemas.ORDER_STATUSES)), size=len(ordering), p=[0.93, 0.045, 0.025])
    session_end = s_start[ordering] + (s_len[ordering] * 40)
    return pd.DataFrame(
        {
            "user_id": users.uid[o_user],
            "t": session_end + rng.integers(5, 300, size=len(ordering)),
            "amount": amount,
            "currency": CURRENCIES[users.currency[o_user]],
            "quantity": quantity,
            "status": status,
            "payment_method": PAYMENT_METHODS[users.payment[o_user, rng.integers(0, 2, size=len(ordering))]],
            "device_id": s_device[ordering],
            "ip": s_ip[ordering],
            "shipping_address_id": np.where(
                rng.random(len(ordering)) < 0.85,
                _ids("ad", users.household[o_user]),
                _ids("ad2-", users.uid[o_user]),
            ),
        }
    )


# --------------------------------------------------------------------------- anomalies


def _campaigns(rng: np.random.Generator, block_key: int) -> dict[str, dict[str, Any]]:
    """What the block's click farm and review campaign share among their accounts."""
    return {
        "brushing_campaign": {
            "devices": [f"dv-farm{block_key}-{i}" for i in range(3)],
            "ips": list(ip_address(np.arange(3) + block_key * 10 + 9_000_000_000)),
            "items": rng.integers(0, N_CATEGORIES * ITEMS_PER_CATEGORY, size=3),
            "address": f"ad-farm{block_key}",
        },
        "review_campaign": {
            "device": f"dv-rev{block_key}",
            "ip": ip_address(np.array([block_key + 8_000_000_000]))[0],
            "items": rng.integers(0, N_CATEGORIES * ITEMS_PER_CATEGORY, size=4),
            "five_star_share": float(rng.choice([0.1, 0.9])),
        },
    }


def _ring(block_key: int, ring_id: int) -> dict[str, Any]:
    """The devices, IPs and addresses three payment-fraud accounts share."""
    return {
        "devices": [f"dv-ring{block_key}-{ring_id}-{i}" for i in range(2)],
        "ips": list(ip_address(np.arange(2) + (block_key + ring_id) * 10 + 6_000_000_000)),
        "addresses": [f"ad-ring{block_key}-{ring_id}-{i}" for i in range(2)],
    }


def _inject(rng, users: _Users, spec: SyntheticSpec, t0: int, events: pd.DataFrame, orders: pd.DataFrame):
    """Choose anomalous users, add their episodes; returns extra events, extra orders and labels."""
    n = len(users.uid)
    anomalous = np.flatnonzero(rng.random(n) < spec.anomaly_share)
    kinds = rng.integers(0, len(DESIGNED), size=len(anomalous))
    subtle = rng.random(len(anomalous)) < spec.subtle_share
    intensity = np.where(
        subtle, rng.uniform(0.35, 0.6, len(anomalous)), rng.uniform(0.6, 1.5, len(anomalous))
    )
    block_key = int(users.uid[0])
    campaigns = _campaigns(rng, block_key)
    rings: dict[int, dict[str, Any]] = {}
    fraudsters = 0
    extra_clicks: list[pd.DataFrame] = []
    extra_orders: list[pd.DataFrame] = []
    labels: list[tuple[str, int, str | None, date]] = []
    truth: list[tuple[str, str, float, bool]] = []
    last_day = spec.end_date
    for index, kind_index, k in zip(anomalous, kinds, intensity, strict=True):
        uid = int(users.uid[index])
        user = f"u{uid:08d}"
        kind = ANOMALIES[DESIGNED[kind_index]]
        home = {
            "device": f"dv{uid}-0",
            "ip": ip_address(np.array([users.household[index]]))[0],
            "payment": PAYMENT_METHODS[users.payment[index, 0]],
            "address": f"ad{users.household[index]}",
        }
        if kind.context == "ring":
            ring_id, fraudsters = fraudsters // 3, fraudsters + 1  # rings of three accounts
            context = rings.setdefault(ring_id, _ring(block_key, ring_id))
        else:
            context = {"home": home, **campaigns}[kind.context]
        c, o = kind.inject(rng, user, uid, k, spec, t0, context)
        extra_clicks += c
        extra_orders += o
        if kind.fresh_account:  # a fresh fake account: no normal history
            events = events[events.user_id != uid]
            orders = orders[orders.user_id != uid]
        truth.append((user, kind.name, float(k), bool(k < SUBTLE_BELOW)))
        if rng.random() < spec.anomaly_label_share:
            # Investigations label cases days to weeks after they happen; some only after the snapshot.
            labelled_day = last_day - timedelta(days=int(rng.integers(-10, 20)))
            labels.append((user, 1, kind.name, labelled_day))
    normal = np.setdiff1d(np.arange(n), anomalous)
    known_good = normal[rng.random(len(normal)) < spec.known_good_share]
    for index in known_good:
        cleared_day = spec.end_date - timedelta(days=int(rng.integers(0, spec.days)))
        labels.append((f"u{int(users.uid[index]):08d}", 0, None, cleared_day))
    return events, orders, extra_clicks, extra_orders, labels, truth


# --------------------------------------------------------------------------- beyond the design

WHOLESALE_PREFIX = "w"  # wholesale buyers' ids: w00001234 (normal users: u00001234)


def _wholesale(rng, user, uid, spec, t0):
    """A legitimate business account: one to three large orders every working day of the period, one
    device, one address, office hours. Extreme on amounts and quantities, but the same every day."""
    days = np.arange(spec.days)
    workdays = days[(days + spec.start.weekday()) % 7 < 5]
    day_of = np.repeat(workdays, rng.integers(1, 4, size=len(workdays)))
    t = t0 + day_of * DAY + rng.integers(8 * 3600, 17 * 3600, size=len(day_of))
    n, device, ip = len(t), f"dv{uid}-w", ip_address(np.array([uid + 7_000_000_000]))[0]
    items = rng.integers(0, N_CATEGORIES * ITEMS_PER_CATEGORY, size=n)
    views = click_rows(
        user, t - 300, "page_view", f"s-w{uid}", items, device, ip, rng.integers(5000, 60000, size=n)
    )
    carts = click_rows(
        user, t - 60, "add_to_cart", f"s-w{uid}", items, device, ip, rng.integers(2000, 9000, size=n)
    )
    quantity = rng.integers(10, 60, size=n)
    amount = quantity * rng.uniform(15, 60, size=n)
    return [views, carts], [
        order_rows(user, t, amount, quantity, "paid", "bank_transfer", device, ip, f"ad-w{uid}")
    ]


def _beyond_design(rng, users: _Users, spec: SyntheticSpec, t0: int, events, orders, anomalous: set[str]):
    """Card testers (truth: card_testing, no labels: investigators have not met them yet) and wholesale
    buyers (normal; ids start with WHOLESALE_PREFIX), chosen among the block's normal users, whose usual
    behaviour they replace."""
    n = len(users.uid)
    free = np.array([i for i in range(n) if f"u{int(users.uid[i]):08d}" not in anomalous], dtype=int)
    draw = rng.random(len(free))
    testers = free[draw < spec.unseen_share]
    wholesale = free[(draw >= spec.unseen_share) & (draw < spec.unseen_share + spec.wholesale_share)]
    clicks: list[pd.DataFrame] = []
    new_orders: list[pd.DataFrame] = []
    truth: list[tuple[str, str, float, bool]] = []
    for index in testers:
        uid, k = int(users.uid[index]), float(rng.uniform(0.35, 1.5))
        home = {"device": f"dv{uid}-0", "ip": ip_address(np.array([users.household[index]]))[0],
                "address": f"ad{users.household[index]}"}  # fmt: skip
        c, o = ANOMALIES["card_testing"].inject(rng, f"u{uid:08d}", uid, k, spec, t0, home)
        clicks, new_orders = clicks + c, new_orders + o
        truth.append((f"u{uid:08d}", "card_testing", k, bool(k < SUBTLE_BELOW)))
    for index in wholesale:
        uid = int(users.uid[index])
        c, o = _wholesale(rng, f"{WHOLESALE_PREFIX}{uid:08d}", uid, spec, t0)
        clicks, new_orders = clicks + c, new_orders + o
    replaced = users.uid[wholesale]
    events, orders = events[~events.user_id.isin(replaced)], orders[~orders.user_id.isin(replaced)]
    return events, orders, clicks, new_orders, truth


# --------------------------------------------------------------------------- per block


def simulate_block(block: int, spec: SyntheticSpec) -> pd.DataFrame:
    """All records of one block of users, in the union layout of UNION_SCHEMA."""
    rng = np.random.default_rng([spec.seed, block])
    first = block * spec.users_per_block
    uid = np.arange(first, min(first + spec.users_per_block, spec.users), dtype=np.int64)
    if len(uid) == 0:
        return pd.DataFrame(columns=UNION_SCHEMA.fieldNames())
    t0 = int(spec.start.timestamp())
    users = _draw_users(rng, uid, spec)
    events, orders = _normal_behaviour(rng, users, spec, t0)
    events["user_id"] = events["user_id"].astype(np.int64)
    orders["user_id"] = orders["user_id"].astype(np.int64)
    events, orders, extra_clicks, extra_orders, labels, truth = _inject(rng, users, spec, t0, events, orders)
    if spec.unseen_share > 0 or spec.wholesale_share > 0:  # its own random stream: the rest stays as it was
        beyond = _beyond_design(np.random.default_rng([spec.seed, block, 1]), users, spec, t0, events, orders,
                                {user for user, *_ in truth})  # fmt: skip
        events, orders = beyond[0], beyond[1]
        extra_clicks, extra_orders, truth = (
            extra_clicks + beyond[2],
            extra_orders + beyond[3],
            truth + beyond[4],
        )
    events = events.assign(user_id=lambda d: np.char.mod("u%08d", d.user_id.to_numpy()))
    orders = orders.assign(user_id=lambda d: np.char.mod("u%08d", d.user_id.to_numpy()))
    events = pd.concat([events, *extra_clicks], ignore_index=True)
    orders = pd.concat([orders, *extra_orders], ignore_index=True)
    end = t0 + spec.days * DAY
    events = events[(events.t >= t0) & (events.t < end)]
    orders = orders[(orders.t >= t0) & (orders.t < end)].reset_index(drop=True)

    clicks_out, orders_out = _click_records(events), _order_records(orders, block)
    labels_out = _label_records(labels)
    truth_rows = pd.DataFrame(truth, columns=["user_id", "anomaly_type", "intensity", "subtle"])
    truth_out = truth_rows.drop(columns="subtle").assign(record_type="truth")
    if spec.label_noise > 0 and len(labels_out):
        flip = rng.random(len(labels_out)) < spec.label_noise
        labels_out.loc[flip, "label"] = 1 - labels_out.loc[flip, "label"]
    # The date partition is the day a row was logged; a broken clock below does not move it.
    clicks_out["event_date"] = clicks_out["event_time"].dt.date
    orders_out["order_date"] = orders_out["order_time"].dt.date
    if spec.dirty_share > 0:
        clicks_out, orders_out = _dirty(rng, clicks_out, orders_out, spec.dirty_share)
    frames = [clicks_out, orders_out, labels_out, truth_out]
    return pd.concat(frames, ignore_index=True).reindex(columns=UNION_SCHEMA.fieldNames())


def _click_records(events: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_type": "click",
            "user_id": events.user_id.to_numpy(),
            "event_time": pd.to_datetime(events.t.to_numpy(), unit="s", utc=True),
            "event_type": events.event_type.to_numpy(),
            "session_id": events.session_id.to_numpy(),
            "item_id": np.where(
                events.item >= 0,
                np.char.mod("it%06d", events.item.to_numpy().astype(int)),
                _NULL,
            ),
            "category_id": np.where(
                events.category >= 0,
                np.char.mod("cat%03d", events.category.to_numpy().astype(int)),
                _NULL,
            ),
            "device_id": events.device_id.to_numpy(),
            "ip": events.ip.to_numpy(),
            "dwell_ms": pd.array(np.round(events.dwell_ms.to_numpy()), dtype="Int64"),
            "rating": pd.array(events.rating.to_numpy(), dtype="Int32"),
        }
    )


def _order_records(orders: pd.DataFrame, block: int) -> pd.DataFrame:
    order_block = f"{block:05d}"
    return pd.DataFrame(
        {
            "record_type": "order",
            "user_id": orders.user_id.to_numpy(),
            "device_id": orders.device_id.to_numpy(),
            "ip": orders.ip.to_numpy(),
            "order_id": np.char.add(f"o{order_block}-", np.arange(len(orders)).astype(str)),
            "order_time": pd.to_datetime(orders.t.to_numpy(), unit="s", utc=True),
            "amount": orders.amount.to_numpy(dtype=float),
            "currency": orders.currency.to_numpy(),
            "quantity": orders.quantity.to_numpy(dtype=np.int32),
            "status": orders.status.to_numpy(),
            "payment_method": orders.payment_method.to_numpy(),
            "shipping_address_id": orders.shipping_address_id.to_numpy(),
        }
    )


def _label_records(labels: list[tuple[str, int, str | None, date]]) -> pd.DataFrame:
    label_rows = pd.DataFrame(labels, columns=["user_id", "label", "anomaly_type", "labelled_day"])
    return pd.DataFrame(
        {
            "record_type": "label",
            "user_id": label_rows.user_id,
            "label": label_rows.label.astype(np.int32),
            "anomaly_type": label_rows.anomaly_type,
            "labelled_at": pd.to_datetime(label_rows.labelled_day).dt.tz_localize("UTC")
            + pd.Timedelta(hours=12),
        }
    )


def _dirty(rng, clicks: pd.DataFrame, orders: pd.DataFrame, share: float):
    """Break a few rows the ways real logs break: missing ids, unknown types, clock errors, bad amounts,
    ids in another case or with spaces, exact duplicates, and repeated orders with a later status."""
    clicks, orders = clicks.copy(), orders.copy()
    for frame, kinds in ((clicks, 6), (orders, 5)):
        n = rng.binomial(len(frame), share)
        rows = frame.index[rng.choice(len(frame), size=n, replace=False)]
        for row, kind in zip(rows, rng.integers(0, kinds, size=n), strict=True):
            if kind == 0:
                frame.loc[row, "user_id"] = None if rng.random() < 0.5 else "  "
            elif kind == 1:
                # valid once normalised
                frame.loc[row, "user_id"] = f" {str(frame.loc[row, 'user_id']).upper()} "
            elif frame is clicks and kind == 2:
                frame.loc[row, "event_type"] = "teleport"
            elif frame is clicks and kind == 3:
                frame.loc[row, "event_time"] = frame.loc[row, "event_time"] + pd.Timedelta(days=3650)
            elif frame is clicks and kind == 4:
                frame.loc[row, "dwell_ms"] = -1
            elif kind == 2:
                frame.loc[row, "amount"] = -frame.loc[row, "amount"] if rng.random() < 0.5 else np.nan
            elif kind == 3:
                frame.loc[row, "quantity"] = 0
            else:
                frame.loc[row, "status"] = "lost"
    duplicates = clicks.iloc[rng.choice(len(clicks), size=rng.binomial(len(clicks), share), replace=False)]
    updates = orders.iloc[rng.choice(len(orders), size=rng.binomial(len(orders), 2 * share), replace=False)]
    updates = updates.assign(status="cancelled")  # the same order, cancelled later: one row must remain
    return pd.concat([clicks, duplicates], ignore_index=True), pd.concat([orders, updates], ignore_index=True)


def synthetic_records(blocks: DataFrame, spec: SyntheticSpec) -> DataFrame:
    """DataFrame of block numbers (column `id`, e.g. spark.range) -> every simulated record."""

    def simulate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for block in batch["id"]:
                yield simulate_block(int(block), spec)

    return blocks.mapInPandas(simulate, UNION_SCHEMA)


def split_records(records: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """Union layout -> (clicks, transactions, labels, truth), canonical schemas with date partitions."""
    clicks = records.where(F.col("record_type") == "click")
    orders = records.where(F.col("record_type") == "order")
    labels = records.where(F.col("record_type") == "label")
    truth = records.where(F.col("record_type") == "truth").withColumn(
        "subtle", F.col("intensity") < SUBTLE_BELOW
    )
    return (
        clicks.select(*schemas.CLICKS.fieldNames()),
        orders.select(*schemas.TRANSACTIONS.fieldNames()),
        labels.select(*schemas.LABELS.fieldNames()),
        truth.select(*TRUTH.fieldNames()),
    )
