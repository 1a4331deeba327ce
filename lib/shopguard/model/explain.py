"""Reasons: the features behind each score, as 'feature high' / 'feature low'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shopguard.model.backend import keras


@dataclass(frozen=True)
class Explanation:
    """Per row and feature: how much the feature drove the score, and whether it was high or low."""

    weight: np.ndarray
    high: np.ndarray


def reasons(
    model: keras.Model,
    mode: str,
    x: np.ndarray,
    scores: np.ndarray,
    explanation: Explanation | None,
    feature_names: Sequence[str],
    reference_values: Sequence[float],
    n_reasons: int,
) -> list[list[str]]:
    """The top features behind each score, as 'feature high' / 'feature low'.

    autoencoder: the largest squared residuals, high when the user is above what the model expected;
    semi_supervised: the largest contributions to the head's logit; classifier: occlusion, the drop in
    score when one feature is put back to its training median."""
    from shopguard.model.training import batch_scores  # the modes explain through this module

    if n_reasons == 0 or len(x) == 0:
        return [[] for _ in range(len(x))]
    reference = np.asarray(reference_values, dtype=np.float32)
    if explanation is not None:
        contribution, direction = explanation.weight, explanation.high
    else:
        contribution = np.empty_like(x, dtype=np.float64)
        for j in range(x.shape[1]):  # occlusion: put one feature back to its median
            occluded = np.array(x, dtype=np.float32, copy=True)
            occluded[:, j] = reference[j]
            contribution[:, j] = scores - batch_scores(model, mode, occluded)[0]
        direction = x > reference
    top = np.argsort(-contribution, axis=1)[:, :n_reasons]
    names = np.asarray(feature_names)
    return [
        [f"{names[j]} {'high' if direction[i, j] else 'low'}" for j in row if contribution[i, j] > 0]
        for i, row in enumerate(top)
    ]
