"""Train a model on the driver from the last snapshots' features and the labels known at each snapshot."""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopguard.catalog import Tables
from shopguard.config import ModelSettings, Settings
from shopguard.errors import InputError
from shopguard.features import feature_columns, feature_fingerprint
from shopguard.labels import attach_labels, read_labels
from shopguard.model.data import feature_arrays, holdout_mask
from shopguard.model.metadata import ModelMetadata
from shopguard.registry import new_version, save_model
from shopguard.runtime import RunInfo
from shopguard.sampling import capped_sample

log = logging.getLogger("shopguard.train")

# Keras and TensorFlow (~5 s to import), needed only once the features are on the driver: the job imports
# them while its session starts (`spark_job(preload=...)`).
PRELOAD = ("shopguard.model.training",)


def run(tables: Tables, settings: Settings, run: RunInfo, day: date, key: bytes | None) -> str:
    """A new model version in the models folder; returns the version."""
    m = settings.model
    features, inputs = _training_features(tables, m, day)
    if tables.exists("labels"):
        verdicts = read_labels(tables, settings.columns.mapping("labels"), key, day)
        bad = verdicts.quarantined.count()
        if bad:
            info = run.commit_info(snapshot_date=day.isoformat(), quarantined=bad)
            tables.replace(
                "quarantine", verdicts.quarantined, day, info, also=[("source_table", "=", "labels")]
            )
            log.warning("labels: %d rows quarantined", bad)
        features = attach_labels(features, verdicts.valid)
        inputs["labels"] = {"path": tables.path("labels"), "version": tables.version("labels")}
    else:
        log.info("no labels table at %s: training without labels", tables.path("labels"))
        features = features.withColumn("label", F.lit(None).cast("int"))
    features = training_sample(features, m)

    # The Spark -> driver handoff: Arrow batches, not rows.
    names = feature_columns(features.drop("label", "anomaly_type").schema)
    user_ids, x, labels = feature_arrays(features.select("user_id", "label", *names).toArrow(), names)
    if m.holdout_share > 0:
        keep = ~holdout_mask(user_ids, m.holdout_share)
        x, labels, user_ids = x[keep], labels[keep], user_ids[keep]
        log.info("holding out %.0f%% of users: training on %d rows", 100 * m.holdout_share, len(x))

    from shopguard.model.training import TrainingParams, train  # PRELOAD

    with tempfile.TemporaryDirectory() as tensorboard_dir:
        trained = train(
            x, user_ids, names, TrainingParams.from_settings(m), labels=labels, log_dir=tensorboard_dir
        )
        version = new_version(trained.mode)
        metadata = ModelMetadata(
            mode=trained.mode,
            feature_names=trained.feature_names,
            feature_fingerprint=feature_fingerprint(features.select(*names).schema),
            thresholds=trained.thresholds,
            reference_quantiles=trained.reference_quantiles,
            reference_values=trained.reference_values,
            constant_features=trained.constant_features,
            normalisation=trained.normalisation,
            metrics=trained.metrics,
            training={
                **trained.training,
                "run_id": run.run_id,
                "snapshot_date": day.isoformat(),
                "holdout_share": m.holdout_share,
            },  # fmt: skip
            inputs=inputs,
            feature_profile=trained.feature_profile,
            created_at=datetime.now(UTC).isoformat(),
        )
        path = save_model(trained.model, metadata, tables.path("models"), version, tensorboard_dir)
    log.info("model %s saved to %s (%d rows, device %s, metrics %s)", version, path, len(x),
             trained.training["device"], {k: round(v, 4) for k, v in trained.metrics.items()})  # fmt: skip
    return version


def _training_features(tables: Tables, m: ModelSettings, day: date) -> tuple[DataFrame, dict[str, Any]]:
    """The last `model.training_snapshots` snapshots up to `day`, at a pinned version."""
    version = tables.require("features", "run the features job first")
    snapshots = [d for d in tables.dates("features", version=version) if d <= day][-m.training_snapshots :]
    if not snapshots:
        raise InputError(f"no feature snapshot on or before {day} in {tables.path('features')}")
    features = tables.read("features", version=version, where=[("snapshot_date", "in", snapshots)])
    pinned = {
        "path": tables.path("features"),
        "version": version,
        "snapshots": [d.isoformat() for d in snapshots],
    }
    return features, {"features": pinned}


def training_sample(features: DataFrame, m: ModelSettings) -> DataFrame:
    """About `model.max_training_rows` rows: every labelled user and a deterministic sample of the others."""
    return capped_sample(features, m.max_training_rows, m.seed, "model.max_training_rows")[0]
