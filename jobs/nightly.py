"""One night, or a backfill of nights, in one Spark application: features, a challenger trained when due,
scores from the champion (the challenger's in shadow), evaluation where labels exist, promotion, monitoring.

    ./submit.sh nightly --date 2026-11-22
    ./submit.sh nightly --from 2026-11-01 --to 2026-11-22     # run again: resumes after the last night done

Exit 0: the night succeeded; 5: everything was written but monitoring failed the night (drift, alert volume
or quarantine past a fail threshold in conf/'s monitoring:); other codes as every job (docs/operations.md).
"""

from __future__ import annotations

import logging

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import main_entry, pseudonym_key, spark_job

log = logging.getLogger("shopguard.nightly")
# Every step, scikit-learn and matplotlib (~1.3 s to import): imported while the session starts.
STEP = "shopguard.steps.nightly"


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("nightly", argv, __doc__)
    key = pseudonym_key(settings)
    with spark_job("nightly", settings, args.date or args.last, preload=(STEP,)) as (spark, storage, run):
        from shopguard.steps import nightly  # STEP

        tables = Tables(storage, settings.tables)
        if args.date:
            nights = [nightly.run(tables, settings, run, args.date, key)]
        else:
            nights = nightly.backfill(tables, settings, run, args.first, args.last, key)
        for night in nights:
            log.info("night %s: %s; report %s", night.day, nightly.describe(night), night.report)
        run.note(nights=len(nights), **(nightly.describe(nights[-1]) if nights else {}))


if __name__ == "__main__":
    main_entry(main)
