"""Semi-supervised: the log autoencoder learns normal behaviour from everyone not known to be anomalous, and a
logistic head on its residuals learns from the few labels which deviations matter."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from shopguard.model.autoencoder import build_log_autoencoder
from shopguard.model.backend import keras
from shopguard.model.base import Fitted
from shopguard.model.data import labelled_and_presumed_normal
from shopguard.model.explain import Explanation
from shopguard.model.fitting import predict, robust_autoencoder
from shopguard.model.layers import ResidualLogisticHead

if TYPE_CHECKING:
    from shopguard.model.training import TrainingParams

log = logging.getLogger("shopguard.model")


def fit(
    x: np.ndarray, labels: np.ndarray | None, is_val: np.ndarray, params: TrainingParams, log_dir: str | None
) -> Fitted:
    fit_rows, val_rows = ~is_val, is_val
    known = ~np.isnan(labels) if labels is not None else np.zeros(len(x), bool)
    positives = known & fit_rows & (labels == 1)
    negatives = known & fit_rows & (labels == 0)
    if labels is None or positives.sum() < 5 or negatives.sum() < 5:
        raise ValueError(
            "semi_supervised mode needs at least 5 anomalous and 5 normal labelled training users; "
            f"found {positives.sum()} and {negatives.sum()}"
        )
    model, history = robust_autoencoder(
        x, fit_rows & ~positives, val_rows, params, log_dir, build_log_autoencoder
    )
    return Fitted(_with_logistic_head(model, x, labels, fit_rows, params), history, fit_rows, val_rows)


def score_batch(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, Explanation | None]:
    head, _ = predict(model, x)
    return head[:, 0].astype(np.float64), Explanation(head[:, 1:])


def _with_logistic_head(
    autoencoder: keras.Model, x: np.ndarray, labels: np.ndarray, fit_rows: np.ndarray, params: TrainingParams
) -> keras.Model:
    """autoencoder + a logistic regression on its residuals, fitted with scikit-learn on the labelled
    training users and a sample of unlabelled ones taken as normal (positive-unlabelled learning)."""
    from sklearn.linear_model import LogisticRegression

    residuals = predict(autoencoder, x)[0]
    squared = residuals**2
    head_inputs = np.column_stack([np.log(squared + 1e-2), np.log(squared.mean(axis=1) + 1e-2)])
    mean, scale = head_inputs[fit_rows].mean(axis=0), head_inputs[fit_rows].std(axis=0) + 1e-6
    rows, y, weight = labelled_and_presumed_normal(labels, fit_rows, params)
    head = LogisticRegression(C=params.semi_c, max_iter=5000)
    head.fit((head_inputs[rows] - mean) / scale, y.astype(int), sample_weight=weight)
    log.info("logistic head on %d labelled and presumed-normal users", len(rows))

    inputs = autoencoder.input
    residual = autoencoder.output
    scored = ResidualLogisticHead(head.coef_[0], float(head.intercept_[0]), mean, scale, name="head")(
        residual
    )
    return keras.Model(inputs, [scored, residual], name="shopguard_semi_supervised")
