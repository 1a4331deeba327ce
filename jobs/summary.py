"""Summarise one night: rows in and out of each step, and how the injected anomalies rank in the scores.

    ./submit.sh summary --date 2026-11-22

Reads each table's commit metadata for the counts, and the ground truth of generated data (falling back
to the labels table) for the ranking.
"""

from __future__ import annotations

import logging

from shopguard.cli import parse
from shopguard.evaluation import format_table, ranking_summary
from shopguard.labels import usable_verdicts
from shopguard.privacy import pseudonymise
from shopguard.runtime import InputError, main_entry, pseudonym_key, spark_job

log = logging.getLogger("shopguard.summary")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("summary", argv, __doc__)
    tables = settings.tables

    key = pseudonym_key(settings)

    with spark_job("summary", settings, args.date) as (spark, storage, run):
        # extract
        lines = [
            "",
            f"shopguard summary for {args.date}",
            "",
            "step          table          rows in -> rows out",
        ]
        for step, table in (
            ("generate", "clicks"),
            ("generate", "transactions"),
            ("features", "features"),
            ("features", "quarantine"),
            ("score", "scores"),
        ):
            path = tables.path(table)
            if not storage.exists(path):
                continue
            commit = next((c for c in storage.history(path, limit=20) if c.info.get("job") == step), None)
            if commit is None:
                continue
            info = commit.info
            if table == "features":
                counts = info.get("counts", {})
                rows_in = sum(c.get("read", 0) for c in counts.values())
                detail = ", ".join(
                    f"{t}: {c['read']} read, {c['quarantined']} quarantined, {c['duplicates']} duplicates"
                    for t, c in counts.items()
                )
                users = info.get("rows_written", 0)
                lines.append(f"{step:<13} {table:<14} {rows_in:>8} -> {users:>8} users  ({detail})")
            elif table == "quarantine":
                total = sum(c.get("quarantined", 0) for c in info.get("counts", {}).values())
                lines.append(f"{step:<13} {table:<14} {'':>8} -> {total:>8} rows")
            elif table == "scores":
                lines.append(
                    f"{step:<13} {table:<14} {info.get('rows_read', 0):>8} -> {info.get('rows_read', 0):>8} "
                    f"users  (model {info.get('model_version')})"
                )
            else:
                lines.append(f"{step:<13} {table:<14} {'':>8} -> {info.get('rows_written', 0):>8} rows")

        scores_path = tables.path("scores")
        if not storage.exists(scores_path):
            raise InputError(f"no scores table at {scores_path}; run the score job first")
        scores = storage.read(scores_path, where=[("score_date", "=", args.date)]).select(
            "user_id", "score", "action"
        )
        scores_pdf = scores.toPandas()
        if scores_pdf.empty:
            raise InputError(f"no scores for {args.date}; run the score job for that date")
        if storage.exists(tables.path("truth")):
            known, source = storage.read(tables.path("truth")), "truth"
        elif storage.exists(tables.path("labels")):
            verdicts = usable_verdicts(settings.columns.mapping("labels"))
            known = storage.read(tables.path("labels")).transform(verdicts).where("label = 1")
            source = "labels"
        else:
            raise InputError("neither a truth nor a labels table to rank against")
        if key is not None:  # scores hold pseudonyms
            known = known.transform(pseudonymise("truth", key))
        anomalies = known.select("user_id", "anomaly_type").toPandas()

        # transform
        ranking = ranking_summary(scores_pdf, anomalies)
        actions = scores_pdf["action"].value_counts().to_dict()

        # load: to the terminal
        lines += [
            "",
            f"{len(scores_pdf)} users scored; actions {actions}",
            "",
            f"injected anomalies ({source}) by rank among all scored users:",
            format_table(ranking),
            "",
        ]
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main_entry(main)
