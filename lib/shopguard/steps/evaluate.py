"""Detection quality of one scoring date: metrics per anomaly type, beside IsolationForest and gradient-boosted
baselines, into the evaluations table and a self-contained HTML report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopguard import baselines, schemas
from shopguard.catalog import Tables
from shopguard.config import Settings
from shopguard.errors import InputError
from shopguard.evaluation import (
    format_table,
    is_in,
    join_truth,
    metric_table,
    never_trained_on,
    quality_metrics,
    reason_signature_rate,
    weighted_like,
    with_unscored,
)
from shopguard.features import feature_columns
from shopguard.labels import attach_labels, latest_anomalous, read_labels
from shopguard.model import feature_arrays, user_share_mask
from shopguard.model.metadata import ModelMetadata
from shopguard.privacy import pseudonymise
from shopguard.registry import load_model
from shopguard.report import ScorerResult, render
from shopguard.runtime import RunInfo
from shopguard.sampling import UserSample, capped_sample, collect_drawn, known_users, with_known

log = logging.getLogger("shopguard.evaluate")

MIN_ANOMALIES = 30  # fewer known anomalous users than this and every figure is mostly noise


@dataclass
class _Sample:
    """The users the baselines learn from and score, their features and labels: every labelled user and a
    sample of the others above `evaluation.max_baseline_rows`, out of `rows` users of the date."""

    users: np.ndarray
    x: np.ndarray
    known: np.ndarray
    rows: int


@dataclass
class _Population:
    """The users of the date (every known anomalous one and, above `evaluation.max_evaluated_rows`, a
    sample of the others), who may be evaluated, and the baselines' sample of them."""

    users: np.ndarray
    drawn: UserSample
    stands_for: np.ndarray  # how many users each of `users` stands for
    evaluated: np.ndarray
    eligible: set[str]
    holdout: float
    restricted: bool
    params: dict[str, Any]
    sample: _Sample | None  # None: evaluation.baselines is off


def run(
    tables: Tables, settings: Settings, run: RunInfo, day: date, key: bytes | None, scores_tables: list[str],
    report: str | None,
) -> pd.DataFrame:  # fmt: skip
    """The evaluations rows of `day` for each scores table (replacing earlier ones) and the report; returns
    the metrics."""
    e = settings.evaluation
    truth = ground_truth(tables, settings, key, day)
    flagged = with_known(known_users(tables.storage.spark, truth.user_id))
    users, drawn = collect_drawn(tables.on("features", day).select("user_id").transform(flagged),
                                 e.max_evaluated_rows, settings.model.seed, "evaluation.max_evaluated_rows")  # fmt: skip
    models = [
        _model_scores(tables, name, day, flagged, drawn) for name in scores_tables or [tables.path("scores")]
    ]
    people = _population(tables, settings, key, day, truth, models[0][2], users, drawn, flagged)
    results = []
    for version, scores, metadata in models:
        frame = join_truth(scores[scores.user_id.isin(set(people.users[people.evaluated]))], truth)
        frame = with_unscored(frame, truth, people.eligible)
        results.append(ScorerResult(version, "model", frame, metadata.thresholds))
    unscored = int(results[0].frame["unscored"].sum())
    evaluated = round(people.stands_for[people.evaluated].sum())
    notes = [f"{evaluated} users evaluated" + _who(people.holdout, people.restricted)]
    if drawn.sampled:
        notes.append(f"metrics on every known anomalous user and {drawn.share:.1%} of the others, each of whom "
                     f"stands for {drawn.weight:.1f} users (evaluation.max_evaluated_rows: "
                     f"{e.max_evaluated_rows} of {drawn.rows - drawn.known})")  # fmt: skip
    notes.append(f"{unscored} known anomalous users had no score that day, counted as misses")
    if e.baselines:
        results += _baselines(people, truth, notes, like=results[0].frame)

    metrics = pd.concat(
        [quality_metrics(r.frame, r.name) for r in results]
        + [reason_signature_rate(r.frame, r.name) for r in results if r.kind == "model"],
        ignore_index=True,
    )
    rows = metrics.rename(columns={"scorer": "model_version"}).assign(
        run_id=run.run_id, evaluated_at=datetime.now(UTC), truth_source=e.against, snapshot_date=day
    )[schemas.EVALUATIONS.fieldNames()]
    scorers = sorted(rows["model_version"].unique())
    info = run.commit_info(snapshot_date=day.isoformat(), scorers=scorers, rows_written=len(rows))
    spark = tables.storage.spark
    tables.replace("evaluations", spark.createDataFrame(rows, schemas.EVALUATIONS), day, info,
                   also=[("model_version", "in", scorers)])  # fmt: skip
    report = report or f"{e.report_dir.rstrip('/')}/evaluation-{day.isoformat()}-{run.run_id}.html"
    warnings = _warnings(people.restricted, results[0].frame, unscored)
    for warning in warnings:
        log.warning("%s", warning)
    write_text(report, render(day, results, metrics, e.against, notes, warnings))
    run.note(users=evaluated, report=report)
    _print_summary(day, e.against, notes, metrics, report)
    return metrics


