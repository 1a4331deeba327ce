"""The unsupervised default: five detectors, each best on different data, fused by robust z-scores.

Why: on a real fraud data set an autoencoder on log-standardised features, scored by its mean squared error,
ranked big legitimate spenders first (one heavy-tailed feature dominated the error) and lost to a plain
IsolationForest; on 30 external data sets (bench/external.py) no single detector was best everywhere. So:

* per feature, the tail probabilities P(X >= x) and P(X <= x) from its empirical distribution among the
  training users (EmpiricalCDF: the ECDF between its 5th and 95th percentiles, a Pareto tail beyond, so
  magnitude still counts past anything seen), and ECOD's tail score over them: rare values add up;
* the autoencoder's squared residual per feature in units of its typical size on the training users, so a
  feature that is hard to reconstruct for everyone (or heavy-tailed) cannot dominate: a user that breaks
  the features' usual relations (FusedScore turns both into negative log-likelihoods);
* an isolation forest, and the distance to the k-th nearest training user in standardised raw units and
  in standardised log units (shopguard.model.detectors);
* each of the five as a robust z-score on the training users, summed (`with_detectors`).

Everything lives in the saved model (registered layers, constants in their configs or non-trainable
weights): scoring calls one Keras model, as before. Reasons: each feature's share of its tail term plus its
half error (shopguard.model.explain says high or low). Measured in docs/quality.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import layers, ops

from shopguard.model.backend import keras
from shopguard.model.detectors import isolation_forest, nearest_neighbours  # registers their layers

Tensor = Any  # a Keras tensor: Keras ships no type information
Floats = Sequence[float] | np.ndarray
Knots = Sequence[Sequence[float]] | np.ndarray  # (knots, features)

FUSED = "shopguard_unsupervised"  # the name of the ensemble model, whatever it fuses

# ECDF knots at every 5%: the outer ones stay below a few percent of anomalies sharing one value; past
# them the Pareto tail takes over.
LEVELS = np.round(np.arange(0.05, 0.9501, 0.05), 4)
# A detector's z-score counts from here up: a user far *below* a detector's median is not more normal
Z_FLOOR = -3.0


def _piecewise(x: Tensor, knots: list[list[float]], values: list[list[float]]) -> Tensor:
    """Interpolates per column: knots and values are (K, columns), knots non-decreasing; flat outside."""
    k = np.asarray(knots, dtype=np.float32)
    v = np.asarray(values, dtype=np.float32)
    width = np.diff(k, axis=0)
    slope = np.divide(np.diff(v, axis=0), width, out=np.zeros_like(width), where=width > 0)
    out = ops.zeros_like(x) + v[0]
    for j in range(len(width)):  # K-1 elementwise steps: memory stays rows x columns
        if np.any(slope[j] != 0):
            out = out + slope[j] * ops.minimum(ops.maximum(x - k[j], 0.0), width[j])
    return out


@keras.saving.register_keras_serializable(package="shopguard")
class EmpiricalCDF(layers.Layer):
    """raw features -> (normal score z, -log P(X >= x), -log P(X <= x)) per feature.

    Between the 5th and 95th percentile knots: the mid-rank ECDF, interpolated. Beyond them a Pareto
    tail: the tail probability shrinks as 1 / (1 + excess / scale), the scale being the distance from
    the quartile to the knot (the body sets it, not the anomalies out there), so a value 100 scales out
    is 100 times rarer and magnitude still counts where ranks alone would saturate. Probabilities are kept
    in logs (float32 cannot hold 1 - 1e-9).
    """

    def __init__(
        self, knots: Knots, levels: Knots, low_scale: Floats, high_scale: Floats, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.knots = [[float(v) for v in row] for row in knots]
        self.levels = [[float(v) for v in row] for row in levels]
        self.low_scale = [float(v) for v in low_scale]
        self.high_scale = [float(v) for v in high_scale]

    def call(self, inputs: Tensor) -> Tensor:
        level = _piecewise(inputs, self.knots, self.levels)
        lowest, highest = np.asarray(self.knots[0], np.float32), np.asarray(self.knots[-1], np.float32)
        above = ops.maximum(inputs - highest, 0.0) / np.asarray(self.high_scale, np.float32)
        below = ops.maximum(lowest - inputs, 0.0) / np.asarray(self.low_scale, np.float32)
        log_upper = ops.log(1.0 - level) - ops.log1p(above)
        log_lower = ops.log(level) - ops.log1p(below)
        # z grows with the log-excess past the knots (not with the square root of it, as Phi^-1 of the
        # Pareto probability would): a value hundreds of scales out must stand out in the reconstruction
        z_up = _normal_quantile(ops.log(1.0 - level)) + ops.log1p(above)
        z_low = -_normal_quantile(ops.log(level)) - ops.log1p(below)
        z = ops.where(level > 0.5, z_up, z_low)
        return ops.clip(z, -10.0, 10.0), -log_upper, -log_lower

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "knots": self.knots, "levels": self.levels,
                "low_scale": self.low_scale, "high_scale": self.high_scale}  # fmt: skip


def _normal_quantile(log_p: Tensor) -> Tensor:
    """Phi^-1(1 - p) for an upper-tail probability p <= 1/2 given as log p (Abramowitz and Stegun
    26.2.23, error below 5e-4): stable for p far below float32's resolution near 1."""
    t = ops.sqrt(-2.0 * ops.minimum(log_p, math.log(0.5)))
    numerator = 2.515517 + 0.802853 * t + 0.010328 * t * t
    denominator = 1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t
    return t - numerator / denominator


