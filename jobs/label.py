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

import logging
import os
from datetime import UTC, datetime

from pyspark.sql import functions as F

from shopguard.cli import parse
from shopguard.labels import new_rows
from shopguard.runtime import InputError, main_entry, spark_job
from shopguard.validation import Rules, conform, deduplicate, normalise, validate

log = logging.getLogger("shopguard.label")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("label", argv, __doc__)
    tables, now = settings.tables, datetime.now(UTC)
    if not os.path.isfile(args.verdicts) and "://" not in args.verdicts:
        raise InputError(f"--verdicts {args.verdicts}: no such file")

    with spark_job("label", settings) as (spark, storage, run):
        # extract: every column as text, so a refused value is quarantined as the analyst wrote it
        raw = spark.read.option("header", True).option("inferSchema", False).csv(args.verdicts)
        if "labelled_at" not in raw.columns:  # the same file always gives the same verdict times
            saved = (
                datetime.fromtimestamp(os.path.getmtime(args.verdicts), UTC)
                if "://" not in args.verdicts
                else now
            )
            raw = raw.withColumn("labelled_at", F.lit(saved.isoformat(sep=" ")))

        # transform
        checked = validate(
            conform(raw, "labels", {}).transform(normalise("labels")), "labels", Rules(now=now), now.date()
        ).persist()
        read, bad = checked.counts()
        if read == 0:
            raise InputError(f"{args.verdicts} holds no verdicts")
        verdicts = checked.valid.transform(deduplicate("labels"))
        quarantined = checked.quarantined.withColumn("source_table", F.lit("verdicts"))
        if storage.exists(tables.path("labels")):
            verdicts = new_rows(verdicts, storage.read(tables.path("labels")), list(verdicts.columns))
        if storage.exists(tables.path("quarantine")):
            earlier = storage.read(tables.path("quarantine")).where("source_table = 'verdicts'")
            quarantined = new_rows(quarantined, earlier, ["source_table", "record"])

        # load: only what is new, appended (verdicts and quarantined rows of earlier runs stay)
        new_bad = quarantined.count()
        if new_bad:
            storage.write(quarantined, tables.path("quarantine"), mode="append",
                          partition_by=["snapshot_date", "source_table"],
                          commit_info=run.commit_info(quarantined=new_bad, file=args.verdicts))  # fmt: skip
        written = verdicts.count()
        if written:
            info = run.commit_info(rows_read=read, rows_written=written, quarantined=bad, file=args.verdicts)
            storage.write(verdicts, tables.path("labels"), mode="append", commit_info=info)
        run.note(read=read, new_verdicts=written, known_before=read - bad - written, quarantined=bad)
        log.info("%s: %d rows, %d new verdicts -> %s, %d already there, %d quarantined (%d new)", args.verdicts,
                 read, written, tables.path("labels"), read - bad - written, bad, new_bad)  # fmt: skip


if __name__ == "__main__":
    main_entry(main)