# What evaluation reads of a scores row; the reasons only where a metric or the report looks at them.
_SCORE_COLUMNS = ("user_id", "score", "is_anomaly", "action", "model_version")


def _model_scores(
    tables: Tables, name: str, day: date, flagged: Callable[[DataFrame], DataFrame], drawn: UserSample
) -> tuple[str, pd.DataFrame, ModelMetadata]:
    """(model version, scores of `day`, model metadata) of one scores table (a name under tables.root, a path
    or a URI). Only what the metrics use travels to the driver, of the users `drawn` (`weight`: how many
    users each row stands for): the reasons of alerts and of known anomalous users (empty for everyone
    else), never the percentiles or the timestamps."""
    path = (
        name if "://" in name or name.startswith("/") else f"{tables.path('scores').rsplit('/', 1)[0]}/{name}"
    )
    if not tables.storage.exists(path):
        raise InputError(f"no scores table at {path}")
    scores = (
        tables.storage.read(path, where=[("score_date", "=", day)])
        .transform(flagged)
        .transform(drawn.weigh)
        .select(
            *_SCORE_COLUMNS,
            F.when(F.col("is_anomaly") | F.col("_known"), F.col("reasons"))
            .otherwise(F.array().cast("array<string>"))
            .alias("reasons"),
            "weight",
        )
        .toPandas()
    )
    if scores.empty:
        raise InputError(f"no scores for {day} in {path}; run the score job for that date")
    version = scores["model_version"].mode()[0]
    return version, scores, load_model(tables.path("models"), version).metadata


def ground_truth(tables: Tables, settings: Settings, key: bytes | None, day: date) -> pd.DataFrame:
    """user_id, anomaly_type (null: normal)[, subtle] of every user known to be anomalous."""
    against = settings.evaluation.against
    if against == "truth":
        tables.require("truth", "evaluation.against is truth but there is no truth table")
        known = tables.read("truth")
        if key is not None:
            known = known.transform(pseudonymise("truth", key))
        return known.select(
            "user_id", "anomaly_type", *(["subtle"] if "subtle" in known.columns else [])
        ).toPandas()
    tables.require("labels", "nothing to evaluate against")
    verdicts = read_labels(tables, settings.columns.mapping("labels"), key, day).valid
    return latest_anomalous(verdicts).toPandas()


def _population(
    tables: Tables,
    settings: Settings,
    key: bytes | None,
    day: date,
    truth: pd.DataFrame,
    metadata: ModelMetadata,
    drawn_users: pd.DataFrame,
    drawn: UserSample,
    flagged: Callable[[DataFrame], DataFrame],
) -> _Population:
    """Users never trained on where enough known anomalies are among them; all users of the date otherwise
    (of the users `drawn`)."""
    holdout = metadata.holdout_share
    users = drawn_users["user_id"].to_numpy(dtype=object)
    features = tables.on("features", day)
    trained_users = _training_users(tables, metadata, holdout, drawn, flagged)
    params = {**settings.model.model_dump(), **metadata.training.get("params", {})}
    candidates = np.concatenate([users, truth.user_id.to_numpy(dtype=object)])
    fresh = never_trained_on(candidates, holdout, params["validation_fraction"], trained_users)
    restricted = holdout > 0 or truth.user_id.isin(set(candidates[fresh])).sum() >= MIN_ANOMALIES
    eligible = set(candidates[fresh]) if restricted else set(candidates)
    evaluated = is_in(users, eligible)
    sample = None
    if settings.evaluation.baselines:
        sample = _baseline_sample(tables, settings, key, day, features, params["seed"])
    return _Population(
        users,
        drawn,
        drawn_users["weight"].to_numpy(float),
        evaluated,
        eligible,
        holdout,
        restricted,
        params,
        sample,
    )


