"""Score every user of one snapshot with a stored model and write the scores partition for that date.

    ./submit.sh score --date 2026-11-22
    ./submit.sh score --date 2026-11-22 --model-version 20261123T020000Z-autoencoder-1a2b3c

The model is the champion (./submit.sh promote; without any promotion, the newest version) unless pinned.
It is applied by a pandas UDF on the executors; a rerun for D replaces partition score_date=D.
"""

from __future__ import annotations

import logging

from shopguard import champion
from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.registry import load_model
from shopguard.runtime import main_entry, spark_job
from shopguard.steps import score

log = logging.getLogger("shopguard.score")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("score", argv, __doc__)
    s = settings.scoring
    root = settings.tables.path("models")  # the model first: a bad version is answered before Spark starts
    stored = load_model(root, s.model_version or champion.current(root))
    log.info("model %s (%s)", stored.version, "pinned" if s.model_version else "the champion")
    with spark_job("score", settings, args.date) as (spark, storage, run):
        score.run(Tables(storage, settings.tables), s, run, args.date, stored)


if __name__ == "__main__":
    main_entry(main)