@keras.saving.register_keras_serializable(package="shopguard")
class FusedScore(layers.Layer):
    """(residual, z, -log upper tail, -log lower tail) -> [tail score, error score, per-feature weight, z].

    The tail score is ECOD's (Li et al., 2022): the mean -log tail probability, taking each feature's upper
    tail, its lower tail, or the tail its skew points to, whichever mean is largest. The error score is the
    mean squared residual in units of its typical size, halved so that both are negative log-likelihoods
    (a standard normal's -log density grows as z^2 / 2). Weight of a feature in the reasons: its share of
    its tail term plus its half error. Models saved before `parts` existed output their sum as one score:
    [score, weight, z]."""

    def __init__(
        self, error_scale: Floats, right_skewed: Sequence[bool], parts: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.error_scale = [float(v) for v in error_scale]
        self.right_skewed = [bool(v) for v in right_skewed]
        self.parts = bool(parts)

    def error(self, residual: Tensor) -> Tensor:
        return residual * residual / np.asarray(self.error_scale, np.float32)

    def tails(self, upper: Tensor, lower: Tensor) -> Tensor:
        """Per feature, the tail its skew points to; and the tail score: the largest of the three means."""
        skewed = ops.where(np.asarray(self.right_skewed), upper, lower)
        means = [ops.mean(t, axis=1, keepdims=True) for t in (upper, lower, skewed)]
        return skewed, ops.maximum(ops.maximum(means[0], means[1]), means[2])

    def call(self, inputs: Tensor) -> Tensor:
        residual, z, upper, lower = inputs
        half_error = 0.5 * self.error(residual)
        tail, tail_score = self.tails(upper, lower)
        error_score = ops.mean(half_error, axis=1, keepdims=True)
        per_feature = tail + half_error
        weight = per_feature / (ops.sum(per_feature, axis=1, keepdims=True) + 1e-9)
        scores = [tail_score, error_score] if self.parts else [tail_score + error_score]
        return ops.concatenate([*scores, weight, z], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "error_scale": self.error_scale, "right_skewed": self.right_skewed,
                "parts": self.parts}  # fmt: skip


def _tail_scale(column: np.ndarray, knot: float, quartile: float, extreme: float) -> float:
    """The Pareto scale past an outer knot, from the body of the distribution (knot - quartile): the
    values out there may be mostly anomalies, which must not set their own yardstick."""
    for spread in (knot - quartile, (extreme - knot) / 10):
        if spread > 0:
            return float(spread)
    return max(abs(float(knot)), 1.0) * 0.1


def ecdf_knots(x: np.ndarray, at: np.ndarray = LEVELS) -> dict[str, Any]:
    """Per feature: knot values at the levels `at` (LEVELS by default), their mid-rank ECDF levels (ties
    share the middle of their mass, so a feature that is 0 for 60% of users puts 0 at 0.3, not at 0 or
    0.6), and the Pareto tail scales beyond the outer knots (see `_tail_scale`)."""
    n, columns = x.shape
    knots = np.empty((len(at), columns), dtype=np.float64)
    levels = np.empty_like(knots)
    high, low = np.ones(columns), np.ones(columns)
    ordered = np.sort(x, axis=0)
    for j in range(columns):
        column = ordered[:, j]
        values = np.unique(np.quantile(column, at))
        left = np.searchsorted(column, values, side="left")
        right = np.searchsorted(column, values, side="right")
        mid = np.clip((left + right) / (2.0 * n), 0.5 / n, 1 - 0.5 / n)
        pad = len(at) - len(values)  # repeat the last knot: zero-width segments add nothing
        knots[:, j] = np.concatenate([values, np.repeat(values[-1], pad)])
        levels[:, j] = np.concatenate([mid, np.repeat(mid[-1], pad)])
        high[j] = _tail_scale(column, knots[-1, j], np.quantile(column, 0.75), column[-1])
        low[j] = _tail_scale(-column, -knots[0, j], -np.quantile(column, 0.25), -column[0])
    return {"knots": knots.tolist(), "levels": levels.tolist(), "low_scale": low.tolist(),
            "high_scale": high.tolist()}  # fmt: skip


def residual_of(z: Tensor, params: Any) -> Tensor:
    """The narrow denoising autoencoder shared by every mode: normalised features z -> z - reconstruction."""
    h = layers.GaussianNoise(0.05, name="denoise")(z)
    for i, units in enumerate(params.hidden_units):
        h = layers.Dense(units, activation="relu", name=f"encode_{i}")(h)
        if params.dropout:
            h = layers.Dropout(params.dropout, name=f"dropout_{i}")(h)
    h = layers.Dense(params.latent_units, name="latent")(h)
    for i, units in enumerate(reversed(params.hidden_units)):
        h = layers.Dense(units, activation="relu", name=f"decode_{i}")(h)
    reconstruction = layers.Dense(z.shape[-1], name="reconstruction")(h)
    return layers.Subtract(name="residual")([z, reconstruction])


def with_fused_score(autoencoder: keras.Model, cdf: EmpiricalCDF, x_fit: np.ndarray) -> keras.Model:
    """The trained autoencoder (raw features -> residual per feature) + the tail score of `cdf`, its error
    score and the reasons' weights, with each feature's error scale and skew measured on the training users
    `x_fit`."""
    inputs = autoencoder.input
    z, upper, lower = cdf(inputs)
    residual = np.asarray(ops.convert_to_numpy(autoencoder(x_fit, training=False)))
    centred = x_fit - x_fit.mean(axis=0)
    fused = FusedScore(
        error_scale=np.maximum((residual**2).mean(axis=0), 1e-3),
        right_skewed=(centred**3).mean(axis=0) >= 0,
        parts=True,
        name="fused_score",
    )([autoencoder.output, z, upper, lower])
    return keras.Model(inputs, fused, name=FUSED)


def mean_of(trainings: Sequence[keras.Model]) -> keras.Model:
    """Several whole trainings of the ensemble as one model whose output is the mean of theirs, element by
    element: the mean score, the mean of the reasons' weights and of the normal scores (the layout
    [score, weight, z] is each training's). The thresholds are then chosen on the mean score."""
    inputs = keras.Input(shape=tuple(trainings[0].input.shape[1:]), name="features")
    outputs = [
        keras.Model(model.input, model.output, name=f"training_{k}")(inputs)
        for k, model in enumerate(trainings)
    ]
    return keras.Model(inputs, layers.Average(name="mean_of_trainings")(outputs), name=FUSED)


def first_training(model: keras.Model) -> keras.Model:
    """The model itself, or for a mean of trainings the first of them (where its layers can be looked up)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested and model.name == FUSED else model


def split_output(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unsupervised model's one output, [score, per-feature weight, normal score z] -> its parts."""
    columns = (out.shape[1] - 1) // 2
    return out[:, 0].astype(np.float64), out[:, 1 : 1 + columns], out[:, 1 + columns :]


@keras.saving.register_keras_serializable(package="shopguard")
class RobustZSum(layers.Layer):
    """detector scores -> the sum of their robust z-scores (median and MAD of the training users), each
    floored at Z_FLOOR."""

    def __init__(self, centre: Floats, scale: Floats, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.centre = [float(v) for v in centre]
        self.scale = [float(v) for v in scale]

    def call(self, inputs: Tensor) -> Tensor:
        z = (inputs - np.asarray(self.centre, np.float32)) / np.asarray(self.scale, np.float32)
        return ops.sum(ops.maximum(z, Z_FLOOR), axis=1, keepdims=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "centre": self.centre, "scale": self.scale}


def robust_scale(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median and the MAD in standard-deviation units (the standard deviation where half the
    users share one value, 1 where all do)."""
    centre = np.median(scores, axis=0)
    scale = 1.4826 * np.median(np.abs(scores - centre), axis=0)
    scale = np.where(scale > 0, scale, scores.std(axis=0))
    return centre, np.where(scale > 0, scale, 1.0)


def with_detectors(fused: keras.Model, x_fit: np.ndarray, params: Any) -> keras.Model:
    """One score from five detectors: the tail and error scores of `fused`, an isolation forest and the
    k-th neighbour distance in raw and in log units (those the settings keep), each as a robust z-score
    (its median on the training users `x_fit` subtracted, in units of its MAD, floored at Z_FLOOR), summed.
    No detector's units matter and nothing is weighted or tuned: a user very rare to one detector, or
    fairly rare to several, scores high. Fusing by rank (the sum of -log P(S >= s), used before) flattened
    the scores of the users a detector is surest of: on the same component scores it was worse on both
    benchmarks (docs/quality.md). The output keeps the layout [score, weight, z]."""
    from shopguard.model.fitting import predict

    inputs, output = fused.input, fused.output
    parts = [output[:, :1], output[:, 1:2]]
    if params.isolation_trees:
        parts.append(isolation_forest(x_fit, params.isolation_trees, params.seed)(inputs))
    if params.neighbours:
        k, rows, seed = params.neighbours, params.neighbour_reference, params.seed
        parts.append(nearest_neighbours(x_fit, k, rows, seed)(inputs))
        # in log units standardised over all training users (the autoencoder's own normalisation leaves out
        # the users it reconstructed worst, which would blow rare features up)
        logged = fused.get_layer("signed_log1p").output
        logged_fit = predict(keras.Model(inputs, logged), x_fit)[0]
        parts.append(nearest_neighbours(logged_fit, k, rows, seed, "nearest_neighbours_log")(logged))
    scores = layers.Concatenate(name="detector_scores")(parts)
    on_fit = predict(keras.Model(inputs, scores), x_fit)[0].astype(np.float64)
    centre, scale = robust_scale(on_fit)
    total = RobustZSum(centre, scale, name="detector_fusion")(scores)
    return keras.Model(inputs, ops.concatenate([total, output[:, 2:]], axis=1), name=fused.name)
