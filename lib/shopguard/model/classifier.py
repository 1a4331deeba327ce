"""Supervised: a small regularised network outputs P(anomalous), learnt from the labelled users and a sample
of unlabelled ones taken as normal. Reasons come from occlusion (shopguard.model.explain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from keras import layers

from shopguard.model.backend import keras
from shopguard.model.base import Fitted
from shopguard.model.data import labelled_and_presumed_normal
from shopguard.model.explain import Explanation
from shopguard.model.fitting import fit_keras, predict
from shopguard.model.layers import preprocessing

if TYPE_CHECKING:
    from shopguard.model.training import TrainingParams


def build_classifier(x_train: np.ndarray, params: TrainingParams) -> keras.Model:
    """raw features -> P(anomalous)."""
    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    h, _ = preprocessing(inputs, x_train)
    penalty = keras.regularizers.L2(params.classifier_l2) if params.classifier_l2 else None
    for i, units in enumerate(params.hidden_units):
        h = layers.Dense(units, activation="relu", kernel_regularizer=penalty, name=f"hidden_{i}")(h)
        if params.classifier_dropout:
            h = layers.Dropout(params.classifier_dropout, name=f"dropout_{i}")(h)
    probability = layers.Dense(1, activation="sigmoid", kernel_regularizer=penalty, name="probability")(h)
    return keras.Model(inputs, probability, name="shopguard_classifier")


def fit(
    x: np.ndarray, labels: np.ndarray | None, is_val: np.ndarray, params: TrainingParams, log_dir: str | None
) -> Fitted:
    if labels is None or np.isnan(labels).all():
        raise ValueError("classifier mode needs labels; none are known for these snapshots")
    if len(np.unique(labels[~np.isnan(labels) & ~is_val])) < 2:
        raise ValueError("classifier mode needs both labels 0 and 1 among the training users")
    fit, y_fit, w_fit = labelled_and_presumed_normal(labels, ~is_val, params)
    val, y_val, w_val = labelled_and_presumed_normal(labels, is_val, params)
    fit_rows, val_rows = np.isin(np.arange(len(x)), fit), np.isin(np.arange(len(x)), val)
    model = build_classifier(x[fit], params)
    history = fit_keras(model, x[fit], y_fit[:, None], x[val], y_val[:, None], params, "binary_crossentropy",
                        log_dir, sample_weight=(w_fit, w_val), batch_size=max(16, min(params.batch_size, len(fit) // 32)),
                        start_from_epoch=10)  # fmt: skip
    return Fitted(model, history, fit_rows, val_rows & ~np.isnan(labels))  # label metrics on real labels only


def score_batch(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, Explanation | None]:
    return predict(model, x)[0][:, 0].astype(np.float64), None
