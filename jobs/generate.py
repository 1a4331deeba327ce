"""Write a synthetic data set (clicks, transactions, labels and the ground truth) as Delta tables.

    ./submit.sh generate --users 5000 --days 30 --end-date 2026-11-22
    spark-submit jobs/generate.py --profile local --users 100000     # about 10 million events

Each run replaces the four tables with one commit each; the same settings give the same data.
"""

from __future__ import annotations

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import main_entry, spark_job
from shopguard.steps import generate


def main(argv: list[str] | None = None) -> None:
    _, settings = parse("generate", argv, __doc__)
    with spark_job("generate", settings) as (spark, storage, run):
        generate.run(Tables(storage, settings.tables), settings.generate, run)


if __name__ == "__main__":
    main_entry(main)
