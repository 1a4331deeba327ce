"""The Keras models, their training on the driver, and the score of a batch of users.

Everything a scorer needs is inside the saved model: a signed log transform and a Normalization layer
adapted on the training data turn raw features into standard units, so the features table stays in its
natural units and no preprocessing can drift between training and scoring.

* autoencoder (unsupervised): the model outputs the residual z - reconstruction(z) per feature in standard
  units; the score is the mean squared residual and the reasons are the features with the largest share.
* classifier (supervised): the model outputs P(anomalous); reasons come from occlusion: how much the score
  drops when one feature is set back to its training median.

Custom layers are registered Keras objects, so models load with `safe_mode=True` (no lambdas, no pickles).
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

log = logging.getLogger(__name__)

Mode = Literal["autoencoder", "classifier"]
MODES: tuple[str, ...] = ("autoencoder", "classifier")

# Percentile grid stored with a model to turn scores into percentiles of the training distribution:
# 0.1% steps, and 0.01% steps in the top percent where alerts live.
PERCENTILE_GRID = np.unique(np.concatenate([np.linspace(0, 99, 991), np.linspace(99, 100, 101)]))


@keras.saving.register_keras_serializable(package="shopguard")
class SignedLog1p(layers.Layer):
    """sign(x) * log(1 + |x|): counts and amounts are heavy-tailed; this keeps them in a range a net likes."""

    def call(self, inputs):
        return ops.sign(inputs) * ops.log1p(ops.abs(inputs))


@keras.saving.register_keras_serializable(package="shopguard")
class Clip(layers.Layer):
    """Bounds standardised values, so one absurd input cannot swamp the score."""

    def __init__(self, limit: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = float(limit)

    def call(self, inputs):
        return ops.clip(inputs, -self.limit, self.limit)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "limit": self.limit}


@dataclass(frozen=True)
class TrainingParams:
    """Plain values that shape training; the train job builds them from the `model:` settings."""

    mode: Mode = "autoencoder"
    hidden_units: tuple[int, ...] = (32,)
    latent_units: int = 2
    dropout: float = 0.1
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_fraction: float = 0.2
    early_stopping_patience: int = 4
    trim_share: float = 0.05
    seed: int = 42
    alert_percentile: float = 99.0
    block_percentile: float = 99.9

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.alert_percentile <= self.block_percentile < 100:
            raise ValueError("expected 0 < alert_percentile <= block_percentile < 100")


@dataclass
class TrainedModel:
    model: keras.Model
    mode: Mode
    feature_names: list[str]
    thresholds: dict[str, float]
    reference_quantiles: dict[str, list[float]]
    reference_values: list[float]
    normalisation: dict[str, list[float]]
    metrics: dict[str, float]
    training: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- devices


def training_device() -> str:
    """The accelerator Keras will train on, for the log and the model metadata."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return f"GPU ({len(gpus)}x, tensorflow)" if gpus else "CPU (tensorflow)"
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            return f"GPU ({gpus[0].device_kind}, jax)" if gpus else "CPU (jax)"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"GPU ({torch.cuda.get_device_name(0)}, torch)"
            return "CPU (torch)"
    except Exception as exc:  # a broken CUDA install must not stop a CPU run
        log.warning("could not query accelerators (%s); assuming CPU", exc)
    return f"CPU ({backend})"


# --------------------------------------------------------------------------- building


def _preprocessing(inputs, x_train: np.ndarray) -> tuple[Any, layers.Normalization]:
    logged = SignedLog1p(name="signed_log1p")(inputs)
    normalisation = layers.Normalization(name="normalisation")
    normalisation.adapt(np.sign(x_train) * np.log1p(np.abs(x_train)))
    return Clip(10.0, name="clip")(normalisation(logged)), normalisation


