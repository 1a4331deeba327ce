"""The primitives simulated behaviour is written with: ids and addresses, times, and click and order rows
(shopguard.synthetic for normal users, shopguard.anomalies for the injected ones)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from shopguard.synthetic import SyntheticSpec

Values = Any  # a scalar or an array of one value per row

DAY = 86_400


N_CATEGORIES = 60


ITEMS_PER_CATEGORY = 400


PAYMENT_METHODS = np.array(
    ["card", "paypal", "apple_pay", "bank_transfer", "klarna", "gift_card", "google_pay"]
)


def ip_address(numbers: np.ndarray) -> np.ndarray:
    """Deterministic public-looking IPv4 addresses from integers."""
    n = (numbers.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    parts = [((n >> np.uint64(s)) & np.uint64(255)).astype(int) for s in (24, 16, 8, 0)]
    parts[0] = 11 + parts[0] % 200  # keep away from private and reserved first octets
    out = parts[0].astype(str)
    for p in parts[1:]:
        out = np.char.add(np.char.add(out, "."), p.astype(str))
    return out


def episode(rng: np.random.Generator, spec: SyntheticSpec, t0: int, days: int) -> tuple[int, int]:
    """An anomaly episode ending on the last simulated day (seconds since epoch)."""
    end = t0 + spec.days * DAY - int(rng.integers(0, 6 * 3600))
    return max(t0, end - days * DAY), end


def times_between(rng: np.random.Generator, start: int, end: int, n: int) -> np.ndarray:
    return np.sort(rng.integers(start, max(start + 1, end), size=n))


def click_rows(
    user: str,
    t: np.ndarray,
    event_type: Values,
    session: Values,
    item: Values,
    device: Values,
    ip: Values,
    dwell: Values,
    rating: Values = np.nan,
) -> pd.DataFrame:
    """Click rows of one user: each value is one for all rows or one per row (numpy broadcasting)."""
    n = len(t)
    item = np.broadcast_to(item, n)
    return pd.DataFrame(
        {
            "user_id": user,
            "t": t,
            "event_type": np.broadcast_to(event_type, n),
            "session_id": np.broadcast_to(session, n),
            "item": item,
            "category": np.where(item >= 0, item // ITEMS_PER_CATEGORY, -1),
            "device_id": np.broadcast_to(device, n),
            "ip": np.broadcast_to(ip, n),
            "dwell_ms": np.broadcast_to(dwell, n).astype(float),
            "rating": np.broadcast_to(rating, n).astype(float),
        }
    )


def order_rows(
    user: str,
    t: np.ndarray,
    amount: Values,
    quantity: Values,
    status: Values,
    payment: Values,
    device: Values,
    ip: Values,
    address: Values,
    currency: str = "EUR",
) -> pd.DataFrame:
    """Order rows of one user, values broadcast as in `click_rows`."""
    n = len(t)
    return pd.DataFrame(
        {
            "user_id": user,
            "t": t,
            "amount": np.round(np.broadcast_to(amount, n).astype(float), 2),
            "currency": currency,
            "quantity": np.broadcast_to(quantity, n).astype(int),
            "status": np.broadcast_to(status, n),
            "payment_method": np.broadcast_to(payment, n),
            "device_id": np.broadcast_to(device, n),
            "ip": np.broadcast_to(ip, n),
            "shipping_address_id": np.broadcast_to(address, n),
        }
    )
