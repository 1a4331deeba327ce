"""The arrays models take, the stable splits of users by hash (validation, holdout), and the rows to learn
from when labels are few. NumPy only, no Keras."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from shopguard.config import ModelSettings

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


def labelled_and_presumed_normal(
    labels: np.ndarray, rows: np.ndarray, params: ModelSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows to learn from when labels are few: the labelled ones among `rows`, plus a sample of the
    unlabelled ones taken as normal at a low weight (most users are normal: positive-unlabelled learning).
    Weights balance the two classes. Returns (row indices, targets, weights). NumPy only: the evaluation's
    gradient-boosted baseline learns from the same rows without importing Keras."""
    known = np.flatnonzero(rows & ~np.isnan(labels))
    unlabelled = np.flatnonzero(rows & np.isnan(labels))
    rng = np.random.default_rng(params.seed)
    sample = rng.choice(unlabelled, size=min(params.unlabelled_sample, len(unlabelled)), replace=False)
    index = np.concatenate([known, sample])
    y = np.concatenate([labels[known], np.zeros(len(sample))]).astype(np.float32)
    weight = np.concatenate([np.ones(len(known)), np.full(len(sample), params.unlabelled_weight)])
    for target in (0.0, 1.0):  # each class carries half of the total weight
        chosen = y == target
        if chosen.any():
            weight[chosen] *= 0.5 * weight.sum() / weight[chosen].sum()
    return index, y, weight.astype(np.float32)
