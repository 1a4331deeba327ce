"""Vacuum the Delta tables: delete files no longer referenced, and files a crashed run wrote but never
committed, once they are older than the retention. Safe to run at any time, also beside other jobs.

    ./submit.sh maintenance                      # every table in maintenance.tables
    ./submit.sh maintenance --dry-run            # list what would go
    ./submit.sh maintenance --retention-hours 48 # never below 24: younger files may be a write in progress
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from shopguard.cli import parse
from shopguard.errors import classify
from shopguard.runtime import main_entry, spark_job

log = logging.getLogger("shopguard.maintenance")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("maintenance", argv, __doc__)
    m, tables = settings.maintenance, settings.tables

    with spark_job("maintenance", settings) as (spark, storage, run):

        def vacuum(name: str) -> None:
            path = tables.path(name)
            try:
                if not storage.exists(path):
                    return
                files = storage.vacuum(path, retention_hours=m.retention_hours, dry_run=args.dry_run)
            except Exception as exc:  # named per table; the job ends with the first's code (table order)
                log.error("%s: not vacuumed (%s): %s", name, path, classify(exc)[1])
                raise
            log.info(
                "%s: %s %d files older than %d h (%s)",
                name,
                "would delete" if args.dry_run else "deleted",
                len(files),
                m.retention_hours,
                path,
            )

        # Side by side: a VACUUM mostly waits on its listing and on small Spark jobs. Every table is tried,
        # whatever another's outcome.
        with ThreadPoolExecutor(m.concurrent_tables, thread_name_prefix="shopguard-vacuum") as pool:
            list(pool.map(vacuum, m.tables))


if __name__ == "__main__":
    main_entry(main)
