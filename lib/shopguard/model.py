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
from typing import TYPE_CHECKING, Any, NamedTuple, get_args

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from shopguard import ensemble  # noqa: E402  (registers the default model's layers wherever models load)
from shopguard.config import Mode, ModelSettings  # noqa: E402

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = get_args(Mode)

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


@keras.saving.register_keras_serializable(package="shopguard")
class ResidualLogisticHead(layers.Layer):
    """The semi-supervised head: a logistic regression on the autoencoder's residuals, fitted on the few
    labelled users. Inputs: residuals (rows x features). Output: P(anomalous) in column 0, then each
    feature's contribution to the logit (for reasons). Weights are fixed: they come from scikit-learn."""

    def __init__(self, coef, intercept: float, mean, scale, epsilon: float = 1e-2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coef = [float(v) for v in coef]
        self.intercept = float(intercept)
        self.mean = [float(v) for v in mean]
        self.scale = [float(v) for v in scale]
        self.epsilon = float(epsilon)

    def call(self, residuals):
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
    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    z, _ = _preprocessing(inputs, x_train)
    return keras.Model(inputs, ensemble.residual_of(z, params), name="shopguard_autoencoder")


def build_classifier(x_train: np.ndarray, params: TrainingParams) -> keras.Model:
    """raw features -> P(anomalous)."""
    inputs = keras.Input(shape=(x_train.shape[1],), name="features")
    h, _ = _preprocessing(inputs, x_train)
    penalty = keras.regularizers.L2(params.classifier_l2) if params.classifier_l2 else None
    for i, units in enumerate(params.hidden_units):
        h = layers.Dense(units, activation="relu", kernel_regularizer=penalty, name=f"hidden_{i}")(h)
        if params.classifier_dropout:
            h = layers.Dropout(params.classifier_dropout, name=f"dropout_{i}")(h)
    probability = layers.Dense(1, activation="sigmoid", kernel_regularizer=penalty, name="probability")(h)
    return keras.Model(inputs, probability, name="shopguard_classifier")


# --------------------------------------------------------------------------- scoring a batch


def predict(model: keras.Model, x: np.ndarray, batch_rows: int = 8192) -> list[np.ndarray]:
    """Call the model on slices (much faster than model.predict on small batches); numpy, one per output."""
    x = np.asarray(x, dtype=np.float32)
    parts: list[list[np.ndarray]] = []
    for i in range(0, max(len(x), 1), batch_rows):
        out = model(x[i : i + batch_rows], training=False)
        parts.append([ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


@dataclass(frozen=True)
class Explanation:
    """Per row and feature: how much the feature drove the score, and whether it was high or low."""

    weight: np.ndarray
    high: np.ndarray


def batch_scores(model: keras.Model, mode: str, x: np.ndarray) -> tuple[np.ndarray, Explanation | None]:
    """Scores of a batch, with the explanation the model gives for free (None: the classifier's reasons
    need occlusion, see `reasons`)."""
    outputs = predict(model, x)
    if model.name == "shopguard_unsupervised":  # the fused default (shopguard.ensemble)
        scores, weight, z = ensemble.split_output(outputs[0])
        return scores, Explanation(weight, z > 0)
    if mode == "autoencoder":  # model.unsupervised log_autoencoder, and models saved before the fused default
        (residuals,) = outputs
        return np.mean(residuals**2, axis=1).astype(np.float64), Explanation(residuals**2, residuals > 0)
    if mode == "semi_supervised":
        head, residuals = outputs
        return head[:, 0].astype(np.float64), Explanation(head[:, 1:], residuals > 0)
    return outputs[0][:, 0].astype(np.float64), None


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


def percentile_of(scores: np.ndarray, reference_quantiles: dict[str, list[float]]) -> np.ndarray:
    """Percentile of each score within the training scores (0-100)."""
    return np.interp(scores, reference_quantiles["values"], reference_quantiles["percentiles"])


# --------------------------------------------------------------------------- training


class FeatureArrays(NamedTuple):
    user_ids: np.ndarray  # object
    x: np.ndarray  # float32, one row per user and snapshot
    labels: np.ndarray  # float64, NaN where no verdict is known


def feature_arrays(table: pa.Table, feature_names: Sequence[str]) -> FeatureArrays:
    """The Arrow batches a job collected (`user_id`, `label` and the features) as the arrays models take."""
    return FeatureArrays(
        user_ids=np.asarray(table.column("user_id").to_pylist(), dtype=object),
        x=np.column_stack([table.column(n).to_numpy() for n in feature_names]).astype(np.float32),
        labels=table.column("label").to_pandas().astype("float64").to_numpy(),
    )


def user_share_mask(user_ids: Sequence[str], share: float, purpose: str) -> np.ndarray:
    """A stable `share` of users, chosen by a hash of the user id salted with `purpose`, so one user's
    snapshots always fall on the same side and different purposes pick independent users."""
    salt = purpose.encode() + b":"
    buckets = np.fromiter(
        (zlib.crc32(salt + str(u).encode()) % 10_000 for u in user_ids), dtype=np.int64, count=len(user_ids)
    )
    return buckets < share * 10_000


def validation_mask(user_ids: Sequence[str], fraction: float) -> np.ndarray:
    """The validation split of training: by user."""
    return user_share_mask(user_ids, fraction, "validation")


def holdout_mask(user_ids: Sequence[str], share: float) -> np.ndarray:
    """Users never trained on (model.holdout_share), kept for an honest evaluation."""
    return user_share_mask(user_ids, share, "holdout")


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
    is_val = validation_mask(user_ids, params.validation_fraction)
    mode, why = resolve_mode(params, labels, ~is_val)
    log.info("mode %s: %s", mode, why)
    params = params.model_copy(update={"mode": mode})
    device = training_device()
    log.info("training the %s model on %d rows x %d features on %s", params.mode, *x.shape, device)

    if params.mode == "classifier":
        if labels is None or np.isnan(labels).all():
            raise ValueError("classifier mode needs labels; none are known for these snapshots")
        if len(np.unique(labels[~np.isnan(labels) & ~is_val])) < 2:
            raise ValueError("classifier mode needs both labels 0 and 1 among the training users")
        started = time.perf_counter()
        fit, y_fit, w_fit = labelled_and_presumed_normal(labels, ~is_val, params)
        val, y_val, w_val = labelled_and_presumed_normal(labels, is_val, params)
        fit_rows, val_rows = np.isin(np.arange(len(x)), fit), np.isin(np.arange(len(x)), val)
        model = build_classifier(x[fit], params)
        history = _fit(model, x[fit], y_fit[:, None], x[val], y_val[:, None], params, "binary_crossentropy",
                       log_dir, sample_weight=(w_fit, w_val), batch_size=max(16, min(params.batch_size, len(fit) // 32)),
                       start_from_epoch=10)  # fmt: skip
        val_rows &= ~np.isnan(labels)  # label metrics on real labels only
    else:
        fit_rows, val_rows = ~is_val, is_val
        started = time.perf_counter()
        if params.mode == "semi_supervised":
            known = ~np.isnan(labels) if labels is not None else np.zeros(len(x), bool)
            positives = known & fit_rows & (labels == 1)
            if positives.sum() < 5 or (known & fit_rows & (labels == 0)).sum() < 5:
                raise ValueError(
                    "semi_supervised mode needs at least 5 anomalous and 5 normal labelled training users; "
                    f"found {positives.sum()} and {(known & fit_rows & (labels == 0)).sum()}"
                )
            # The autoencoder learns normal behaviour from everyone not known to be anomalous...
            model, history = _robust_autoencoder(x, fit_rows & ~positives, val_rows, params, log_dir)
            # ...and a logistic head on its residuals learns from the few labels which deviations matter.
            model = _with_logistic_head(model, x, labels, fit_rows, params)
        elif params.unsupervised == "log_autoencoder":
            model, history = _robust_autoencoder(x, fit_rows, val_rows, params, log_dir)
        else:
            model, history = _rank_ensemble(x, fit_rows, val_rows, params, log_dir)
    seconds = time.perf_counter() - started
    has_val = bool(val_rows.any())

    scores, _ = batch_scores(model, params.mode, x)
    thresholds = choose_thresholds(
        scores, scores[val_rows], labels[val_rows] if labels is not None else None, params
    )
    metrics = {name: float(values[-1]) for name, values in history.history.items()}
    metrics["epochs_run"] = float(len(history.history["loss"]))
    if labels is not None and has_val:
        metrics.update(_label_metrics(scores[val_rows], labels[val_rows], prefix="val_"))
    warnings = _quality_warnings(metrics, params)
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


def _robust_autoencoder(x, fit_rows, val_rows, params: TrainingParams, log_dir, build=None):
    """Fit, then refit without the `trim_share` rows the first fit reconstructs worst (likely anomalies),
    so the model does not learn to reconstruct them too."""
    build = build or (lambda x_fit: build_autoencoder(x_fit, params))
    zeros = np.zeros_like(x)  # the model outputs residuals; their best value is 0
    model = build(x[fit_rows])
    history = _fit(model, x[fit_rows], zeros[fit_rows], x[val_rows], zeros[val_rows], params, "mse",
                   None if params.trim_share > 0 else log_dir)  # fmt: skip
    if params.trim_share > 0:
        first = np.mean(predict(model, x)[0] ** 2, axis=1)
        fit_rows = fit_rows & (first <= np.quantile(first[fit_rows], 1 - params.trim_share))
        model = build(x[fit_rows])
        history = _fit(
            model, x[fit_rows], zeros[fit_rows], x[val_rows], zeros[val_rows], params, "mse", log_dir
        )
    return model, history


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
    """What turns raw features into model units, for the metadata (it lives inside the model)."""
    names = {layer.name for layer in model.layers}
    if "empirical_cdf" in names:
        return {"inside_model": "EmpiricalCDF (mid-rank ECDF per feature, Pareto tails past the 5th/95th "
                "percentiles) -> tail probabilities and normal scores"}  # fmt: skip
    normalisation = model.get_layer("normalisation")
    return {
        "inside_model": "SignedLog1p -> Normalization -> Clip(10)",
        "mean": np.ravel(ops.convert_to_numpy(normalisation.mean)).astype(float).tolist(),
        "variance": np.ravel(ops.convert_to_numpy(normalisation.variance)).astype(float).tolist(),
    }


def _rank_ensemble(x, fit_rows, val_rows, params: TrainingParams, log_dir):
    """The unsupervised default (shopguard.ensemble): the robust autoencoder on rank-normalised
    features, then the fused score calibrated on the rows it was fitted on."""
    cdf = ensemble.EmpiricalCDF(**ensemble.ecdf_knots(x[fit_rows]), name="empirical_cdf")
    model, history = _robust_autoencoder(
        x,
        fit_rows,
        val_rows,
        params,
        log_dir,
        build=lambda x_fit: ensemble.build_autoencoder(x_fit, cdf, params),
    )
    return ensemble.with_fused_score(model, cdf, x[fit_rows]), history


def _with_logistic_head(autoencoder: keras.Model, x, labels, fit_rows, params: TrainingParams) -> keras.Model:
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


def choose_thresholds(
    scores: np.ndarray, val_scores: np.ndarray, val_labels: np.ndarray | None, params: TrainingParams
) -> dict[str, Any]:
    """Alert and block thresholds: by budget, the exact quantiles of all training scores (numpy on the
    driver, not approxQuantile) that alert the top `alert_budget` and block the top `block_budget` of users;
    by precision, the lowest thresholds that reach the target precisions on the labelled validation users
    (falling back to the budget where too few labels allow it)."""
    by_budget = {
        "alert": float(np.quantile(scores, 1 - params.alert_budget)),
        "block": float(np.quantile(scores, 1 - params.block_budget)),
    }
    chosen: dict[str, Any] = {**by_budget, "method": "budget", "alert_budget": params.alert_budget,
                              "block_budget": params.block_budget}  # fmt: skip
    if params.threshold_method == "precision":
        from sklearn.metrics import precision_recall_curve

        known = ~np.isnan(val_labels) if val_labels is not None else np.zeros(len(val_scores), bool)
        y = val_labels[known] if val_labels is not None else np.array([])
        if known.sum() < 20 or y.sum() < 5 or y.sum() == len(y):
            log.warning("too few labelled validation users for precision thresholds; using the budgets")
            chosen["method"] = "budget (precision asked, too few labels)"
        else:
            precision, _, cuts = precision_recall_curve(y, val_scores[known])
            for name, target in (("alert", params.alert_precision), ("block", params.block_precision)):
                reached = np.flatnonzero(precision[:-1] >= target)
                chosen[name] = float(cuts[reached[0]]) if len(reached) else float(cuts[-1])
            chosen["block"] = max(chosen["block"], chosen["alert"])
            chosen.update(method="precision", alert_precision=params.alert_precision,
                          block_precision=params.block_precision)  # fmt: skip
    # The share of training users each threshold would have flagged: tomorrow's expected alert volume.
    chosen["expected_alert_share"] = float((scores >= chosen["alert"]).mean())
    chosen["expected_block_share"] = float((scores >= chosen["block"]).mean())
    return chosen


def labelled_and_presumed_normal(labels: np.ndarray, rows: np.ndarray, params: TrainingParams):
    """Rows to learn from when labels are few: the labelled ones among `rows`, plus a sample of the
    unlabelled ones taken as normal at a low weight (most users are normal: positive-unlabelled learning).
    Weights balance the two classes. Returns (row indices, targets, weights)."""
    known = np.flatnonzero(rows & ~np.isnan(labels))
    unlabelled = np.flatnonzero(rows & np.isnan(labels))
    rng = np.random.default_rng(params.seed)
    sample = rng.choice(unlabelled, size=min(params.unlabelled_sample, len(unlabelled)), replace=False)
    index = np.concatenate([known, sample])
    y = np.concatenate([labels[known], np.zeros(len(sample))]).astype(np.float32)
    weight = np.concatenate([np.ones(len(known)), np.full(len(sample), params.unlabelled_weight)])
    for target in (0.0, 1.0):  # each class carries half of the total weight
        chosen = y == target
        if chosen.any():
            weight[chosen] *= 0.5 * weight.sum() / weight[chosen].sum()
    return index, y, weight.astype(np.float32)


def _fit(model, x_fit, y_fit, x_val, y_val, params: TrainingParams, loss: str, log_dir, sample_weight=None,
         batch_size: int | None = None, start_from_epoch: int = 0):  # fmt: skip
    keras.utils.set_random_seed(params.seed)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss)
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
