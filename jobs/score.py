"""Score every user of one snapshot with a stored model and write the scores partition for that date.

    ./submit.sh score --date 2026-11-22
    ./submit.sh score --date 2026-11-22 --model-version 20261123T020000Z-autoencoder-1a2b3c

The model is applied by a pandas UDF on the executors; a rerun for D replaces partition score_date=D.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel

from shopguard.cli import parse
from shopguard.registry import load_model
from shopguard.runtime import InputError, main_entry, spark_job
from shopguard.scoring import ScoringPlan, check_features_match, score_users

log = logging.getLogger("shopguard.score")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("score", argv, __doc__)
    s, tables = settings.scoring, settings.tables
    stored = load_model(tables.path("models"), s.model_version)
    log.info("model %s (%s)", stored.version, "pinned" if s.model_version else "the newest version")
    plan = ScoringPlan.from_metadata(
        stored.model_bytes,
        stored.metadata,
        alert_threshold=s.alert_threshold,
        block_threshold=s.block_threshold,
        n_reasons=s.n_reasons,
    )

    with spark_job("score", settings, args.date) as (spark, storage, run):
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(s.batch_rows))
        # extract
        features_path = tables.path("features")
        if not storage.exists(features_path):
            raise InputError(f"no features table at {features_path}; run the features job first")
        features_version = storage.version(features_path)
        features = storage.read(
            features_path, version=features_version, where=[("snapshot_date", "=", args.date)]
        )
        check_features_match(features.schema, stored.metadata)
        features = features.persist(StorageLevel.MEMORY_AND_DISK)
        users = features.count()
        if users == 0 and not _empty_snapshot_allowed(storage, features_path, args.date):
            raise InputError(
                f"no features for {args.date} in {features_path}; run the features job for that date"
            )
        if users == 0:
            log.warning("the features of %s are empty (allowed by validation.allow_empty): nothing to score",
                        args.date)  # fmt: skip

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
            raise RuntimeError(
                f"wrote {total} scores for {users} users of {args.date}; the table is at version {version}"
            )
        run.note(users=users, **{r["action"]: r["count"] for r in summary})
        log.info(
            "scored %d users of %s with %s -> %s (version %d): %s",
            users,
            args.date,
            stored.version,
            tables.path("scores"),
            version,
            {r["action"]: r["count"] for r in summary},
        )


def _empty_snapshot_allowed(storage, features_path: str, day) -> bool:
    """Whether the newest features commit for `day` wrote an empty snapshot on purpose (--allow-empty)."""
    for commit in storage.history(features_path, limit=50):
        if commit.info.get("job") == "features" and commit.info.get("snapshot_date") == day.isoformat():
            return commit.info.get("rows_written") == 0
    return False


if __name__ == "__main__":
    main_entry(main)
