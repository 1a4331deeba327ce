"""Validate the click and transaction logs of a snapshot's look-back and build the snapshot's features.

The inputs are read once for the features. Each log, valid and failed rows together (`Validated.carried`),
goes through one shuffle, its duplicates flagged, and is cached by the run's first job, which counts it
(`validation.tally_all`: exact, where Spark's accumulators count a partition as often as it is computed).
The features are planned after that job, because a built cache tells Spark how its rows are partitioned
and sorted: the gaps between clicks reuse the clicks' partitioning by user-day and their order, where a
cache still to be built made Spark shuffle and sort every click a second time. Three branches of the
features read the valid clicks (the click aggregates, the distinct entities, each user-day's last click;
without the cache each repeated the de-duplication's sort: 1 M events, 66 s -> 54 s for the job), and the
quarantine reads the failed rows from the caches, where it read the logs a second time before (10 M events:
19 s for the clicks, 3.5 s for the orders). Only the per-user result is kept until it is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import reduce
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from shopguard.catalog import Tables
from shopguard.config import Settings
from shopguard.errors import InputError
from shopguard.features import FeatureSpec, input_date_range, user_snapshot
from shopguard.inputs import read_window
from shopguard.privacy import pseudonymise
from shopguard.runtime import RunInfo
from shopguard.validation import Rules, conform, flag_duplicates, normalise, tally_all, used_rows, validate

log = logging.getLogger("shopguard.features")

INPUTS = ("clicks", "transactions")
# The quarantine's rows of a day are few, and spread over every partition of the inputs' caches: written as
# they lie, a day of 333 bad rows made 15 files (1 M events), a year 5,000 files for analysts' queries to open.
QUARANTINE_ROWS_PER_FILE = 1_000_000


@dataclass
class _Input:
    """One input log of the snapshot: its valid rows de-duplicated and its quarantined rows, both read from
    `cached`, every row read with its `_bad` and `_duplicate` flags, which the features' pass caches."""

    valid: DataFrame
    quarantined: DataFrame
    pinned: dict[str, Any]
    cached: DataFrame


def run(tables: Tables, settings: Settings, run: RunInfo, day: date, key: bytes | None) -> dict[str, Any]:
    """Quarantine partition D and features partition D, one commit each; returns the counts."""
    spec = FeatureSpec.from_settings(settings.features, settings.validation)
    rules = Rules.from_settings(settings.validation, datetime.now(UTC))
    first, last = input_date_range(day, spec.lifetime_days)
    inputs = {t: _validated(tables, settings, t, rules, day, key) for t in INPUTS}
    snapshot: DataFrame | None = None
    try:
        # the one pass over each log, which builds its cache; counted before the features are planned, so
        # that they find the clicks cached, partitioned and sorted by user-day (module docstring)
        tallied = tally_all({t: got.cached for t, got in inputs.items()}, day)
        counts = {t: c._asdict() for t, c in tallied.items()}
        for table, got in inputs.items():
            c = counts[table]
            log.info("%s v%d: read %d = used %d + quarantined %d + duplicates %d (%d on %s)", table,
                     got.pinned["version"], *(c[k] for k in ("read", "used", "quarantined", "duplicates", "on_date")),
                     day)  # fmt: skip
            run.note(**{f"{table}_read": c["read"], f"{table}_quarantined": c["quarantined"]})
            if c["on_date"] == 0:
                _empty_day(table, got.pinned, day, (first, last), c, settings.validation.allow_empty)
        snapshot = user_snapshot(inputs["clicks"].valid, inputs["transactions"].valid, day, spec)
        snapshot = snapshot.persist(StorageLevel.MEMORY_AND_DISK)
        active = {bool(r["active"]): int(r["count"]) for r in snapshot.groupBy("active").count().collect()}
        users, inactive = active.get(True, 0), active.get(False, 0)

        # check both schemas first, so a mismatch writes nothing; then each write replaces partition D
        features = snapshot.where("active").drop("active")
        # the failed rows come from the pass's caches (a log without any adds nothing to the union)
        failed = [got.quarantined for t, got in inputs.items() if counts[t]["quarantined"]]
        quarantine = reduce(DataFrame.unionByName, failed, inputs["clicks"].quarantined.limit(0))
        quarantined = sum(c["quarantined"] for c in counts.values())
        if quarantined:  # one file per source log per million rows, the caches still scanned by every core
            quarantine = quarantine.repartition(-(-quarantined // QUARANTINE_ROWS_PER_FILE))
        tables.check("quarantine", quarantine)
        tables.check("features", features, "The feature definitions changed since that table was written: point "
                     "tables.features at a new table (and retrain), or remove the old one")  # fmt: skip
        info = run.commit_info(snapshot_date=day.isoformat(), counts=counts)
        tables.replace("quarantine", quarantine, day, info, also=[("source_table", "in", list(INPUTS))])
        for got in inputs.values():  # released early: the features' write needs only the snapshot
            got.cached.unpersist()
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
        return {"users": users, "users_without_row": inactive, "counts": counts, "version": version}
    finally:  # the session may outlive the step (the nightly runner), also when the step fails
        for got in inputs.values():
            got.cached.unpersist()
        if snapshot is not None:
            snapshot.unpersist()


def _validated(
    tables: Tables, settings: Settings, table: str, rules: Rules, day: date, key: bytes | None
) -> _Input:
    """The look-back of one input log at a pinned version: schema first (fails before anything is written),
    then each row checked, pseudonymised where asked, and de-duplicated; nothing runs yet."""
    version = tables.require(table, f"run the generate job or point tables.{table} at yours")
    path, mapping = tables.path(table), settings.columns.mapping(table)
    first, last = input_date_range(day, settings.features.lifetime_days)
    raw = read_window(tables.storage, path, table, mapping, version, first, last)
    checked = validate(conform(raw, table, mapping).transform(normalise(table)), table, rules, day)
    if key is not None:
        checked = checked.transform(pseudonymise(table, key, mapping))
    pinned = {"path": path, "version": version}
    # valid and failed rows through one shuffle and one cache (module docstring)
    kept = checked.carried().transform(flag_duplicates(table)).persist(StorageLevel.MEMORY_AND_DISK)
    return _Input(used_rows(kept, table), checked.quarantine_of(kept), pinned, cached=kept)


def _empty_day(
    table: str,
    pinned: dict[str, Any],
    day: date,
    span: tuple[date, date],
    counts: dict[str, int],
    allowed: bool,
) -> None:
    message = (
        f"{table}: no valid rows for {day} in {pinned['path']} (version {pinned['version']}; {counts['read']} "
        f"rows read for {span[0]}..{span[1]}, {counts['quarantined']} quarantined)"
    )
    if not allowed:
        raise InputError(
            f"{message}: the upstream load for that day may have failed. Rerun once it has landed, "
            "or pass --allow-empty (validation.allow_empty) if an empty day is expected"
        )
    log.warning("%s; going on: empty days are allowed (validation.allow_empty)", message)
