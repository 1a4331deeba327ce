"""Validate the click and transaction logs of a snapshot's look-back and build the snapshot's features."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from shopguard.catalog import Tables
from shopguard.config import Settings
from shopguard.errors import InputError
from shopguard.features import FeatureSpec, build_user_features, input_date_range, users_without_row
from shopguard.inputs import read_window
from shopguard.privacy import pseudonymise
from shopguard.runtime import RunInfo
from shopguard.validation import Rules, Validated, conform, deduplicate, normalise, validate

log = logging.getLogger("shopguard.features")

INPUTS = ("clicks", "transactions")


@dataclass
class _Input:
    checked: Validated
    valid: DataFrame
    counts: dict[str, int]
    pinned: dict[str, Any]


def run(tables: Tables, settings: Settings, run: RunInfo, day: date, key: bytes | None) -> dict[str, Any]:
    """Quarantine partition D and features partition D, one commit each; returns the counts."""
    spec = FeatureSpec.from_settings(settings.features, settings.validation)
    rules = Rules.from_settings(settings.validation, datetime.now(UTC))
    first, last = input_date_range(day, spec.lifetime_days)
    inputs = {t: _validated(tables, settings, t, rules, day, (first, last), key) for t in INPUTS}
    for table, got in inputs.items():
        run.note(**{f"{table}_read": got.counts["read"], f"{table}_quarantined": got.counts["quarantined"]})
    counts = {t: got.counts for t, got in inputs.items()}
    features = build_user_features(inputs["clicks"].valid, inputs["transactions"].valid, day, spec)

    # check both schemas first, so a mismatch writes nothing; then each write replaces partition D
    quarantine = inputs["clicks"].checked.quarantined.unionByName(inputs["transactions"].checked.quarantined)
    tables.check("quarantine", quarantine)
    tables.check("features", features, "The feature definitions changed since that table was written: point "
                 "tables.features at a new table (and retrain), or remove the old one")  # fmt: skip
    info = run.commit_info(snapshot_date=day.isoformat(), counts=counts)
    tables.replace("quarantine", quarantine, day, info, also=[("source_table", "in", list(INPUTS))])
    for got in inputs.values():  # every row as read is not needed past the quarantine
        got.checked.flagged.unpersist()
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    users = features.count()
    inactive = users_without_row(inputs["clicks"].valid, inputs["transactions"].valid, users)
    pinned = {t: got.pinned for t, got in inputs.items()}
    info = run.commit_info(snapshot_date=day.isoformat(), rows_written=users, counts=counts, inputs=pinned,
                           users_without_row=inactive)  # fmt: skip
    version = tables.replace("features", features, day, info)
    run.note(users=users, users_without_row=inactive)
    if inactive:
        log.info("features for %s: %d users seen in the %d-day look-back have no row and no score today: no "
                 "clicks or orders in the last %d days", day, inactive, spec.lifetime_days, spec.max_window)  # fmt: skip
    if users == 0:
        log.warning(
            "features for %s: no users; the snapshot is empty (allowed by validation.allow_empty)", day
        )
    log.info("features for %s: %d users x %d columns -> %s (version %d)", day, users,
             len(features.columns) - 2, tables.path("features"), version)  # fmt: skip
    for frame in [*(got.valid for got in inputs.values()), features]:  # the session may outlive the step
        frame.unpersist()
    return {"users": users, "users_without_row": inactive, "counts": counts, "version": version}


def _validated(
    tables: Tables,
    settings: Settings,
    table: str,
    rules: Rules,
    day: date,
    span: tuple[date, date],
    key: bytes | None,
) -> _Input:
    """The look-back of one input log at a pinned version: schema first (fails before anything is written),
    then each row checked, pseudonymised where asked, and de-duplicated."""
    version = tables.require(table, f"run the generate job or point tables.{table} at yours")
    path, mapping = tables.path(table), settings.columns.mapping(table)
    raw = read_window(tables.storage, path, table, mapping, version, *span)
    checked = validate(conform(raw, table, mapping).transform(normalise(table)), table, rules, day)
    if key is not None:
        checked = checked.transform(pseudonymise(table, key, mapping))
    checked = checked.persist()
    read, quarantined, on_date = checked.tally()
    if on_date == 0:
        _empty_day(table, path, version, day, span, read, quarantined, settings.validation.allow_empty)
    valid = checked.valid.transform(deduplicate(table)).persist(StorageLevel.MEMORY_AND_DISK)
    used = valid.count()
    counts = {"read": read, "used": used, "quarantined": quarantined,
              "duplicates": read - quarantined - used, "on_date": on_date}  # fmt: skip
    log.info("%s v%d: read %d = used %d + quarantined %d + duplicates %d (%d on %s)", table, version,
             *(counts[k] for k in ("read", "used", "quarantined", "duplicates", "on_date")), day)  # fmt: skip
    return _Input(checked, valid, counts, {"path": path, "version": version})


def _empty_day(
    table: str,
    path: str,
    version: int,
    day: date,
    span: tuple[date, date],
    read: int,
    bad: int,
    allowed: bool,
) -> None:
    message = (
        f"{table}: no valid rows for {day} in {path} (version {version}; {read} rows read for "
        f"{span[0]}..{span[1]}, {bad} quarantined)"
    )
    if not allowed:
        raise InputError(
            f"{message}: the upstream load for that day may have failed. Rerun once it has landed, "
            "or pass --allow-empty (validation.allow_empty) if an empty day is expected"
        )
    log.warning("%s; going on: empty days are allowed (validation.allow_empty)", message)
