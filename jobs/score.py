"""Score every user of one snapshot with a stored model and write the scores partition for that date.

    ./submit.sh score --date 2026-11-22
    ./submit.sh score --date 2026-11-22 --model-version 20261123T020000Z-autoencoder-1a2b3c

The model is applied by a pandas UDF on the executors; a rerun for D replaces partition score_date=D.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel

from shopguard.registry import load_model
from shopguard.runtime import JobError, exit_on_error, job_arg_parser, settings_from_args, spark_job
from shopguard.scoring import ScoringPlan, check_features_match, score_users

log = logging.getLogger("shopguard.score")


def main(argv: list[str] | None = None) -> None:
    parser = job_arg_parser(__doc__, needs_date=True)
    parser.add_argument("--model-version", help="model to use (default: scoring.model_version, else newest)")
    args = parser.parse_args(argv)
    settings = settings_from_args(args, scoring__model_version=args.model_version)
    s, tables = settings.scoring, settings.tables
    stored = load_model(tables.path("models"), s.model_version)
    plan = ScoringPlan.from_metadata(
        stored.model_bytes,
        stored.metadata,
        alert_threshold=s.alert_threshold,
        block_threshold=s.block_threshold,
        n_reasons=s.n_reasons,
    )

    with spark_job("score", settings) as (spark, storage, run):
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(s.batch_rows))
        # extract
        features_path = tables.path("features")
        if not storage.exists(features_path):
            raise JobError(f"no features table at {features_path}; run the features job first")
        features_version = storage.version(features_path)
        features = storage.read(
            features_path, version=features_version, where=[("snapshot_date", "=", args.date)]
        )
        check_features_match(features.schema, stored.metadata)
        features = features.persist(StorageLevel.MEMORY_AND_DISK)
        users = features.count()
        if users == 0:
            raise JobError(
                f"no features for {args.date} in {features_path}; run the features job for that date"
            )

        # transform
        scored_at = datetime.now(UTC)
        scores = score_users(features, plan, scored_at, args.date)

        # load
        version = storage.write(
            scores,
            tables.path("scores"),
            mode="overwrite",
            partition_by=["score_date"],
            replace_where=[("score_date", "=", args.date)],
            commit_info=run.commit_info(
                score_date=args.date.isoformat(),
                rows_read=users,
                model_version=stored.version,
                inputs={"features": {"path": features_path, "version": features_version}},
            ),
        )
        written = storage.read(tables.path("scores"), version=version, where=[("score_date", "=", args.date)])
        summary = written.groupBy("action").count().collect()
        total = sum(r["count"] for r in summary)
        if total != users:
            raise JobError(
                f"wrote {total} scores for {users} users of {args.date}; the table is at version {version}"
            )
        log.info(
            "scored %d users of %s with %s -> %s (version %d): %s",
            users,
            args.date,
            stored.version,
            tables.path("scores"),
            version,
            {r["action"]: r["count"] for r in summary},
        )


if __name__ == "__main__":
    exit_on_error(main)
