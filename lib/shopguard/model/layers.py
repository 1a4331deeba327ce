"""The layers every shopguard model is built from: registered Keras objects, so a saved model loads with
`safe_mode=True` (no lambdas, no pickles), and the preprocessing that puts raw features in standard units inside
the model (nothing can drift between training and scoring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import layers, ops

from shopguard.model.backend import keras

Tensor = Any  # a Keras tensor: Keras ships no type information
Floats = Sequence[float] | np.ndarray


@keras.saving.register_keras_serializable(package="shopguard")
class SignedLog1p(layers.Layer):
    """sign(x) * log(1 + |x|): counts and amounts are heavy-tailed; this keeps them in a range a net likes."""

    def call(self, inputs: Tensor) -> Tensor:
        return ops.sign(inputs) * ops.log1p(ops.abs(inputs))


@keras.saving.register_keras_serializable(package="shopguard")
class Clip(layers.Layer):
    """Bounds standardised values, so one absurd input cannot swamp the score."""

    def __init__(self, limit: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = float(limit)

    def call(self, inputs: Tensor) -> Tensor:
        return ops.clip(inputs, -self.limit, self.limit)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "limit": self.limit}


@keras.saving.register_keras_serializable(package="shopguard")
class ResidualLogisticHead(layers.Layer):
    """The semi-supervised head: a logistic regression on the autoencoder's residuals, fitted on the few
    labelled users. Inputs: residuals (rows x features). Output: P(anomalous) in column 0, then each
    feature's contribution to the logit (for reasons). Weights are fixed: they come from scikit-learn."""

    def __init__(
        self,
        coef: Floats,
        intercept: float,
        mean: Floats,
        scale: Floats,
        epsilon: float = 1e-2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.coef = [float(v) for v in coef]
        self.intercept = float(intercept)
        self.mean = [float(v) for v in mean]
        self.scale = [float(v) for v in scale]
        self.epsilon = float(epsilon)

    def call(self, residuals: Tensor) -> Tensor:
        squared = residuals * residuals
        inputs = ops.concatenate(
            [
                ops.log(squared + self.epsilon),
                ops.log(ops.mean(squared, axis=1, keepdims=True) + self.epsilon),
            ],
            axis=1,
        )
        contributions = (inputs - ops.convert_to_tensor(self.mean)) / ops.convert_to_tensor(self.scale)
        contributions = contributions * ops.convert_to_tensor(self.coef)
        logit = ops.sum(contributions, axis=1, keepdims=True) + self.intercept
        return ops.concatenate([ops.sigmoid(logit), contributions[:, :-1]], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "coef": self.coef, "intercept": self.intercept, "mean": self.mean,
                "scale": self.scale, "epsilon": self.epsilon}  # fmt: skip


def preprocessing(inputs: Tensor, x_train: np.ndarray) -> tuple[Tensor, layers.Normalization]:
    logged = SignedLog1p(name="signed_log1p")(inputs)
    normalisation = layers.Normalization(name="normalisation")
    normalisation.adapt(np.sign(x_train) * np.log1p(np.abs(x_train)))
    return Clip(10.0, name="clip")(normalisation(logged)), normalisation
