"""Validate the click and transaction logs and build the per-user features of one snapshot date.

    ./submit.sh features --date 2026-11-22
    spark-submit jobs/features.py --profile cluster --date 2026-11-22

Writes partition snapshot_date=D of the features table and the rows that failed validation to partition
D of the quarantine table, one commit each; a rerun for D replaces both partitions. An input table without
rows for D fails the job (exit 3) unless --allow-empty says an empty day is expected.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel

from shopguard.cli import parse
from shopguard.features import FeatureSpec, build_user_features, input_date_range, users_without_row
from shopguard.inputs import read_window
from shopguard.privacy import pseudonymise
from shopguard.runtime import InputError, main_entry, pseudonym_key, spark_job
from shopguard.storage import SchemaMismatchError
from shopguard.validation import Rules, conform, deduplicate, normalise, validate

log = logging.getLogger("shopguard.features")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("features", argv, __doc__)
    snapshot = args.date
    v, f, tables = settings.validation, settings.features, settings.tables
    rules = Rules(
        now=datetime.now(UTC),
        currencies=tuple(v.currency_rates),
        **v.model_dump(exclude={"currency_rates", "allow_empty"}),
    )
    spec = FeatureSpec(
        **{**f.model_dump(), "windows_days": tuple(f.windows_days)},
        rating_min=v.rating_min,
        rating_max=v.rating_max,
        currency_rates=dict(v.currency_rates),
    )
    first_day, last_day = input_date_range(snapshot, spec.lifetime_days)
    key = pseudonym_key(settings)

    with spark_job("features", settings, snapshot) as (spark, storage, run):
        # extract: the partitions the windows need, at pinned versions
        inputs, valid, validated, counts = {}, {}, [], {}
        for table in ("clicks", "transactions"):
            path = tables.path(table)
            if not storage.exists(path):
                raise InputError(
                    f"no {table} table at {path}; run the generate job or point tables.{table} at yours"
                )
            mapping = settings.columns.mapping(table)
            version = storage.version(path)
            raw = read_window(storage, path, table, mapping, version, first_day, last_day)
            inputs[table] = {"path": path, "version": version}

            # transform: schema first (fails before anything is written), then rows
            conformed = conform(raw, table, mapping).transform(normalise(table))
            checked = validate(conformed, table, rules, snapshot)
            if key is not None:
                checked = checked.transform(pseudonymise(table, key, mapping))
            checked = checked.persist()
            read, n_quarantined, on_date = checked.tally()
            if on_date == 0:
                message = (
                    f"{table}: no valid rows for {snapshot} in {path} (version {version}; {read} rows read for "
                    f"{first_day}..{last_day}, {n_quarantined} quarantined)"
                )
                if not v.allow_empty:
                    raise InputError(
                        f"{message}: the upstream load for that day may have failed. Rerun once it has landed, "
                        "or pass --allow-empty (validation.allow_empty) if an empty day is expected"
                    )
                log.warning("%s; going on: empty days are allowed (validation.allow_empty)", message)
            valid[table] = checked.valid.transform(deduplicate(table)).persist(StorageLevel.MEMORY_AND_DISK)
            validated.append(checked)
            used = valid[table].count()
            c = counts[table] = {
                "read": read,
                "used": used,
                "quarantined": n_quarantined,
                "duplicates": read - n_quarantined - used,
                "on_date": on_date,
            }
            log.info(
                "%s v%d: read %d = used %d + quarantined %d + duplicates %d (%d on %s)",
                table,
                version,
                *(c[k] for k in ("read", "used", "quarantined", "duplicates", "on_date")),
                snapshot,
            )
            run.note(**{f"{table}_read": read, f"{table}_quarantined": n_quarantined})

        features = build_user_features(valid["clicks"], valid["transactions"], snapshot, spec)

        # load: check both schemas first, so a mismatch writes nothing; then quarantine and features,
        # each one atomic commit replacing partition D
        quarantine = validated[0].quarantined.unionByName(validated[1].quarantined)
        storage.check_schema(quarantine, tables.path("quarantine"), ["snapshot_date", "source_table"])
        try:
            storage.check_schema(features, tables.path("features"), ["snapshot_date"])
        except SchemaMismatchError as exc:
            raise SchemaMismatchError(
                f"{exc}. The feature definitions changed since that table was written: point tables.features "
                "at a new table (and retrain), or remove the old one"
            ) from exc
        storage.write(
            quarantine,
            tables.path("quarantine"),
            mode="overwrite",
            partition_by=["snapshot_date", "source_table"],
            replace_where=[
                ("snapshot_date", "=", snapshot),
                ("source_table", "in", ["clicks", "transactions"]),
            ],
            commit_info=run.commit_info(snapshot_date=snapshot.isoformat(), counts=counts),
        )
        # Every row as read is not needed past the quarantine: free its cache for the features.
        for checked in validated:
            checked.flagged.unpersist()
        features = features.persist(StorageLevel.MEMORY_AND_DISK)
        users = features.count()
        inactive = users_without_row(valid["clicks"], valid["transactions"], users)
        version = storage.write(
            features,
            tables.path("features"),
            mode="overwrite",
            partition_by=["snapshot_date"],
            replace_where=[("snapshot_date", "=", snapshot)],
            commit_info=run.commit_info(
                snapshot_date=snapshot.isoformat(),
                rows_written=users,
                counts=counts,
                inputs=inputs,
                users_without_row=inactive,
            ),
        )
        run.note(users=users, users_without_row=inactive)
        if inactive:
            log.info("features for %s: %d users seen in the %d-day look-back have no row and no score today: no "
                     "clicks or orders in the last %d days", snapshot, inactive, spec.lifetime_days,
                     spec.max_window)  # fmt: skip
        if users == 0:
            log.warning("features for %s: no users; the snapshot is empty (allowed by validation.allow_empty)",
                        snapshot)  # fmt: skip
        log.info(
            "features for %s: %d users x %d columns -> %s (version %d)",
            snapshot,
            users,
            len(features.columns) - 2,
            tables.path("features"),
            version,
        )
        for frame in [*valid.values(), features]:  # the session may outlive the job (an orchestrator's)
            frame.unpersist()


if __name__ == "__main__":
    main_entry(main)