def _baseline_sample(
    tables: Tables, settings: Settings, key: bytes | None, day: date, features: DataFrame, seed: int
) -> _Sample:
    """The baselines' users collected to the driver, with their labels where a labels table has them."""
    names = feature_columns(features.schema)
    if tables.exists("labels"):
        features = attach_labels(
            features, read_labels(tables, settings.columns.mapping("labels"), key, day).valid
        )
    else:
        features = features.withColumn("label", F.lit(None).cast("int"))
    sample, rows = capped_sample(features.select("user_id", "label", *names),
                                 settings.evaluation.max_baseline_rows, seed, "evaluation.max_baseline_rows")  # fmt: skip
    arrays = feature_arrays(sample.toArrow(), names)
    return _Sample(arrays.user_ids, arrays.x, arrays.labels, rows)


def _training_users(
    tables: Tables,
    metadata: ModelMetadata,
    holdout: float,
    drawn: UserSample,
    flagged: Callable[[DataFrame], DataFrame],
) -> set[str]:
    """Users in the snapshots the model trained on (not needed where it held users out by hash), of those
    `drawn`: no other user is looked up."""
    snapshots = metadata.training_snapshots
    if holdout > 0 or not snapshots:
        return set()
    trained = tables.read(
        "features", where=[("snapshot_date", "in", [date.fromisoformat(d) for d in snapshots])]
    ).select("user_id")
    if drawn.sampled:
        trained = trained.transform(flagged).where(drawn.keep(F.col("_known")))
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


def _baselines(
    people: _Population, truth: pd.DataFrame, notes: list[str], like: pd.DataFrame
) -> list[ScorerResult]:
    """IsolationForest and gradient-boosted trees on the same features (the trees on the same labelled and
    presumed-normal rows as the classifier), never scored on users they learnt from. Where either sample
    left users out, each baseline's users are weighted to stand for the same population as `like`, the
    model's."""
    sample, params = people.sample, people.params
    assert sample is not None, "baselines without their sample"
    users, x, labels = sample.users, sample.x, sample.known
    evaluated = is_in(users, people.eligible)
    eligible = people.eligible
    if len(users) < sample.rows:  # users sampled out are not evaluated, not missed; the unscored still are
        eligible = eligible - (set(people.users) - set(users))
        notes.append(f"baselines on {len(users)} of {sample.rows} users: every labelled one and a sample of "
                     "the others (evaluation.max_baseline_rows)")  # fmt: skip
    pu = {k: params[k] for k in ("unlabelled_sample", "unlabelled_weight", "seed")}
    fit = ~evaluated if people.holdout > 0 else np.ones(len(users), bool)
    results = [
        ("baseline:isolation_forest", baselines.isolation_forest(x[fit], x[evaluated], params["seed"]))
    ]
    boosted: np.ndarray | None
    if people.holdout > 0:
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
    frames = [
        (name, with_unscored(join_truth(pd.DataFrame({"user_id": users[evaluated], "score": s}), truth), truth, eligible))
        for name, s in results
    ]  # fmt: skip
    if people.drawn.sampled or len(users) < sample.rows:
        frames = [(name, weighted_like(frame, like)) for name, frame in frames]
    return [ScorerResult(name, "baseline", frame) for name, frame in frames]


def _print_summary(day: date, against: str, notes: list[str], metrics: pd.DataFrame, report: str) -> None:
    summary = metric_table(metrics, ["roc_auc", "pr_auc", "recall@budget_0.01", "precision@budget_0.01"])
    per_type = metrics[metrics.metric == "recall@budget_0.01"].pivot_table(
        index="scorer", columns="anomaly_type", values="value", sort=False
    )
    print(f"\nshopguard evaluation {day} against {against} ({'; '.join(notes)})\n", flush=True)
    print(format_table(summary, index=True), "\n\nrecall at a 1% budget:\n", format_table(per_type, index=True),
          f"\n\nreport: {report}\n", flush=True)  # fmt: skip


def write_text(target: str, text: str) -> None:
    if "://" in target:
        fs, path = pafs.FileSystem.from_uri(target.replace("s3a://", "s3://"))
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(target)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())
