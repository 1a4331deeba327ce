"""Training on the driver, whatever the mode: checks, the split, the mode's fit, thresholds and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
from keras import ops

from shopguard.config import Mode, ModelSettings
from shopguard.model import autoencoder, classifier, semi_supervised
from shopguard.model.backend import keras, training_device
from shopguard.model.base import ModeModule
from shopguard.model.data import UserIds, validation_mask
from shopguard.model.explain import Explanation
from shopguard.model.fitting import label_metrics
from shopguard.model.thresholds import choose_thresholds, reference_quantiles
from shopguard.monitoring import feature_profile

log = logging.getLogger("shopguard.model")

MODES: tuple[str, ...] = get_args(Mode)
MODE_MODULES: dict[str, ModeModule] = {
    "autoencoder": autoencoder,  # each module satisfies the protocol
    "semi_supervised": semi_supervised,
    "classifier": classifier,
}


class TrainingParams(ModelSettings):
    """The `model:` settings as training receives them (declared once, in shopguard.config)."""

    @classmethod
    def from_settings(cls, settings: ModelSettings, **overrides: Any) -> TrainingParams:
        """From the validated `model:` settings, with `overrides` checked like any setting."""
        return cls.model_validate({**settings.model_dump(), **overrides})


@dataclass
class TrainedModel:
    model: keras.Model
    mode: Mode
    feature_names: list[str]
    thresholds: dict[str, float]
    reference_quantiles: dict[str, list[float]]
    reference_values: list[float]
    constant_features: list[str]
    normalisation: dict[str, list[float]]
    metrics: dict[str, float]
    training: dict[str, Any] = field(default_factory=dict)
    feature_profile: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def batch_scores(model: keras.Model, mode: str, x: np.ndarray) -> tuple[np.ndarray, Explanation | None]:
    """Scores of a batch, with the explanation the model gives for free (None: the classifier's reasons
    need occlusion, see `explain.reasons`)."""
    return MODE_MODULES[mode].score_batch(model, x)


def train(
    x: np.ndarray,
    user_ids: UserIds,
    feature_names: Sequence[str],
    params: TrainingParams,
    labels: np.ndarray | None = None,
    log_dir: str | None = None,
) -> TrainedModel:
    """Fit a model on the driver. `labels`: 1 anomalous, 0 normal, NaN unknown (classifier needs some)."""
    _check_inputs(x, feature_names)
    keras.utils.set_random_seed(params.seed)
    x = x.astype(np.float32)
    is_val = validation_mask(user_ids, params.validation_fraction)
    mode, why = resolve_mode(params, labels, ~is_val)
    log.info("mode %s: %s", mode, why)
    if params.trainings > 1 and mode != "autoencoder":
        log.info("model.trainings (%d) averages the unsupervised model's trainings: %s trains once",
                 params.trainings, mode)  # fmt: skip
    params = params.model_copy(update={"mode": mode})
    device = training_device()
    log.info("training the %s model on %d rows x %d features on %s", params.mode, *x.shape, device)

    started = time.perf_counter()
    fitted = MODE_MODULES[params.mode].fit(x, labels, is_val, params, log_dir)
    model, history, fit_rows, val_rows = fitted.model, fitted.history, fitted.fit_rows, fitted.val_rows
    seconds = time.perf_counter() - started
    has_val = bool(val_rows.any())

    scores, _ = batch_scores(model, params.mode, x)
    thresholds = choose_thresholds(
        scores, scores[val_rows], labels[val_rows] if labels is not None else None, params
    )
    metrics = {name: float(values[-1]) for name, values in history.history.items()}
    metrics["epochs_run"] = float(len(history.history["loss"]))
    if labels is not None and has_val:
        metrics.update(label_metrics(scores[val_rows], labels[val_rows], prefix="val_"))
    warnings = _quality_warnings(metrics, params)
    log.info("trained in %.1f s, %d epochs, thresholds %s", seconds, metrics["epochs_run"], thresholds)
    return TrainedModel(
        model=model,
        mode=params.mode,
        feature_names=list(feature_names),
        thresholds=thresholds,
        reference_quantiles=reference_quantiles(scores),
        reference_values=np.median(x, axis=0).astype(float).tolist(),
        constant_features=[
            name for name, varies in zip(feature_names, np.ptp(x, axis=0) > 0, strict=True) if not varies
        ],  # fmt: skip
        feature_profile=feature_profile(x, feature_names),
        normalisation=_describe_normalisation(model),
        metrics=metrics,
        training={
            "rows": int(len(x)),
            "fit_rows": int(fit_rows.sum()),
            "validation_rows": int(val_rows.sum()),
            "labelled_rows": int((~np.isnan(labels)).sum()) if labels is not None else 0,
            "device": device,
            "backend": keras.backend.backend(),
            "seconds": round(seconds, 2),
            "mode_reason": why,
            "warnings": warnings,
            "params": params.model_dump(),
        },
    )


def _check_inputs(x: np.ndarray, feature_names: Sequence[str]) -> None:
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x has shape {x.shape}, expected (rows, {len(feature_names)} features)")
    if len(x) < 10:
        raise ValueError(f"need at least 10 training rows, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(
            "training features hold NaN or infinite values; the features job should never write them"
        )


def resolve_mode(params: TrainingParams, labels: np.ndarray | None, fit_rows: np.ndarray) -> tuple[str, str]:
    """The mode to train (model.mode, or for auto: semi_supervised when the training users hold enough
    verdicts of both kinds, else the unsupervised autoencoder), and why, for the log and the metadata."""
    if params.mode != "auto":
        return params.mode, "set by model.mode"
    known = labels[fit_rows] if labels is not None else np.array([])
    anomalous, normal = int(np.nansum(known == 1)), int(np.nansum(known == 0))
    counted = f"{anomalous} anomalous and {normal} normal verdicts among the training users"
    needed = f"model.auto_min_labels={params.auto_min_labels}"
    if min(anomalous, normal) >= params.auto_min_labels:
        return "semi_supervised", f"model.mode is auto and the labels hold {counted} ({needed})"
    return (
        "autoencoder",
        f"model.mode is auto and the labels hold {counted} (semi_supervised needs {needed} of each)",
    )


def _quality_warnings(metrics: dict[str, float], params: TrainingParams) -> list[str]:
    """Said in the log and kept in the metadata: a model that barely ranks its validation users."""
    found = []
    roc = metrics.get("val_roc_auc")
    if roc is not None and roc < params.min_validation_roc_auc:
        found.append(
            f"validation ROC-AUC is {roc:.3f} on {metrics.get('val_labelled', 0):.0f} labelled validation users, "
            f"below model.min_validation_roc_auc={params.min_validation_roc_auc}: this model ranks known "
            "anomalies little better than chance; check the features and labels before relying on its alerts"
        )
    for warning in found:
        log.warning("%s", warning)
    return found


def _describe_normalisation(model: keras.Model) -> dict[str, Any]:
    """What turns raw features into model units, for the metadata (it lives inside the model; in each of a
    mean of trainings, the first described)."""
    from shopguard.model.ensemble import first_training

    trainings = sum(isinstance(layer, keras.Model) for layer in model.layers)
    model = first_training(model)
    names = {layer.name for layer in model.layers}
    described: dict[str, Any] = {}
    if "empirical_cdf" in names:
        detectors = [
            d for d in ("isolation_forest", "nearest_neighbours", "nearest_neighbours_log") if d in names
        ]
        described = {"tail_score": "EmpiricalCDF (mid-rank ECDF per feature, Pareto tails past the 5th/95th "
                     "percentiles) -> tail probabilities", "fused_by_robust_z_scores":
                     ["tail_score", "autoencoder_error", *detectors]}  # fmt: skip
        if trainings > 1:
            described["mean_of_trainings"] = trainings
    normalisation = model.get_layer("normalisation")
    return {
        **described,
        "inside_model": "SignedLog1p -> Normalization -> Clip(10)",
        "mean": np.ravel(ops.convert_to_numpy(normalisation.mean)).astype(float).tolist(),
        "variance": np.ravel(ops.convert_to_numpy(normalisation.variance)).astype(float).tolist(),
    }
