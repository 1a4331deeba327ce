"""A synthetic data set (clicks, transactions, labels and the ground truth), one commit per table."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel

from shopguard.catalog import Tables
from shopguard.config import GenerateSettings
from shopguard.runtime import RunInfo
from shopguard.synthetic import SyntheticSpec, split_records, synthetic_records

log = logging.getLogger("shopguard.generate")


def run(tables: Tables, settings: GenerateSettings, run: RunInfo) -> dict[str, int]:
    """Replace the four tables; the same settings give the same data. Returns rows per table."""
    spec = SyntheticSpec.from_settings(settings, datetime.now(UTC).date())
    spark = tables.storage.spark
    # nothing but block numbers: every block simulates its own users
    parallelism = spark.sparkContext.defaultParallelism
    blocks = spark.range(0, spec.blocks, 1, numPartitions=min(spec.blocks, 4 * parallelism))
    records = synthetic_records(blocks, spec).persist(StorageLevel.MEMORY_AND_DISK)
    clicks, transactions, labels, truth = split_records(records)
    written = {}
    for name, df in (
        ("clicks", clicks),
        ("transactions", transactions),
        ("labels", labels),
        ("truth", truth),
    ):
        rows = df.count()
        info = run.commit_info(rows_written=rows, users=spec.users, days=spec.days, seed=spec.seed,
                               end_date=spec.end_date.isoformat())  # fmt: skip
        version = tables.overwrite(name, df, info)
        written[name] = rows
        log.info("%s: %d rows -> %s (version %d)", name, rows, tables.path(name), version)
    records.unpersist()
    log.info("generated %d users over %d days ending %s: %s", spec.users, spec.days, spec.end_date, written)
    return written
