"""Measure detection quality of one scoring date: metrics per anomaly type into the evaluations table, and
a self-contained HTML report with plots, beside IsolationForest and gradient-boosted-tree baselines.

    ./submit.sh evaluate --date 2026-11-22
    ./submit.sh evaluate --date 2026-11-22 --scores-table scores --scores-table scores_semi --against truth

Ground truth: the latest verdict on each user in the labels table (or, for generated data, the truth table).
When the model held users out of training (model.holdout_share), only those users are evaluated and the
baselines are fitted on the others; without a holdout the gradient-boosted baseline is cross-fitted.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from pyspark.sql import Window
from pyspark.sql import functions as F

from shopguard import baselines, schemas
from shopguard.cli import parse
from shopguard.evaluation import (
    format_table,
    join_truth,
    metric_table,
    never_trained_on,
    quality_metrics,
    reason_signature_rate,
    with_unscored,
)
from shopguard.features import feature_columns
from shopguard.labels import attach_labels, usable_verdicts
from shopguard.model import feature_arrays, user_share_mask
from shopguard.privacy import pseudonymise
from shopguard.registry import load_model
from shopguard.report import ScorerResult, render
from shopguard.runtime import InputError, main_entry, pseudonym_key, spark_job

log = logging.getLogger("shopguard.evaluate")


def main(argv: list[str] | None = None) -> None:
    args, settings = parse("evaluate", argv, __doc__)
    tables, e = settings.tables, settings.evaluation
    day = args.date
    key = pseudonym_key(settings)
    scores_paths = (
        [tables.path("scores")]
        if not args.scores_table
        else [_table_path(tables, t) for t in args.scores_table]
    )

    with spark_job("evaluate", settings, day) as (spark, storage, run):
        # extract: scores of each model, the ground truth, and the features for the baselines
        models = []
        for path in scores_paths:
            if not storage.exists(path):
                raise InputError(f"no scores table at {path}")
            scores = storage.read(path, where=[("score_date", "=", day)]).toPandas()
            if scores.empty:
                raise InputError(f"no scores for {day} in {path}; run the score job for that date")
            version = scores["model_version"].mode()[0]
            metadata = load_model(tables.path("models"), version).metadata
            models.append((version, scores, metadata))
        label_columns = settings.columns.mapping("labels")
        truth = _ground_truth(storage, tables, e.against, label_columns, key)
        holdout = float(models[0][2].get("training", {}).get("holdout_share", 0.0))

        features = storage.read(tables.path("features"), where=[("snapshot_date", "=", day)])
        names = feature_columns(features.schema)
        if e.baselines and storage.exists(tables.path("labels")):
            labels = storage.read(tables.path("labels")).transform(usable_verdicts(label_columns))
            if key is not None:
                labels = labels.transform(pseudonymise("labels", key))
            features = attach_labels(features, labels)
        else:
            features = features.withColumn("label", F.lit(None).cast("int"))
        users, x, known = feature_arrays(features.select("user_id", "label", *names).toArrow(), names)
        trained_users = _training_users(storage, tables.path("features"), models[0][2], holdout)

        # transform: who is evaluated (users never trained on, where enough known anomalies are among
        # them), baselines, metrics; known anomalous users without a score count as misses
        trained_with = {**settings.model.model_dump(), **models[0][2].get("training", {}).get("params", {})}
        candidates = np.concatenate([users, truth.user_id.to_numpy(dtype=object)])
        fresh = never_trained_on(candidates, holdout, trained_with["validation_fraction"], trained_users)
        restricted = holdout > 0 or truth.user_id.isin(set(candidates[fresh])).sum() >= MIN_ANOMALIES
        eligible = set(candidates[fresh]) if restricted else set(candidates)
        evaluated = np.isin(users, list(eligible))
        notes = [f"{evaluated.sum()} users evaluated" + _who(holdout, restricted)]
        results = []
        for version, scores, metadata in models:
            frame = join_truth(scores[scores.user_id.isin(set(users[evaluated]))], truth)
            frame = with_unscored(frame, truth, eligible)
            results.append(ScorerResult(version, "model", frame, metadata.get("thresholds", {})))
        unscored = int(results[0].frame["unscored"].sum())
        notes.append(f"{unscored} known anomalous users had no score that day, counted as misses")
        if e.baselines:
            results += _baselines(users, x, known, evaluated, holdout, truth, trained_with, notes, eligible)

        metrics = pd.concat(
            [quality_metrics(r.frame, r.name) for r in results]
            + [reason_signature_rate(r.frame, r.name) for r in results if r.kind == "model"],
            ignore_index=True,
        )
        evaluated_at = datetime.now(UTC)
        rows = metrics.rename(columns={"scorer": "model_version"}).assign(
            run_id=run.run_id, evaluated_at=evaluated_at, truth_source=e.against, snapshot_date=day
        )[schemas.EVALUATIONS.fieldNames()]

        # load: the evaluations table (replacing this date's rows of these scorers) and the report
        scorers = sorted(rows["model_version"].unique())
        storage.write(
            spark.createDataFrame(rows, schemas.EVALUATIONS), tables.path("evaluations"), mode="overwrite",
            partition_by=["snapshot_date", "model_version"],
            replace_where=[("snapshot_date", "=", day), ("model_version", "in", scorers)],
            commit_info=run.commit_info(snapshot_date=day.isoformat(), scorers=scorers, rows_written=len(rows)),
        )  # fmt: skip
        report = args.report or f"{e.report_dir.rstrip('/')}/evaluation-{day.isoformat()}-{run.run_id}.html"
        warnings = _warnings(restricted, results[0].frame, unscored)
        for warning in warnings:
            log.warning("%s", warning)
        _write_text(report, render(day, results, metrics, e.against, notes, warnings))
        run.note(users=int(evaluated.sum()), report=report)
        summary = metric_table(metrics, ["roc_auc", "pr_auc", "recall@budget_0.01", "precision@budget_0.01"])
        per_type = metrics[metrics.metric == "recall@budget_0.01"].pivot_table(
            index="scorer", columns="anomaly_type", values="value", sort=False
        )
        print(f"\nshopguard evaluation {day} against {e.against} ({'; '.join(notes)})\n", flush=True)
        print(format_table(summary, index=True), "\n\nrecall at a 1% budget:\n", format_table(per_type, index=True),
              f"\n\nreport: {report}\n", flush=True)  # fmt: skip


def _table_path(tables, name: str) -> str:
    """A scores table given as a table name under tables.root, a relative path or a URI."""
    return (
        name if "://" in name or name.startswith("/") else f"{tables.path('scores').rsplit('/', 1)[0]}/{name}"
    )


def _ground_truth(
    storage, tables, against: str, label_columns: dict[str, str], key: bytes | None
) -> pd.DataFrame:
    """user_id, anomaly_type (null: normal)[, subtle] of every user known to be anomalous."""
    if against == "truth":
        if not storage.exists(tables.path("truth")):
            raise InputError(
                f"evaluation.against is truth but there is no truth table at {tables.path('truth')}"
            )
        known = storage.read(tables.path("truth"))
    else:
        if not storage.exists(tables.path("labels")):
            raise InputError(f"no labels table at {tables.path('labels')} to evaluate against")
        labels = storage.read(tables.path("labels")).transform(usable_verdicts(label_columns))
        latest = Window.partitionBy("user_id").orderBy(F.col("labelled_at").desc_nulls_last())
        known = (
            labels.withColumn("_n", F.row_number().over(latest))
            .where("_n = 1 AND label = 1")
            .withColumn("anomaly_type", F.coalesce("anomaly_type", F.lit("unknown")))
        )
    if key is not None:
        known = known.transform(pseudonymise("truth", key))
    return known.select(
        "user_id", "anomaly_type", *(["subtle"] if "subtle" in known.columns else [])
    ).toPandas()


MIN_ANOMALIES = 30  # fewer known anomalous users than this and every figure is mostly noise


def _training_users(storage, features_path: str, metadata: dict, holdout: float) -> set[str]:
    """Users in the snapshots the model trained on (not needed where it held users out by hash)."""
    snapshots = metadata.get("inputs", {}).get("features", {}).get("snapshots", [])
    if holdout > 0 or not snapshots:
        return set()
    trained = storage.read(
        features_path, where=[("snapshot_date", "in", [date.fromisoformat(d) for d in snapshots])]
    )
    return {r.user_id for r in trained.select("user_id").distinct().collect()}


def _who(holdout: float, restricted: bool) -> str:
    if holdout > 0:
        return f" (the {holdout:.0%} held out of training)"
    if restricted:
        return (
            " (never trained on: the model's validation users and users absent from its training snapshots)"
        )
    return ""


def _warnings(restricted: bool, frame: pd.DataFrame, unscored: int) -> list[str]:
    """What makes this report's figures less than they seem."""
    found = []
    if not restricted:
        found.append(
            "These users were in the model's training data (it held none out: model.holdout_share is 0, and "
            f"fewer than {MIN_ANOMALIES} known anomalies are among its validation users), so the figures are "
            "optimistic. Train with model.holdout_share > 0 for an honest measure."
        )
    if unscored:
        found.append(
            f"{unscored} known anomalous users have no score for this date (no features: no activity in the "
            "feature window, or lost upstream). They count as misses here; see the features job's log."
        )
    anomalous = int(frame["anomaly_type"].notna().sum())
    if anomalous < MIN_ANOMALIES:
        found.append(
            f"Only {anomalous} anomalous users are known among those evaluated (fewer than {MIN_ANOMALIES}): "
            "every figure here could move a lot with a few more verdicts."
        )
    return found


