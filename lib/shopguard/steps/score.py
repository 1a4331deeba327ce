"""Score every user of one snapshot with a stored model into the scores partition of that date."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from shopguard.catalog import Tables
from shopguard.config import ScoringSettings
from shopguard.errors import InputError
from shopguard.registry import StoredModel
from shopguard.runtime import RunInfo
from shopguard.scoring import ScoringPlan, check_features_match, score_users, warm_workers

log = logging.getLogger("shopguard.score")


def run(
    tables: Tables, s: ScoringSettings, run: RunInfo, day: date, stored: StoredModel, table: str = "scores"
) -> dict[str, int]:
    """Partition score_date=D of the scores table (or of shadow_scores, for a challenger), checked after the
    commit; returns users per action."""
    plan = ScoringPlan.from_settings(stored.model_bytes, stored.metadata, s)
    tables.storage.spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(s.batch_rows))
    warming = _start_warming(tables.storage.spark, plan, s.batch_rows) if s.warm_workers else None
    try:
        with tables.preloading(table):
            return _score(tables, run, day, stored, plan, table)
    finally:
        if warming is not None:
            warming.join()


def _score(
    tables: Tables, run: RunInfo, day: date, stored: StoredModel, plan: ScoringPlan, table: str
) -> dict[str, int]:
    version = tables.require("features", "run the features job first")
    features = tables.on("features", day, version=version)
    check_features_match(features.schema, stored.metadata)
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    users = features.count()
    if users == 0 and not _empty_snapshot_allowed(tables, day):
        raise InputError(
            f"no features for {day} in {tables.path('features')}; run the features job for that date"
        )
    if users == 0:
        log.warning("the features of %s are empty (allowed by validation.allow_empty): nothing to score", day)

    scores = score_users(features, plan, datetime.now(UTC), day)
    pinned = {"features": {"path": tables.path("features"), "version": version}}
    info = run.commit_info(score_date=day.isoformat(), rows_read=users, model_version=stored.version,
                           inputs=pinned)  # fmt: skip
    started = time.perf_counter()
    written = tables.replace(table, scores, day, info)
    seconds = time.perf_counter() - started
    tally = tables.on(table, day, version=written).groupBy("action").count().collect()
    actions = {r["action"]: r["count"] for r in tally}
    if sum(actions.values()) != users:
        raise RuntimeError(f"wrote {sum(actions.values())} scores for {users} users of {day}; the table is at "
                           f"version {written}")  # fmt: skip
    features.unpersist()
    if table == "scores":  # the run record counts the decisions
        run.note(users=users, **actions)
    log.info("scored %d users of %s with %s in %.1f s (%.0f users/s) -> %s (version %d): %s", users, day,
             stored.version, seconds, users / max(seconds, 1e-9), tables.path(table), written, actions)  # fmt: skip
    return actions


def _start_warming(spark: SparkSession, plan: ScoringPlan, rows: int) -> threading.Thread:
    """The executors' Python workers import Keras, load the model and call it once on `rows` rows in a
    background job while this thread reads and counts the features, instead of at the start of the scoring
    stage."""
    workers = spark.sparkContext.defaultParallelism

    def warm() -> None:
        try:
            loaded = warm_workers(spark.range(0, workers, 1, workers), plan, rows).collect()
        except Exception as exc:  # the scoring loads the model itself and reports its own failure
            log.warning("could not load the model into the Python workers ahead of scoring: %s", exc)
            return
        slowest = max((r["seconds"] for r in loaded), default=0.0)
        log.info("the model loaded into %d Python workers ahead of scoring (%.1f s at most)",
                 len({r["worker_pid"] for r in loaded}), slowest)  # fmt: skip

    thread = threading.Thread(target=warm, name="shopguard-warm-workers", daemon=True)
    thread.start()
    return thread


def _empty_snapshot_allowed(tables: Tables, day: date) -> bool:
    """Whether the newest features commit for `day` wrote an empty snapshot on purpose (--allow-empty)."""
    for commit in tables.history("features", limit=50):
        if commit.info.get("job") == "features" and commit.info.get("snapshot_date") == day.isoformat():
            return commit.info.get("rows_written") == 0
    return False
