"""One night on the terminal: rows in and out of each step, and how the known anomalies rank in the scores."""

from __future__ import annotations

from datetime import date

from shopguard.catalog import Tables
from shopguard.config import Settings
from shopguard.errors import InputError
from shopguard.evaluation import format_table, ranking_summary
from shopguard.labels import latest_anomalous, read_labels
from shopguard.privacy import pseudonymise
from shopguard.sampling import collect_drawn, known_users, with_known

# (step, table) whose newest commit by that step holds the counts of the night
COUNTED = (
    ("generate", "clicks"),
    ("generate", "transactions"),
    ("features", "features"),
    ("features", "quarantine"),
    ("score", "scores"),
)


def run(tables: Tables, settings: Settings, day: date, key: bytes | None) -> str:
    """The summary text: counts from each table's commit metadata, the ranking against the ground truth of
    generated data (else the labels)."""
    lines = ["", f"shopguard summary for {day}", "", "step          table          rows in -> rows out"]
    lines += [line for step, table in COUNTED if (line := _counts_line(tables, step, table))]
    tables.require("scores", "run the score job first")
    if tables.exists("truth"):
        known, source = tables.read("truth"), "truth"
        if key is not None:  # scores hold pseudonyms
            known = known.transform(pseudonymise("truth", key))
    elif tables.exists("labels"):
        known = latest_anomalous(read_labels(tables, settings.columns.mapping("labels"), key, day).valid)
        source = "labels"
    else:
        raise InputError("neither a truth nor a labels table to rank against")
    anomalies = known.select("user_id", "anomaly_type").toPandas()
    day_scores = tables.on("scores", day)
    actions = {r["action"]: int(r["count"]) for r in day_scores.groupBy("action").count().collect()}
    if not actions:
        raise InputError(f"no scores for {day}; run the score job for that date")
    flagged = with_known(known_users(tables.storage.spark, anomalies.user_id))
    cap = settings.evaluation.max_evaluated_rows
    scores, _ = collect_drawn(day_scores.select("user_id", "score").transform(flagged), cap,
                              settings.model.seed, "evaluation.max_evaluated_rows")  # fmt: skip
    lines += [
        "",
        f"{sum(actions.values())} users scored; actions {dict(sorted(actions.items(), key=lambda a: -a[1]))}",
        "",
        f"injected anomalies ({source}) by rank among all scored users:",
        format_table(ranking_summary(scores, anomalies)),
        "",
    ]
    return "\n".join(lines)


def _counts_line(tables: Tables, step: str, table: str) -> str | None:
    if not tables.exists(table):
        return None
    commit = next((c for c in tables.history(table, limit=20) if c.info.get("job") == step), None)
    if commit is None:
        return None
    info = commit.info
    if table == "features":
        counts = info.get("counts", {})
        rows_in = sum(c.get("read", 0) for c in counts.values())
        detail = ", ".join(
            f"{t}: {c['read']} read, {c['quarantined']} quarantined, {c['duplicates']} duplicates"
            for t, c in counts.items()
        )
        return f"{step:<13} {table:<14} {rows_in:>8} -> {info.get('rows_written', 0):>8} users  ({detail})"
    if table == "quarantine":
        total = sum(c.get("quarantined", 0) for c in info.get("counts", {}).values())
        return f"{step:<13} {table:<14} {'':>8} -> {total:>8} rows"
    if table == "scores":
        rows = info.get("rows_read", 0)
        return f"{step:<13} {table:<14} {rows:>8} -> {rows:>8} users  (model {info.get('model_version')})"
    return f"{step:<13} {table:<14} {'':>8} -> {info.get('rows_written', 0):>8} rows"
