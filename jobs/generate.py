"""Write a synthetic data set (clicks, transactions, labels and the ground truth) as Delta tables.

    ./submit.sh generate --users 5000 --days 30 --end-date 2026-11-22
    spark-submit jobs/generate.py --profile local --users 100000     # about 10 million events

Each run replaces the four tables with one commit each; the same settings give the same data.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pyspark import StorageLevel

from shopguard.cli import parse
from shopguard.runtime import main_entry, spark_job
from shopguard.synthetic import SyntheticSpec, split_records, synthetic_records

log = logging.getLogger("shopguard.generate")


def main(argv: list[str] | None = None) -> None:
    _, settings = parse("generate", argv, __doc__)
    generate = settings.generate.model_dump()
    generate["end_date"] = generate["end_date"] or datetime.now(UTC).date() - timedelta(days=1)
    spec = SyntheticSpec(**generate)
    tables = settings.tables

    with spark_job("generate", settings) as (spark, storage, run):
        # extract: nothing but block numbers; every block simulates its own users
        parallelism = spark.sparkContext.defaultParallelism
        blocks = spark.range(0, spec.blocks, 1, numPartitions=min(spec.blocks, 4 * parallelism))

        # transform
        records = synthetic_records(blocks, spec).persist(StorageLevel.MEMORY_AND_DISK)
        clicks, transactions, labels, truth = split_records(records)

        # load
        written = {}
        for name, df, partitions in (
            ("clicks", clicks, ["event_date"]),
            ("transactions", transactions, ["order_date"]),
            ("labels", labels, []),
            ("truth", truth, []),
        ):
            rows = df.count()
            info = run.commit_info(
                rows_written=rows,
                users=spec.users,
                days=spec.days,
                seed=spec.seed,
                end_date=spec.end_date.isoformat(),
            )
            version = storage.write(
                df, tables.path(name), mode="overwrite", partition_by=partitions, commit_info=info
            )
            written[name] = rows
            log.info("%s: %d rows -> %s (version %d)", name, rows, tables.path(name), version)
        records.unpersist()
        log.info(
            "generated %d users over %d days ending %s: %s", spec.users, spec.days, spec.end_date, written
        )


if __name__ == "__main__":
    main_entry(main)
