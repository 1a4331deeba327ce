"""Reasons: the features behind each score, as 'feature high' / 'feature low'."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shopguard.model.backend import keras


@dataclass(frozen=True)
class Explanation:
    """Per row and feature: how much the feature drove the score (its direction is the data's, see
    `reasons`)."""

    weight: np.ndarray


def reasons(
    model: keras.Model,
    mode: str,
    x: np.ndarray,
    scores: np.ndarray,
    explanation: Explanation | None,
    feature_names: Sequence[str],
    reference_values: Sequence[float],
    n_reasons: int,
    constant_features: Collection[str] = (),
) -> list[list[str]]:
    """The top features behind each score, as 'feature high' / 'feature low'.

    How much a feature drove the score comes from the mode: autoencoder, its share of the per-feature score;
    semi_supervised, its contribution to the head's logit; classifier, occlusion (the drop in score when
    the feature is put back to its training median). Whether it is `high` or `low` is never the model's
    view (the sign of a residual says what the model expected, not where the user stands): it compares
    the user's value with the training population's median, `reference_values`. So a feature at the
    median, or one that did not vary among the training users (`constant_features`: all users 0 on data
    without reviews, say), is never a reason, however much the model leaned on it."""
    from shopguard.model.training import batch_scores  # the modes explain through this module

    if n_reasons == 0 or len(x) == 0:
        return [[] for _ in range(len(x))]
    reference = np.asarray(reference_values, dtype=np.float32)
    if explanation is not None:
        contribution = np.array(explanation.weight, dtype=np.float64, copy=True)
    else:
        contribution = np.empty_like(x, dtype=np.float64)
        for j in range(x.shape[1]):  # occlusion: put one feature back to its median
            occluded = np.array(x, dtype=np.float32, copy=True)
            occluded[:, j] = reference[j]
            contribution[:, j] = scores - batch_scores(model, mode, occluded)[0]
    names = np.asarray(feature_names)
    contribution[(x == reference) | np.isin(names, list(constant_features))] = 0.0
    top = np.argsort(-contribution, axis=1)[:, :n_reasons]
    high = x > reference
    return [
        [f"{names[j]} {'high' if high[i, j] else 'low'}" for j in row if contribution[i, j] > 0]
        for i, row in enumerate(top)
    ]
