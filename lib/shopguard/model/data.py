"""The arrays models take, and the stable splits of users by hash (validation, holdout)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

UserIds = Sequence[str] | np.ndarray  # a list, or the object array of FeatureArrays.user_ids


class FeatureArrays(NamedTuple):
    user_ids: np.ndarray  # object
    x: np.ndarray  # float32, one row per user and snapshot
    labels: np.ndarray  # float64, NaN where no verdict is known


def feature_arrays(table: pa.Table, feature_names: Sequence[str]) -> FeatureArrays:
    """The Arrow batches a job collected (`user_id`, `label` and the features) as the arrays models take."""
    return FeatureArrays(
        user_ids=np.asarray(table.column("user_id").to_pylist(), dtype=object),
        x=np.column_stack([table.column(n).to_numpy() for n in feature_names]).astype(np.float32),
        labels=table.column("label").to_pandas().astype("float64").to_numpy(),
    )


def user_share_mask(user_ids: UserIds, share: float, purpose: str) -> np.ndarray:
    """A stable `share` of users, chosen by a hash of the user id salted with `purpose`, so one user's
    snapshots always fall on the same side and different purposes pick independent users."""
    salt = purpose.encode() + b":"
    buckets = np.fromiter(
        (zlib.crc32(salt + str(u).encode()) % 10_000 for u in user_ids), dtype=np.int64, count=len(user_ids)
    )
    return buckets < share * 10_000


def validation_mask(user_ids: UserIds, fraction: float) -> np.ndarray:
    """The validation split of training: by user."""
    return user_share_mask(user_ids, fraction, "validation")


def holdout_mask(user_ids: UserIds, share: float) -> np.ndarray:
    """Users never trained on (model.holdout_share), kept for an honest evaluation."""
    return user_share_mask(user_ids, share, "holdout")