def _baselines(users, x, labels, evaluated, holdout, truth, params, notes, eligible) -> list[ScorerResult]:
    """IsolationForest and gradient-boosted trees on the same features (the trees on the same labelled and
    presumed-normal rows as the classifier), never scored on users they learnt from."""
    seed = params["seed"]
    pu = {
        "unlabelled_sample": params["unlabelled_sample"],
        "unlabelled_weight": params["unlabelled_weight"],
        "seed": seed,
    }
    fit = ~evaluated if holdout > 0 else np.ones(len(users), bool)
    results = [("baseline:isolation_forest", baselines.isolation_forest(x[fit], x[evaluated], seed))]
    if holdout > 0:
        boosted = baselines.gradient_boosting(x[fit], labels[fit], x[evaluated], **pu)
    else:  # cross-fitted: each half of the users scored by trees fitted on the other half
        half = user_share_mask(users, 0.5, "baseline")
        boosted = np.full(len(users), np.nan)
        for part in (half, ~half):
            predicted = baselines.gradient_boosting(x[~part], labels[~part], x[part], **pu)
            if predicted is None:
                boosted = None
                break
            boosted[part] = predicted
        boosted = boosted[evaluated] if boosted is not None else None
    if boosted is not None:
        results.append(("baseline:gradient_boosting", boosted))
    else:
        notes.append("gradient-boosted baseline skipped: too few labelled users")
    return [
        ScorerResult(name, "baseline", with_unscored(
            join_truth(pd.DataFrame({"user_id": users[evaluated], "score": s}), truth), truth, eligible))
        for name, s in results
    ]  # fmt: skip


def _write_text(target: str, text: str) -> None:
    if "://" in target:
        fs, path = pafs.FileSystem.from_uri(target.replace("s3a://", "s3://"))
    else:
        import os

        fs, path = pafs.LocalFileSystem(), os.path.abspath(target)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


if __name__ == "__main__":
    main_entry(main)