def build_autoencoder(x_train: np.ndarray, params: TrainingParams) -> keras.Model:
    """raw features -> residual per feature (standard units)."""
    n_features = x_train.shape[1]
    inputs = keras.Input(shape=(n_features,), name="features")
    z, _ = _preprocessing(inputs, x_train)
    h = layers.GaussianNoise(0.05, name="denoise")(z)
    for i, units in enumerate(params.hidden_units):
        h = layers.Dense(units, activation="relu", name=f"encode_{i}")(h)
        if params.dropout:
            h = layers.Dropout(params.dropout, name=f"dropout_{i}")(h)
    h = layers.Dense(params.latent_units, name="latent")(h)
    for i, units in enumerate(reversed(params.hidden_units)):
        h = layers.Dense(units, activation="relu", name=f"decode_{i}")(h)
    reconstruction = layers.Dense(n_features, name="reconstruction")(h)
    residual = layers.Subtract(name="residual")([z, reconstruction])
    return keras.Model(inputs, residual, name="shopguard_autoencoder")


def build_classifier(x_train: np.ndarray, params: TrainingParams) -> keras.Model:
    """raw features -> P(anomalous)."""
    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    h, _ = _preprocessing(inputs, x_train)
    for i, units in enumerate(params.hidden_units):
        h = layers.Dense(units, activation="relu", name=f"hidden_{i}")(h)
        if params.dropout:
            h = layers.Dropout(params.dropout, name=f"dropout_{i}")(h)
    probability = layers.Dense(1, activation="sigmoid", name="probability")(h)
    return keras.Model(inputs, probability, name="shopguard_classifier")


# --------------------------------------------------------------------------- scoring a batch


def predict(model: keras.Model, x: np.ndarray, batch_rows: int = 8192) -> np.ndarray:
    """Call the model on slices (much faster than model.predict on small batches) and return numpy."""
    x = np.asarray(x, dtype=np.float32)
    outputs = [
        ops.convert_to_numpy(model(x[i : i + batch_rows], training=False))
        for i in range(0, len(x), batch_rows)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)


