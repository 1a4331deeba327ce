"""Scoring across the cluster: a pandas UDF (mapInPandas) applies the model to Arrow batches of users.

The model travels as bytes inside the UDF's closure (PySpark broadcasts a large closure by itself), and
each Python worker loads it once, keyed by its checksum, then calls it on every batch it is given. Loading
means importing Keras and TensorFlow first (3-5 s per worker), and the model's first call costs more than
the next ones, so the score job can have the workers load it and call it once (`warm_workers`) while the
driver is still reading the features.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.config import ScoringSettings
from shopguard.features import feature_columns, feature_fingerprint
from shopguard.model.metadata import ModelMetadata

# One loaded model per Python worker process and model checksum. Spark reuses workers between tasks
# (spark.python.worker.reuse), so a model is deserialised once per worker, not once per batch.
_WORKER_MODELS: dict[str, Any] = {}


class ModelMismatchError(ValueError):
    """The model was trained on other features than the table to score holds."""


@dataclass(frozen=True)
class ScoringPlan:
    """Plain values the UDF needs, taken from the stored model and the settings."""

    model_bytes: bytes
    model_sha256: str
    model_version: str
    mode: str
    feature_names: tuple[str, ...]
    reference_values: tuple[float, ...]
    constant_features: frozenset[str]
    reference_quantiles: dict[str, list[float]]
    alert_threshold: float
    block_threshold: float
    n_reasons: int = 3

    @classmethod
    def from_metadata(
        cls,
        model_bytes: bytes,
        metadata: ModelMetadata,
        alert_threshold: float | None = None,
        block_threshold: float | None = None,
        n_reasons: int = 3,
    ) -> ScoringPlan:
        """Thresholds from the model unless overridden (configuration wins)."""
        alert = metadata.thresholds["alert"] if alert_threshold is None else alert_threshold
        block = metadata.thresholds["block"] if block_threshold is None else block_threshold
        if block < alert:
            raise ValueError(f"block threshold {block} is below the alert threshold {alert}")
        return cls(
            model_bytes=model_bytes,
            model_sha256=metadata.model_sha256 or "",
            model_version=metadata.model_version or "",
            mode=metadata.mode,
            feature_names=tuple(metadata.feature_names),
            reference_values=tuple(metadata.reference_values),
            constant_features=frozenset(metadata.constant_features),
            reference_quantiles=metadata.reference_quantiles,
            alert_threshold=float(alert),
            block_threshold=float(block),
            n_reasons=n_reasons,
        )

    @classmethod
    def from_settings(
        cls, model_bytes: bytes, metadata: ModelMetadata, scoring: ScoringSettings
    ) -> ScoringPlan:
        """The plan a run scores with: the `scoring:` settings over what the model stored."""
        return cls.from_metadata(
            model_bytes,
            metadata,
            alert_threshold=scoring.alert_threshold,
            block_threshold=scoring.block_threshold,
            n_reasons=scoring.n_reasons,
        )


def check_features_match(features_schema: T.StructType, metadata: ModelMetadata) -> None:
    """Refuse a model trained on other features, naming what differs."""
    if feature_fingerprint(features_schema) == metadata.feature_fingerprint:
        return
    have, want = feature_columns(features_schema), list(metadata.feature_names)
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    detail = (
        f"missing from the table: {missing[:10]}; not known to the model: {extra[:10]}"
        if missing or extra
        else "same names, different order or types"
    )
    raise ModelMismatchError(
        f"model {metadata.model_version} does not fit the features table ({detail}). "
        "Retrain the model on the current features, or score with the model that matches them."
    )


def _worker_model(plan: ScoringPlan):
    model = _WORKER_MODELS.get(plan.model_sha256)
    if model is None:
        from shopguard.registry import keras_model_from_bytes, sha256

        if sha256(plan.model_bytes) != plan.model_sha256:
            raise RuntimeError("model bytes changed in transit; refusing to score")
        model = keras_model_from_bytes(plan.model_bytes)
        _WORKER_MODELS.clear()  # keep one model per worker
        _WORKER_MODELS[plan.model_sha256] = model
    return model


WARMED = "worker_pid long, seconds double"


def warm_workers(seeds: DataFrame, plan: ScoringPlan, rows: int = 0) -> DataFrame:
    """One row per partition of `seeds`: the Python worker that loaded the plan's model and called it once on
    `rows` rows of zeros, and how long that took. It is a pandas UDF like the scoring itself, because that
    is what makes Spark hand the scoring the same (reused) workers: the workers of an RDD job doing the same
    were not reused by the scoring. The call matters: a model's first call in a process took 1.1-1.3 s for
    4,096 rows in the score job's first batch against 0.4 s for the next such call (TensorFlow sets up its
    kernels and buffers), so the first batch pays it unless the warm-up did (docs/sizing.md)."""

    def load(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        started = time.perf_counter()
        from shopguard.model import batch_scores  # in the worker: Keras is never imported on the driver

        model = _worker_model(plan)
        if rows:
            batch_scores(model, plan.mode, np.zeros((rows, len(plan.feature_names)), dtype=np.float32))
        for _ in batches:
            pass
        seconds = time.perf_counter() - started
        yield pd.DataFrame({"worker_pid": [os.getpid()], "seconds": [seconds]})

    return seeds.mapInPandas(load, WARMED)


CRASH_WORKER_ONCE = "SHOPGUARD_CRASH_WORKER_ONCE"


def _crash_worker_once() -> None:
    """Fault-injection point for drills, off unless the variable names a marker file: the first batch
    to get here creates it and kills its Python worker, as an out-of-memory kill would. Spark retries."""
    marker = os.environ.get(CRASH_WORKER_ONCE)
    if marker and not os.path.exists(marker):
        with open(marker, "x"):
            pass
        os._exit(3)


def score_frame(pdf: pd.DataFrame, plan: ScoringPlan, scored_at: datetime, score_date: date) -> pd.DataFrame:
    """Score one pandas batch of feature rows; the same code path in the UDF and in tests."""
    from shopguard.model import batch_scores, percentile_of, reasons

    _crash_worker_once()

    model = _worker_model(plan)
    x = pdf[list(plan.feature_names)].to_numpy(dtype=np.float32)
    scores, explanation = batch_scores(model, plan.mode, x)
    action = np.where(
        scores >= plan.block_threshold, "block", np.where(scores >= plan.alert_threshold, "alert", "pass")
    )
    return pd.DataFrame(
        {
            "user_id": pdf["user_id"].to_numpy(),
            "score": scores,
            "score_percentile": percentile_of(scores, plan.reference_quantiles),
            "is_anomaly": scores >= plan.alert_threshold,
            "action": action,
            "reasons": reasons(
                model,
                plan.mode,
                x,
                scores,
                explanation,
                plan.feature_names,
                plan.reference_values,
                plan.n_reasons,
                plan.constant_features,
            ),
            "model_version": plan.model_version,
            "scored_at": pd.Timestamp(scored_at),
            "score_date": score_date,
        }
    )


def score_users(features: DataFrame, plan: ScoringPlan, scored_at: datetime, score_date: date) -> DataFrame:
    """Features of one snapshot -> the rows of the scores table (schemas.SCORES)."""
    missing = [c for c in ("user_id", *plan.feature_names) if c not in features.columns]
    if missing:
        raise ModelMismatchError(f"features lack columns the model needs: {missing[:10]}")

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if len(pdf):
                yield score_frame(pdf, plan, scored_at, score_date)

    return features.select("user_id", *plan.feature_names).mapInPandas(score_batches, schemas.SCORES)
