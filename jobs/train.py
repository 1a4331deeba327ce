"""Train a model on the driver from the features (and labels, where known) and save it as a new version.

    ./submit.sh train --date 2026-11-22
    ./submit.sh train --date 2026-11-22 --mode classifier --set model.training_snapshots=7

Uses a GPU when Keras sees one, the CPU otherwise; the log and the metadata say which.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, date, datetime

from pyspark.sql import functions as F

from shopguard.cli import parse
from shopguard.features import feature_columns, feature_fingerprint
from shopguard.labels import attach_labels
from shopguard.model import TrainingParams, feature_arrays, holdout_mask, train
from shopguard.privacy import pseudonymise
from shopguard.registry import new_version, save_model
from shopguard.runtime import InputError, main_entry, pseudonym_key, spark_job
from shopguard.validation import Rules, conform, normalise, validate

log = logging.getLogger("shopguard.train")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("train", argv, __doc__)
    m, tables = settings.model, settings.tables
    params = TrainingParams.from_settings(m)

    key = pseudonym_key(settings)

    with spark_job("train", settings, args.date) as (spark, storage, run):
        # extract: the last N snapshots up to --date, at a pinned version
        features_path = tables.path("features")
        if not storage.exists(features_path):
            raise InputError(f"no features table at {features_path}; run the features job first")
        features_version = storage.version(features_path)
        available = {
            date.fromisoformat(p["snapshot_date"])
            for p in storage.partition_values(features_path, version=features_version)
        }
        snapshots = sorted((d for d in available if d <= args.date), reverse=True)[: m.training_snapshots]
        if not snapshots:
            raise InputError(f"no feature snapshot on or before {args.date} in {features_path}")
        features = storage.read(
            features_path, version=features_version, where=[("snapshot_date", "in", snapshots)]
        )
        inputs = {
            "features": {
                "path": features_path,
                "version": features_version,
                "snapshots": [d.isoformat() for d in sorted(snapshots)],
            }
        }

        labels_path = tables.path("labels")
        if storage.exists(labels_path):
            labels_version = storage.version(labels_path)
            raw_labels = storage.read(labels_path, version=labels_version)
            rules = Rules(now=datetime.now(UTC))
            checked = validate(
                conform(raw_labels, "labels", settings.columns.mapping("labels")).transform(
                    normalise("labels")
                ),
                "labels",
                rules,
                args.date,
            )
            if key is not None:
                checked = checked.transform(pseudonymise("labels", key, settings.columns.mapping("labels")))
            bad = checked.quarantined.count()
            if bad:
                storage.write(
                    checked.quarantined,
                    tables.path("quarantine"),
                    mode="overwrite",
                    partition_by=["snapshot_date", "source_table"],
                    replace_where=[("snapshot_date", "=", args.date), ("source_table", "=", "labels")],
                    commit_info=run.commit_info(snapshot_date=args.date.isoformat(), quarantined=bad),
                )
                log.warning("labels: %d rows quarantined", bad)
            features = attach_labels(features, checked.valid)
            inputs["labels"] = {"path": labels_path, "version": labels_version}
        else:
            log.info("no labels table at %s: training without labels", labels_path)
            features = features.withColumn("label", F.lit(None).cast("int"))

        rows = features.count()
        if rows > m.max_training_rows:  # a deterministic sample by user
            keep = m.max_training_rows / rows
            features = features.where(
                F.abs(F.xxhash64("user_id", F.lit(m.seed))) % 1_000_000 < keep * 1_000_000
            )
            log.info("sampling %.1f%% of %d rows (model.max_training_rows)", 100 * keep, rows)

        # The Spark -> driver handoff: Arrow batches, not rows.
        names = feature_columns(features.drop("label", "anomaly_type").schema)
        user_ids, x, labels = feature_arrays(features.select("user_id", "label", *names).toArrow(), names)
        if m.holdout_share > 0:
            keep = ~holdout_mask(user_ids, m.holdout_share)
            x, labels, user_ids = x[keep], labels[keep], user_ids[keep]
            log.info("holding out %.0f%% of users: training on %d rows", 100 * m.holdout_share, len(x))

        # transform: fit on the driver
        with tempfile.TemporaryDirectory() as tensorboard_dir:
            trained = train(x, user_ids, names, params, labels=labels, log_dir=tensorboard_dir)
            version = new_version(trained.mode)
            metadata = {
                "mode": trained.mode,
                "feature_names": trained.feature_names,
                "feature_fingerprint": feature_fingerprint(features.select(*names).schema),
                "thresholds": trained.thresholds,
                "reference_quantiles": trained.reference_quantiles,
                "reference_values": trained.reference_values,
                "normalisation": trained.normalisation,
                "metrics": trained.metrics,
                "training": {
                    **trained.training,
                    "run_id": run.run_id,
                    "snapshot_date": args.date.isoformat(),
                    "holdout_share": m.holdout_share,
                },
                "inputs": inputs,
                "created_at": datetime.now(UTC).isoformat(),
            }
            # load
            path = save_model(trained.model, metadata, tables.path("models"), version, tensorboard_dir)
        log.info(
            "model %s saved to %s (%d rows, device %s, metrics %s)",
            version,
            path,
            len(x),
            trained.training["device"],
            {k: round(v, 4) for k, v in trained.metrics.items()},
        )


if __name__ == "__main__":
    main_entry(main)
