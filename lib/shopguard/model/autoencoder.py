"""Unsupervised: an autoencoder learns normal behaviour; what it cannot reconstruct is anomalous.

model.unsupervised picks the scorer: ensemble (the default, shopguard.model.ensemble: the autoencoder's
per-feature normalised error fused with a tail score over rank-normalised features, an isolation forest and
the k-th neighbour distance) or log_autoencoder (its mean squared residual alone, the earlier default). The
autoencoder is the same: log-standardised features, a narrow bottleneck, a trimmed refit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shopguard.model import ensemble
from shopguard.model.backend import keras
from shopguard.model.base import Fitted
from shopguard.model.explain import Explanation
from shopguard.model.fitting import predict, robust_autoencoder
from shopguard.model.layers import preprocessing

if TYPE_CHECKING:
    from shopguard.model.training import TrainingParams


def build_log_autoencoder(x_train: np.ndarray, params: TrainingParams) -> keras.Model:
    """raw features -> residual per feature (standard units)."""
    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    z, _ = preprocessing(inputs, x_train)
    return keras.Model(inputs, ensemble.residual_of(z, params), name="shopguard_autoencoder")


# model.seed of the k-th of model.trainings: seed + k * this
TRAINING_SEED_STEP = 1000


def fit(
    x: np.ndarray, labels: np.ndarray | None, is_val: np.ndarray, params: TrainingParams, log_dir: str | None
) -> Fitted:
    fit_rows, val_rows = ~is_val, is_val
    if params.unsupervised == "log_autoencoder":
        model, history = robust_autoencoder(x, fit_rows, val_rows, params, log_dir, build_log_autoencoder)
        return Fitted(model, history, fit_rows, val_rows)
    trainings = []
    for k in range(params.trainings):  # the first is the single training's, seed for seed
        seeded = params.model_copy(update={"seed": params.seed + k * TRAINING_SEED_STEP})
        model, history = robust_autoencoder(x, fit_rows, val_rows, seeded, log_dir, build_log_autoencoder)
        cdf = ensemble.EmpiricalCDF(**ensemble.ecdf_knots(x[fit_rows]), name="empirical_cdf")
        fused = ensemble.with_fused_score(model, cdf, x[fit_rows])
        trainings.append((ensemble.with_detectors(fused, x[fit_rows], seeded), history))
    if len(trainings) == 1:
        return Fitted(trainings[0][0], trainings[0][1], fit_rows, val_rows)
    return Fitted(ensemble.mean_of([m for m, _ in trainings]), trainings[0][1], fit_rows, val_rows)


def score_batch(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, Explanation | None]:
    outputs = predict(model, x)
    if model.name == ensemble.FUSED:
        scores, weight, _ = ensemble.split_output(outputs[0])
        return scores, Explanation(weight)
    # log_autoencoder, and models saved before the fused default
    (residuals,) = outputs
    return np.mean(residuals**2, axis=1).astype(np.float64), Explanation(residuals**2)
