"""What every mode's training shares: Keras fit with early stopping, the robust (trimmed) autoencoder fit,
and label metrics (the positive-unlabelled rows are in `data`: NumPy only)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from keras import ops

from shopguard.model.backend import keras

if TYPE_CHECKING:
    from shopguard.model.training import TrainingParams

log = logging.getLogger("shopguard.model")


def predict(model: keras.Model, x: np.ndarray, batch_rows: int = 8192) -> list[np.ndarray]:
    """Call the model on slices (much faster than model.predict on small batches); numpy, one per output."""
    x = np.asarray(x, dtype=np.float32)
    parts: list[list[np.ndarray]] = []
    for i in range(0, max(len(x), 1), batch_rows):
        out = model(x[i : i + batch_rows], training=False)
        parts.append([ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


def robust_autoencoder(
    x: np.ndarray,
    fit_rows: np.ndarray,
    val_rows: np.ndarray,
    params: TrainingParams,
    log_dir: str | None,
    build: Callable[[np.ndarray, TrainingParams], keras.Model],
) -> tuple[keras.Model, Any]:
    """Fit, then refit without the `trim_share` rows the first fit reconstructs worst (likely anomalies),
    so the model does not learn to reconstruct them too."""
    zeros = np.zeros_like(x)  # the model outputs residuals; their best value is 0
    model = build(x[fit_rows], params)
    history = fit_keras(model, x[fit_rows], zeros[fit_rows], x[val_rows], zeros[val_rows], params, "mse",
                   None if params.trim_share > 0 else log_dir)  # fmt: skip
    if params.trim_share > 0:
        first = np.mean(predict(model, x)[0] ** 2, axis=1)
        fit_rows = fit_rows & (first <= np.quantile(first[fit_rows], 1 - params.trim_share))
        model = build(x[fit_rows], params)
        history = fit_keras(
            model, x[fit_rows], zeros[fit_rows], x[val_rows], zeros[val_rows], params, "mse", log_dir
        )
    return model, history


def fit_keras(
    model: keras.Model,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    params: TrainingParams,
    loss: str,
    log_dir: str | None,
    sample_weight: tuple[np.ndarray, np.ndarray] | None = None,
    batch_size: int | None = None,
    start_from_epoch: int = 0,
) -> Any:  # keras.callbacks.History
    """Keras fit with the run's seed, early stopping on the validation loss, TensorBoard logs where asked."""
    keras.utils.set_random_seed(params.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss=loss,
        steps_per_execution=params.steps_per_execution,
    )
    callbacks: list[keras.callbacks.Callback] = []
    has_val = len(x_val) > 0
    if has_val and params.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=params.early_stopping_patience,
                restore_best_weights=True,
                start_from_epoch=start_from_epoch,
            )
        )
    if log_dir and keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False))
    fit_weight, val_weight = sample_weight if sample_weight is not None else (None, None)
    validation = None
    if has_val:
        validation = (x_val, y_val, val_weight) if val_weight is not None else (x_val, y_val)
    return model.fit(
        x_fit,
        y_fit,
        sample_weight=fit_weight,
        validation_data=validation,
        epochs=params.epochs,
        batch_size=batch_size or params.batch_size,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )


def label_metrics(scores: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    known = ~np.isnan(labels)
    y = labels[known]
    if known.sum() < 2 or len(np.unique(y)) < 2:
        return {}
    return {
        f"{prefix}roc_auc": float(roc_auc_score(y, scores[known])),
        f"{prefix}pr_auc": float(average_precision_score(y, scores[known])),
        f"{prefix}labelled": float(known.sum()),
    }
