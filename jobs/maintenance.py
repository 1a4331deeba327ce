"""Vacuum the Delta tables: delete files no longer referenced, and files a crashed run wrote but never
committed, once they are older than the retention. Safe to run at any time, also beside other jobs.

    ./submit.sh maintenance                      # every table in maintenance.tables
    ./submit.sh maintenance --dry-run            # list what would go
    ./submit.sh maintenance --retention-hours 48 # never below 24: younger files may be a write in progress
"""

from __future__ import annotations

import logging

from shopguard.cli import parse
from shopguard.runtime import main_entry, spark_job

log = logging.getLogger("shopguard.maintenance")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("maintenance", argv, __doc__)
    m, tables = settings.maintenance, settings.tables

    with spark_job("maintenance", settings) as (spark, storage, run):
        for name in m.tables:
            path = tables.path(name)
            if not storage.exists(path):
                continue
            files = storage.vacuum(path, retention_hours=m.retention_hours, dry_run=args.dry_run)
            log.info(
                "%s: %s %d files older than %d h (%s)",
                name,
                "would delete" if args.dry_run else "deleted",
                len(files),
                m.retention_hours,
                path,
            )


if __name__ == "__main__":
    main_entry(main)
