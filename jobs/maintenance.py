"""Vacuum the Delta tables: delete files no longer referenced, and files a crashed run wrote but never
committed, once they are older than the retention. Safe to run at any time, also beside other jobs.

    ./submit.sh maintenance                      # every table in maintenance.tables
    ./submit.sh maintenance --dry-run            # list what would go
    ./submit.sh maintenance --retention-hours 48 # never below 24: younger files may be a write in progress
"""

from __future__ import annotations

import logging

from shopguard.runtime import exit_on_error, job_arg_parser, settings_from_args, spark_job

log = logging.getLogger("shopguard.maintenance")


def main(argv: list[str] | None = None) -> None:
    parser = job_arg_parser(__doc__)
    parser.add_argument("--retention-hours", type=int, help="maintenance.retention_hours")
    parser.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")
    args = parser.parse_args(argv)
    settings = settings_from_args(args, maintenance__retention_hours=args.retention_hours)
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
    exit_on_error(main)
