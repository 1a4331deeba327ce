"""Analysts' verdicts into the labels table, idempotently: the feedback loop the next training uses."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopguard.catalog import Tables
from shopguard.errors import InputError
from shopguard.labels import new_rows
from shopguard.runtime import RunInfo
from shopguard.validation import Rules, conform, deduplicate, normalise, validate

log = logging.getLogger("shopguard.label")


def run(tables: Tables, run: RunInfo, raw: DataFrame, source: str) -> int:
    """Append the verdicts of `raw` (every column as text, as read from `source`) that the labels table does
    not hold yet, and its refused rows to the quarantine (source_table 'verdicts'); returns the new verdicts."""
    now = datetime.now(UTC)
    if "labelled_at" not in raw.columns:  # the same file always gives the same verdict times
        saved = datetime.fromtimestamp(os.path.getmtime(source), UTC) if "://" not in source else now
        raw = raw.withColumn("labelled_at", F.lit(saved.isoformat(sep=" ")))
    conformed = conform(raw, "labels", {}).transform(normalise("labels"))
    checked = validate(conformed, "labels", Rules(now=now), now.date()).persist()
    read, bad = checked.counts()
    if read == 0:
        raise InputError(f"{source} holds no verdicts")
    verdicts = checked.valid.transform(deduplicate("labels"))
    quarantined = checked.quarantined.withColumn("source_table", F.lit("verdicts"))
    if tables.exists("labels"):
        verdicts = new_rows(verdicts, tables.read("labels"), list(verdicts.columns))
    if tables.exists("quarantine"):
        earlier = tables.read("quarantine").where("source_table = 'verdicts'")
        quarantined = new_rows(quarantined, earlier, ["source_table", "record"])

    # only what is new, appended: verdicts and quarantined rows of earlier runs stay
    new_bad = quarantined.count()
    if new_bad:
        tables.append("quarantine", quarantined, run.commit_info(quarantined=new_bad, file=source))
    written = verdicts.count()
    if written:
        info = run.commit_info(rows_read=read, rows_written=written, quarantined=bad, file=source)
        tables.append("labels", verdicts, info)
    checked.flagged.unpersist()
    run.note(read=read, new_verdicts=written, known_before=read - bad - written, quarantined=bad)
    log.info("%s: %d rows, %d new verdicts -> %s, %d already there, %d quarantined (%d new)", source, read,
             written, tables.path("labels"), read - bad - written, bad, new_bad)  # fmt: skip
    return written
