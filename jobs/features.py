"""Validate the click and transaction logs and build the per-user features of one snapshot date.

    ./submit.sh features --date 2026-11-22
    spark-submit jobs/features.py --profile cluster --date 2026-11-22

Writes partition snapshot_date=D of the features table and the rows that failed validation to partition
D of the quarantine table, one commit each; a rerun for D replaces both partitions. An input table without
rows for D fails the job (exit 3) unless --allow-empty says an empty day is expected.
"""

from __future__ import annotations

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import main_entry, pseudonym_key, spark_job
from shopguard.steps import features


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("features", argv, __doc__)
    key = pseudonym_key(settings)
    with spark_job("features", settings, args.date) as (spark, storage, run):
        features.run(Tables(storage, settings.tables), settings, run, args.date, key)


if __name__ == "__main__":
    main_entry(main)
