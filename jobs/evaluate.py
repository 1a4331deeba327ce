"""Measure detection quality of one scoring date: metrics per anomaly type into the evaluations table, and
a self-contained HTML report with plots, beside IsolationForest and gradient-boosted-tree baselines.

    ./submit.sh evaluate --date 2026-11-22
    ./submit.sh evaluate --date 2026-11-22 --scores-table scores --scores-table scores_semi --against truth

Ground truth: the latest verdict on each user in the labels table (or, for generated data, the truth table).
When the model held users out of training (model.holdout_share), only those users are evaluated and the
baselines are fitted on the others; without a holdout the gradient-boosted baseline is cross-fitted.
"""

from __future__ import annotations

from shopguard.catalog import Tables
from shopguard.cli import parse
from shopguard.runtime import main_entry, pseudonym_key, spark_job

# scikit-learn and matplotlib (~1.3 s to import): imported while the session starts, not before it.
STEP = "shopguard.steps.evaluate"


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("evaluate", argv, __doc__)
    key = pseudonym_key(settings)
    with spark_job("evaluate", settings, args.date, preload=(STEP,)) as (spark, storage, run):
        from shopguard.steps import evaluate  # STEP

        tables = Tables(storage, settings.tables)
        evaluate.run(tables, settings, run, args.date, key, args.scores_table or [], args.report)


if __name__ == "__main__":
    main_entry(main)
