"""Every anomaly type, declared once: what it is (the docs' list), how the generator injects it, and the
features that characterise it (a reason "means something" when an injected anomaly's top reason names one).

To add a type: one `AnomalyType` below with its injector, and a test. Types with `designed=False` are beyond
what the features were built for; the generator injects them only when `generate.unseen_share` > 0.
The order of DESIGNED is part of the generator's random draws: append, never reorder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from shopguard.simulation import (
    DAY,
    ITEMS_PER_CATEGORY,
    N_CATEGORIES,
    PAYMENT_METHODS,
    click_rows,
    episode,
    ip_address,
    order_rows,
    times_between,
)

if TYPE_CHECKING:
    from shopguard.synthetic import SyntheticSpec

Rows = tuple[list[pd.DataFrame], list[pd.DataFrame]]
Context = dict[str, Any]  # what an injector shares with others: see AnomalyType.context
# (rng, user id, numeric id, intensity, spec, first simulated second, context) -> (click frames, order frames)
Injector = Callable[..., Rows]


@dataclass(frozen=True)
class AnomalyType:
    name: str
    description: str
    inject: Injector
    # what the injector shares with other anomalous users of its block: the user's own home (device, IP,
    # address), a click farm's or a review campaign's devices, or a payment-fraud ring's
    context: Literal["home", "brushing_campaign", "review_campaign", "ring"]
    signature: tuple[str, ...]  # features (window suffix dropped) that explain it
    fresh_account: bool = False  # a new fake account: the user's normal history is removed
    designed: bool = True  # False: beyond the design of the features, injected only with unseen_share > 0


def _brushing(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, campaign: Context
) -> Rows:
    start, end = episode(rng, spec, t0, int(rng.integers(2, 6)))
    clicks, orders = [], []
    for s in range(max(1, int(rng.poisson(3 * k)))):
        t_s = int(rng.integers(start, end))
        n = int(rng.integers(15, 50) * min(k, 1.0)) + 5
        t = t_s + np.cumsum(rng.integers(1, 4, size=n) / max(k, 0.5)).astype(np.int64)
        types = rng.choice(["page_view", "add_to_cart"], size=n, p=[0.7, 0.3])
        device = campaign["devices"][rng.integers(0, len(campaign["devices"]))]
        ip = campaign["ips"][rng.integers(0, len(campaign["ips"]))]
        item = rng.choice(campaign["items"], size=n)
        clicks.append(
            click_rows(user, t, types, f"s-b{uid}-{s}", item, device, ip, rng.integers(200, 1500, size=n))
        )
        n_orders = int(rng.integers(1, 4))
        orders.append(
            order_rows(
                user,
                t[-1] + np.arange(1, n_orders + 1) * 7,
                rng.uniform(5, 25, n_orders),
                1,
                "paid",
                "card",
                device,
                ip,
                campaign["address"],
            )
        )
    return clicks, orders


def _bulk_order(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, home: Context
) -> Rows:
    start, end = episode(rng, spec, t0, int(rng.integers(1, 4)))
    n = int(rng.integers(2, 6) + 8 * k * rng.random())
    t = times_between(rng, start, end, n)
    quantity = (rng.integers(40, 300, size=n) * k).astype(int) + 20
    amount = quantity * rng.uniform(8, 40, size=n)
    clicks = click_rows(
        user,
        t - 60,
        "add_to_cart",
        f"s-bulk{uid}",
        rng.integers(0, 24000, size=n),
        home["device"],
        home["ip"],
        rng.integers(3000, 20000, size=n),
    )
    return [clicks], [
        order_rows(
            user, t, amount, quantity, "paid", home["payment"], home["device"], home["ip"], home["address"]
        )
    ]


def _cancel_abuse(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, home: Context
) -> Rows:
    start, end = episode(rng, spec, t0, int(rng.integers(5, 20)))
    n = int(rng.integers(6, 16) * max(k, 0.4))
    t = times_between(rng, start, end, n)
    cancel_share = min(0.98, 0.45 + 0.35 * k)
    status = rng.choice(
        ["paid", "cancelled", "refunded"],
        size=n,
        p=[1 - cancel_share, cancel_share * 0.6, cancel_share * 0.4],
    )
    clicks = click_rows(
        user,
        t - 90,
        "add_to_cart",
        f"s-ca{uid}",
        rng.integers(0, 24000, size=n),
        home["device"],
        home["ip"],
        rng.integers(3000, 30000, size=n),
    )
    return [clicks], [
        order_rows(
            user,
            t,
            rng.lognormal(np.log(60), 0.6, n),
            1,
            status,
            home["payment"],
            home["device"],
            home["ip"],
            home["address"],
        )
    ]


def _account_takeover(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, home: Context
) -> Rows:
    start, end = episode(rng, spec, t0, 1)
    device, ip = f"dv-ato{uid}", ip_address(np.array([uid + 7_000_000_000]))[0]
    n_fail = int(rng.integers(3, 12) * k) + 2
    t_fail = times_between(rng, start, start + 1800, n_fail)
    t_ok = t_fail[-1] + int(rng.integers(10, 120))
    n_orders = int(rng.integers(1, 3) + 2 * k * rng.random())
    t_orders = t_ok + np.cumsum(rng.integers(60, 900, size=n_orders))
    clicks = [
        click_rows(user, t_fail, "login_failure", f"s-ato{uid}", -1, device, ip, np.nan),
        click_rows(user, np.array([t_ok]), "login_success", f"s-ato{uid}", -1, device, ip, np.nan),
        click_rows(
            user,
            t_orders - 30,
            "add_to_cart",
            f"s-ato{uid}",
            rng.integers(0, 24000, size=n_orders),
            device,
            ip,
            rng.integers(1000, 6000, size=n_orders),
        ),
    ]
    amount = rng.uniform(400, 2500, size=n_orders) * max(k, 0.4)
    return clicks, [order_rows(user, t_orders, amount, 1, "paid", "gift_card", device, ip, f"ad-ato{uid}")]


def _payment_fraud(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, ring: Context
) -> Rows:
    start, end = episode(rng, spec, t0, int(rng.integers(1, 5)))
    signup = start - int(rng.integers(0, 2 * DAY))
    device = ring["devices"][rng.integers(0, len(ring["devices"]))]
    ip = ring["ips"][rng.integers(0, len(ring["ips"]))]
    clicks = [click_rows(user, np.array([max(t0, signup)]), "signup", f"s-pf{uid}", -1, device, ip, np.nan)]
    n = int(rng.integers(2, 6) * max(k, 0.5)) + 1
    t = times_between(rng, max(t0, signup) + 600, end, n)
    devices = np.array(ring["devices"])[rng.integers(0, len(ring["devices"]), size=n)]
    methods = PAYMENT_METHODS[rng.choice(len(PAYMENT_METHODS), size=n)]
    addresses = np.array(ring["addresses"])[rng.integers(0, len(ring["addresses"]), size=n)]
    clicks.append(
        click_rows(
            user,
            t - 45,
            "add_to_cart",
            f"s-pf{uid}",
            rng.integers(0, 24000, size=n),
            devices,
            ip,
            rng.integers(2000, 9000, size=n),
        )
    )
    status = rng.choice(["paid", "refunded"], size=n, p=[0.8, 0.2])
    amount = rng.uniform(200, 1800, size=n) * max(k, 0.4)
    return clicks, [order_rows(user, t, amount, 1, status, methods, devices, ip, addresses)]


def _review_abuse(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, campaign: Context
) -> Rows:
    start, end = episode(rng, spec, t0, int(rng.integers(2, 8)))
    n = int(rng.integers(8, 40) * k) + 4
    t = times_between(rng, start, end, n)
    rating = np.where(rng.random(n) < campaign["five_star_share"], 5, 1)
    item = rng.choice(campaign["items"], size=n)
    views = click_rows(
        user,
        t - 20,
        "page_view",
        f"s-ra{uid}",
        item,
        campaign["device"],
        campaign["ip"],
        rng.integers(500, 4000, size=n),
    )
    reviews = click_rows(
        user,
        t,
        "review",
        f"s-ra{uid}",
        item,
        campaign["device"],
        campaign["ip"],
        rng.integers(2000, 9000, size=n),
        rating,
    )
    return [views, reviews], []


def _card_testing(
    rng: np.random.Generator, user: str, uid: int, k: float, spec: SyntheticSpec, t0: int, home: Context
) -> Rows:
    """Stolen card numbers tried with many tiny orders over a day or three, most of them declined
    (cancelled): no feature was built for it (no minimum amount, no decline rate)."""
    start, end = episode(rng, spec, t0, int(rng.integers(1, 4)))
    n = int(rng.integers(8, 30) * max(k, 0.4)) + 3
    t = times_between(rng, start, end, n)
    carts = click_rows(user, t - rng.integers(20, 120, size=n), "add_to_cart", f"s-ct{uid}",
                    rng.integers(0, N_CATEGORIES * ITEMS_PER_CATEGORY, size=n), home["device"], home["ip"],
                    rng.integers(1000, 5000, size=n))  # fmt: skip
    methods = PAYMENT_METHODS[rng.choice([0, 0, 0, 2, 6], size=n)]  # mostly cards
    status = rng.choice(["paid", "cancelled"], size=n, p=[0.4, 0.6])
    amount = rng.uniform(0.5, 3.0, size=n)
    return [carts], [
        order_rows(user, t, amount, 1, status, methods, home["device"], home["ip"], home["address"])
    ]


ANOMALIES: dict[str, AnomalyType] = {
    t.name: t
    for t in (
        AnomalyType(
            "brushing",
            "click farming: bursts of fast, short views and carts on a few items from a farm's shared devices, "
            "then small paid orders",
            inject=_brushing,
            context="brushing_campaign",
            signature=(
                "fast_gap_share",
                "short_dwell_share",
                "top_item_share",
                "page_views",
                "add_to_carts",
                "events",
                "burstiness",
                "gap_mean_s",
                "dwell_mean_ms",
                "shared_device_users",
                "shared_ip_users",
                "cart_per_view",
                "orders",
                "sessions",
                "distinct_items",
            ),
        ),
        AnomalyType(
            "bulk_order",
            "a few orders of very large quantities within days",
            inject=_bulk_order,
            context="home",
            signature=(
                "quantity_sum",
                "quantity_max",
                "amount_sum",
                "amount_max",
                "amount_mean",
                "amount_std",
                "orders",
                "add_to_carts",
                "orders_per_view",
                "orders_per_cart",
            ),
        ),
        AnomalyType(
            "cancel_abuse",
            "many orders over weeks, most cancelled or refunded",
            inject=_cancel_abuse,
            context="home",
            signature=(
                "cancel_rate",
                "refund_rate",
                "cancelled_orders",
                "refunded_orders",
                "orders",
                "add_to_carts",
                "orders_per_view",
                "orders_per_cart",
                "amount_sum",
            ),
        ),
        AnomalyType(
            "account_takeover",
            "a burst of failed logins, then a new device ordering expensive items with gift cards to a new address",
            inject=_account_takeover,
            context="home",
            signature=(
                "login_failures",
                "login_failure_rate",
                "new_devices",
                "new_ips",
                "new_addresses",
                "distinct_devices",
                "distinct_ips",
                "amount_max",
                "amount_sum",
                "amount_mean",
                "amount_std",
                "payment_methods",
                "shipping_addresses",
                "night_share",
                "orders",
            ),
        ),
        AnomalyType(
            "payment_fraud",
            "fresh accounts in rings of three sharing devices and addresses, ordering soon after signup",
            inject=_payment_fraud,
            context="ring",
            signature=(
                "account_age_days",
                "days_signup_to_first_order",
                "payment_methods",
                "shipping_addresses",
                "shared_device_users",
                "shared_address_users",
                "shared_ip_users",
                "distinct_devices",
                "new_devices",
                "new_addresses",
                "new_ips",
                "amount_max",
                "amount_sum",
                "amount_mean",
                "amount_std",
                "refund_rate",
                "refunded_orders",
                "orders",
                "orders_per_view",
                "orders_per_cart",
            ),
            fresh_account=True,
        ),
        AnomalyType(
            "review_abuse",
            "many extreme reviews of a few items from one shared device",
            inject=_review_abuse,
            context="review_campaign",
            signature=(
                "reviews",
                "extreme_rating_share",
                "rating_mean",
                "shared_device_users",
                "shared_ip_users",
                "orders_per_view",
                "dwell_mean_ms",
                "short_dwell_share",
                "top_item_share",
            ),
        ),
        AnomalyType(
            "card_testing",
            "stolen cards tried with many tiny orders, most declined (beyond the design: no feature was built for "
            "it)",
            inject=_card_testing,
            context="home",
            signature=(),
            designed=False,
        ),
    )
}
DESIGNED: tuple[str, ...] = tuple(name for name, t in ANOMALIES.items() if t.designed)
SIGNATURES: dict[str, tuple[str, ...]] = {name: t.signature for name, t in ANOMALIES.items() if t.signature}
