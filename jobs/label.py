"""Append analysts' verdicts to the labels table: the feedback loop. The next train run uses them.

    ./submit.sh label --verdicts verdicts.csv

verdicts.csv has a header and the columns user_id, label (1 anomalous, 0 normal), anomaly_type and,
optionally, labelled_at (default: now). Bad rows go to the quarantine table (source_table 'verdicts');
good rows are appended in one commit. With pseudonymisation on, give the platform's raw user ids: the
labels table, like the click logs, holds raw ids and training pseudonymises both the same way.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark.sql import functions as F

from shopguard.runtime import JobError, exit_on_error, job_arg_parser, settings_from_args, spark_job
from shopguard.validation import Rules, conform, deduplicate, normalise, validate

log = logging.getLogger("shopguard.label")


def main(argv: list[str] | None = None) -> None:
    parser = job_arg_parser(__doc__)
    parser.add_argument(
        "--verdicts", required=True, help="CSV file of verdicts (user_id,label,anomaly_type[,labelled_at])"
    )
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    tables = settings.tables
    now = datetime.now(UTC)

    with spark_job("label", settings) as (spark, storage, run):
        # extract
        raw = spark.read.option("header", True).option("inferSchema", False).csv(args.verdicts)
        if "labelled_at" not in raw.columns:
            raw = raw.withColumn("labelled_at", F.lit(now))
        raw = raw.withColumn("label", F.col("label").try_cast("int"))  # CSV text; unparsable -> quarantined

        # transform
        checked = validate(
            conform(raw, "labels", {}).transform(normalise("labels")), "labels", Rules(now=now), now.date()
        )
        checked = checked.persist()
        read, bad = checked.counts()
        if read == 0:
            raise JobError(f"{args.verdicts} holds no verdicts")
        verdicts = checked.valid.transform(deduplicate("labels"))

        # load
        if bad:
            storage.write(
                checked.quarantined.withColumn("source_table", F.lit("verdicts")), tables.path("quarantine"),
                mode="overwrite", partition_by=["snapshot_date", "source_table"],
                replace_where=[("snapshot_date", "=", now.date()), ("source_table", "=", "verdicts")],
                commit_info=run.commit_info(quarantined=bad),
            )  # fmt: skip
        written = verdicts.count()
        info = run.commit_info(rows_read=read, rows_written=written, quarantined=bad)
        version = storage.write(verdicts, tables.path("labels"), mode="append", commit_info=info)
        log.info(
            "appended %d verdicts to %s (version %d); %d quarantined",
            written,
            tables.path("labels"),
            version,
            bad,
        )


if __name__ == "__main__":
    exit_on_error(main)