def batch_scores(model: keras.Model, mode: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(score per row, signed residuals per row and feature for the autoencoder, else None)."""
    out = predict(model, x)
    if mode == "autoencoder":
        return np.mean(out**2, axis=1).astype(np.float64), out
    return out[:, 0].astype(np.float64), None


def reasons(
    model: keras.Model,
    mode: str,
    x: np.ndarray,
    scores: np.ndarray,
    residuals: np.ndarray | None,
    feature_names: Sequence[str],
    reference_values: Sequence[float],
    n_reasons: int,
) -> list[list[str]]:
    """The top features behind each score, as 'feature high' / 'feature low'."""
    if n_reasons == 0 or len(x) == 0:
        return [[] for _ in range(len(x))]
    reference = np.asarray(reference_values, dtype=np.float32)
    if mode == "autoencoder":
        contribution = residuals**2
        direction = residuals > 0  # observed above what the model expected
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


def percentile_of(scores: np.ndarray, reference_quantiles: dict[str, list[float]]) -> np.ndarray:
    """Percentile of each score within the training scores (0-100)."""
    return np.interp(scores, reference_quantiles["values"], reference_quantiles["percentiles"])


# --------------------------------------------------------------------------- training


def validation_mask(user_ids: Sequence[str], fraction: float) -> np.ndarray:
    """Split by user (a stable hash), so one user's snapshots never sit on both sides."""
    buckets = np.fromiter(
        (zlib.crc32(str(u).encode()) % 10_000 for u in user_ids), dtype=np.int64, count=len(user_ids)
    )
    return buckets < fraction * 10_000


def train(
    x: np.ndarray,
    user_ids: Sequence[str],
    feature_names: Sequence[str],
    params: TrainingParams,
    labels: np.ndarray | None = None,
    log_dir: str | None = None,
) -> TrainedModel:
    """Fit a model on the driver. `labels`: 1 anomalous, 0 normal, NaN unknown (classifier needs some)."""
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x has shape {x.shape}, expected (rows, {len(feature_names)} features)")
    if len(x) < 10:
        raise ValueError(f"need at least 10 training rows, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(
            "training features hold NaN or infinite values; the features job should never write them"
        )
    keras.utils.set_random_seed(params.seed)
    x = x.astype(np.float32)
    device = training_device()
    log.info("training a %s on %d rows x %d features on %s", params.mode, *x.shape, device)

    is_val = validation_mask(user_ids, params.validation_fraction)
    if params.mode == "classifier":
        if labels is None or np.isnan(labels).all():
            raise ValueError("classifier mode needs labels; none are known for these snapshots")
        known = ~np.isnan(labels)
        y = labels.astype(np.float32)
        if len(np.unique(y[known & ~is_val])) < 2:
            raise ValueError("classifier mode needs both labels 0 and 1 among the training users")
        fit_rows, val_rows = known & ~is_val, known & is_val
        positives = float(y[fit_rows].mean())
        class_weight = {0: 0.5 / (1 - positives), 1: 0.5 / positives}  # balanced
        model = build_classifier(x[fit_rows], params)
        started = time.perf_counter()
        history = _fit(
            model,
            x[fit_rows],
            y[fit_rows, None],
            x[val_rows],
            y[val_rows, None],
            params,
            "binary_crossentropy",
            class_weight,
            log_dir,
        )
    else:
        fit_rows, val_rows = ~is_val, is_val
        zeros = np.zeros_like(x)  # the model outputs residuals; their best value is 0
        started = time.perf_counter()
        model = build_autoencoder(x[fit_rows], params)
        history = _fit(
            model, x[fit_rows], zeros[fit_rows], x[val_rows], zeros[val_rows], params, "mse", None, None
        )
        if params.trim_share > 0:
            # Robust refit: leave out the rows the first fit reconstructs worst (likely anomalies), so the
            # model does not learn to reconstruct them too.
            first, _ = batch_scores(model, params.mode, x)
            fit_rows &= first <= np.quantile(first[fit_rows], 1 - params.trim_share)
            model = build_autoencoder(x[fit_rows], params)
            history = _fit(
                model,
                x[fit_rows],
                zeros[fit_rows],
                x[val_rows],
                zeros[val_rows],
                params,
                "mse",
                None,
                log_dir,
            )
    seconds = time.perf_counter() - started
    has_val = bool(val_rows.any())

    scores, _ = batch_scores(model, params.mode, x)
    thresholds = {
        # Exact quantiles of every training score (numpy on the driver, not approxQuantile).
        "alert": float(np.quantile(scores, params.alert_percentile / 100)),
        "block": float(np.quantile(scores, params.block_percentile / 100)),
        "alert_percentile": params.alert_percentile,
        "block_percentile": params.block_percentile,
    }
    metrics = {name: float(values[-1]) for name, values in history.history.items()}
    metrics["epochs_run"] = float(len(history.history["loss"]))
    if labels is not None and has_val:
        metrics.update(_label_metrics(scores[val_rows], labels[val_rows], prefix="val_"))
    normalisation = model.get_layer("normalisation")
    log.info("trained in %.1f s, %d epochs, thresholds %s", seconds, metrics["epochs_run"], thresholds)
    return TrainedModel(
        model=model,
        mode=params.mode,
        feature_names=list(feature_names),
        thresholds=thresholds,
        reference_quantiles={
            "percentiles": PERCENTILE_GRID.tolist(),
            "values": np.quantile(scores, PERCENTILE_GRID / 100).tolist(),
        },
        reference_values=np.median(x, axis=0).astype(float).tolist(),
        normalisation={
            "mean": np.ravel(ops.convert_to_numpy(normalisation.mean)).astype(float).tolist(),
            "variance": np.ravel(ops.convert_to_numpy(normalisation.variance)).astype(float).tolist(),
        },
        metrics=metrics,
        training={
            "rows": int(len(x)),
            "fit_rows": int(fit_rows.sum()),
            "validation_rows": int(val_rows.sum()),
            "labelled_rows": int((~np.isnan(labels)).sum()) if labels is not None else 0,
            "device": device,
            "backend": keras.backend.backend(),
            "seconds": round(seconds, 2),
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.__dict__.items()},
        },
    )


def _fit(model, x_fit, y_fit, x_val, y_val, params: TrainingParams, loss: str, class_weight, log_dir):
    keras.utils.set_random_seed(params.seed)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss)
    callbacks: list[keras.callbacks.Callback] = []
    has_val = len(x_val) > 0
    if has_val and params.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
            )
        )
    if log_dir and keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False))
    return model.fit(
        x_fit,
        y_fit,
        validation_data=(x_val, y_val) if has_val else None,
        epochs=params.epochs,
        batch_size=params.batch_size,
        class_weight=class_weight,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )


def _label_metrics(scores: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
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
