"""Train a model on the driver from the features (and labels, where known) and save it as a new version.

    ./submit.sh train --date 2026-11-22
    ./submit.sh train --date 2026-11-22 --mode classifier --set model.training_snapshots=7

Uses a GPU when Keras sees one, the CPU otherwise; the log and the metadata say which.
"""

from __future__ import annotations

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import main_entry, pseudonym_key, spark_job
from shopguard.steps import train


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("train", argv, __doc__)
    key = pseudonym_key(settings)
    with spark_job("train", settings, args.date, preload=train.PRELOAD) as (spark, storage, run):
        train.run(Tables(storage, settings.tables), settings, run, args.date, key)


if __name__ == "__main__":
    main_entry(main)
