"""Summarise one night: rows in and out of each step, and how the injected anomalies rank in the scores.

    ./submit.sh summary --date 2026-11-22

Reads each table's commit metadata for the counts, and the ground truth of generated data (falling back
to the labels table) for the ranking.
"""

from __future__ import annotations

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import main_entry, pseudonym_key, spark_job

# scikit-learn's metrics (~0.8 s to import): imported while the session starts, not before it.
STEP = "shopguard.steps.summary"


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("summary", argv, __doc__)
    key = pseudonym_key(settings)
    with spark_job("summary", settings, args.date, preload=(STEP,)) as (spark, storage, run):
        from shopguard.steps import summary  # STEP

        text = summary.run(Tables(storage, settings.tables), settings, args.date, key)
    print(text, flush=True)


if __name__ == "__main__":
    main_entry(main)
