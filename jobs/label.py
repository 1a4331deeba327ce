"""Add analysts' verdicts to the labels table: the feedback loop. The next train run uses them.

    ./submit.sh label --verdicts verdicts.csv

verdicts.csv has a header and the columns user_id, label (1 anomalous, 0 normal), anomaly_type and,
optionally, labelled_at (default: the file's modification time). A verdict is keyed by user, time and
content: loading the same file twice changes nothing. Rows that are not verdicts (a label other than 0 or 1,
no user, ...) go to the quarantine table (source_table 'verdicts') with the text as given; every run's
quarantined rows are kept. With pseudonymisation on, give the platform's raw user ids: the labels table,
like the click logs, holds raw ids and training pseudonymises both the same way.
"""

from __future__ import annotations

import os

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import InputError, main_entry, spark_job
from shopguard.steps import label


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("label", argv, __doc__)
    if not os.path.isfile(args.verdicts) and "://" not in args.verdicts:
        raise InputError(f"--verdicts {args.verdicts}: no such file")
    with spark_job("label", settings) as (spark, storage, run):
        # every column as text, so a refused value is quarantined as the analyst wrote it
        raw = spark.read.option("header", True).option("inferSchema", False).csv(args.verdicts)
        label.run(Tables(storage, settings.tables), run, raw, args.verdicts)


if __name__ == "__main__":
    main_entry(main)
