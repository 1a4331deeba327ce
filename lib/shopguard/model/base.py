"""What each mode module (autoencoder, semi_supervised, classifier) provides: one small interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from shopguard.model.backend import keras
    from shopguard.model.explain import Explanation
    from shopguard.model.training import TrainingParams


@dataclass
class Fitted:
    """A fitted Keras model, its training history, and the rows it learnt from and was validated on."""

    model: keras.Model
    history: Any  # keras.callbacks.History
    fit_rows: np.ndarray
    val_rows: np.ndarray


class ModeModule(Protocol):
    def fit(
        self,
        x: np.ndarray,
        labels: np.ndarray | None,
        is_val: np.ndarray,
        params: TrainingParams,
        log_dir: str | None,
    ) -> Fitted:
        """Fit on the driver; `is_val` marks the validation users."""
        ...

    def score_batch(self, model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, Explanation | None]:
        """Scores of a batch, with the explanation the model gives for free (None: reasons need occlusion)."""
        ...
