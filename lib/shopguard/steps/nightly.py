"""One night in one Spark application: features, a challenger trained when due, scores from the champion
(the challenger's in shadow), evaluation where labels exist, promotion when the challenger wins, monitoring.

Each step logs its start, end, duration and rows. Every write replaces the night's partition, so a rerun
duplicates nothing. A backfill runs night after night and, run again, skips the nights that completed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from shopguard import champion, monitoring, schemas
from shopguard.catalog import Tables
from shopguard.champion import Promotion
from shopguard.config import Settings
from shopguard.errors import MonitoringFailure
from shopguard.monitoring import Measure
from shopguard.registry import load_model
from shopguard.runtime import RunInfo
from shopguard.steps import evaluate, features, score, train
from shopguard.steps.compare import compare_on_unseen_labels

log = logging.getLogger("shopguard.nightly")


@dataclass
class Night:
    """What one night did and found."""

    day: date
    champion: str
    challenger: str | None = None
    promoted: Promotion | None = None
    measures: list[Measure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    report: str | None = None


class _Clock:
    """Times each step of a night: start and end lines in the log, and a step_seconds measure."""

    def __init__(self, day: date) -> None:
        self.day = day
        self.measures: list[Measure] = []

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        log.info("night %s: %s started", self.day, step)
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        log.info("night %s: %s done in %.1f s", self.day, step, seconds)
        self.measures.append(Measure(step, "step_seconds", step, seconds))


def run(tables: Tables, settings: Settings, run: RunInfo, day: date, key: bytes | None) -> Night:
    """One night; raises MonitoringFailure (exit 5) after everything is written when a measure failed it."""
    clock, root = _Clock(day), tables.path("models")
    with clock("features"):
        counts = features.run(tables, settings, run, day, key)["counts"]
    deciding = settings.scoring.model_version or champion.current(root)
    if deciding is None:
        with clock("train"):
            deciding = train.run(tables, settings, run, day, key)
        champion.promote(root, deciding, "first", "the first model: there was no champion", run_id=run.run_id)
    stored = load_model(root, deciding)
    profile = stored.metadata.feature_profile
    if not profile:
        log.warning("night %s: the champion %s was trained before models kept a feature profile: no feature "
                    "drift is measured until a newer model is promoted", day, deciding)  # fmt: skip
    with clock("drift"):  # before training: drift may call for a challenger
        today = monitoring.spark_bin_shares(
            tables.on("features", day), {n: p["edges"] for n, p in profile.items()}
        )
        drift = monitoring.feature_drift(profile, today)
    night = Night(day, deciding, challenger=_challenger(root, deciding))
    if _train_due(settings, day, drift) and not any(m.step == "train" for m in clock.measures):
        with clock("train"):
            night.challenger = train.run(tables, settings, run, day, key)
    with clock("score"):
        actions = score.run(tables, settings.scoring, run, day, stored)
    if night.challenger:
        with clock("shadow score"):
            score.run(tables, settings.scoring, run, day, load_model(root, night.challenger), "shadow_scores")
    if settings.nightly.evaluate and _truth_available(tables, settings):
        shadow = [tables.path("shadow_scores")] if night.challenger else []
        with clock("evaluate"):
            evaluate.run(tables, settings, run, day, key, [tables.path("scores"), *shadow], None)
        if night.challenger:
            night.promoted = _promote_if_better(tables, settings, run, day, key, night, clock)
    with clock("monitor"):
        _monitor(tables, settings, run, night, counts, drift, actions, stored.metadata.reference_quantiles,
                 stored.metadata.thresholds.get("expected_alert_share"), clock.measures)  # fmt: skip
    if night.failures:
        raise MonitoringFailure(f"night {day}: " + "; ".join(night.failures) + f" (report: {night.report})")
    return night


def backfill(
    tables: Tables, settings: Settings, run: RunInfo, first: date, last: date, key: bytes | None
) -> list[Night]:
    """Night after night from `first` to `last`, skipping nights that completed before (a rerun resumes
    where it stopped). A night failed by monitoring does not stop the others; any other error does."""
    done = _completed_nights(tables, first, last)
    nights, failed = [], []
    day = first
    while day <= last:
        if day in done:
            log.info("night %s completed in an earlier run: skipped", day)
        else:
            try:
                nights.append(run_night(tables, settings, run, day, key))
            except MonitoringFailure as exc:
                failed.append(str(exc))
        day += timedelta(days=1)
    if failed:
        raise MonitoringFailure(f"{len(failed)} night(s) failed by monitoring: " + " | ".join(failed))
    return nights


run_night = run  # the name backfill reads best with


def _challenger(root: str, deciding: str) -> str | None:
    """The newest model version, when it is newer than the champion and was never promoted (a model once
    promoted, and rolled back since, does not come back by itself)."""
    from shopguard.registry import list_versions

    versions = list_versions(root)
    ever = {p.model_version for p in champion.history(root)} | {deciding}
    newest = versions[-1] if versions else None
    return newest if newest is not None and newest not in ever and newest > deciding else None


def _train_due(settings: Settings, day: date, drift: dict[str, float]) -> bool:
    n = settings.nightly
    if n.train == "weekly":
        return day.weekday() == n.train_weekday
    if n.train == "drift":
        limit = settings.monitoring.feature_psi.warn
        shifted = [f for f, v in drift.items() if limit is not None and v >= limit]
        if shifted:
            log.info("night %s: %d features drifted past PSI %s (%s): training a challenger", day, len(shifted),
                     limit, ", ".join(shifted[:5]))  # fmt: skip
        return bool(shifted)
    return False


def _truth_available(tables: Tables, settings: Settings) -> bool:
    return tables.exists("truth" if settings.evaluation.against == "truth" else "labels")


def _promote_if_better(
    tables: Tables,
    settings: Settings,
    run: RunInfo,
    day: date,
    key: bytes | None,
    night: Night,
    clock: _Clock,
) -> Promotion | None:
    assert night.challenger is not None
    compared = compare_on_unseen_labels(tables, settings, key, day, night.champion, night.challenger)
    clock.measures += [Measure("compare", "pr_auc", v, value) for v, value in compared.pr_auc.items()]
    clock.measures.append(Measure("compare", "known_anomalies", "unseen", float(compared.anomalies)))
    if compared.verdict is None:
        log.info("night %s: challenger %s not compared: %s", day, night.challenger, compared.note)
        return None
    if not compared.verdict:
        log.info("night %s: %s stays champion: %s", day, night.champion, compared.note)
        return None
    promoted = champion.promote(tables.path("models"), night.challenger, "automatic", compared.note,
                                metrics=compared.pr_auc, run_id=run.run_id)  # fmt: skip
    log.warning("night %s: %s promoted to champion: %s", day, night.challenger, compared.note)
    return promoted


def _monitor(
    tables: Tables, settings: Settings, run: RunInfo, night: Night, counts: dict[str, dict[str, int]],
    drift: dict[str, float], actions: dict[str, int], reference: dict[str, list[float]],
    expected_alert_share: float | None, timings: list[Measure],
) -> None:  # fmt: skip
    """The night's measures into run_metrics (replacing the night's rows), warnings, and its report."""
    from shopguard.report import render_night

    day, m = night.day, settings.monitoring
    edges, reference_shares = monitoring.score_reference(reference)
    scores_today = monitoring.spark_bin_shares(tables.on("scores", day), {"score": edges})["score"]
    score_psi = monitoring.psi(reference_shares, scores_today)
    measures = monitoring.judged(m, counts, drift, score_psi, actions, expected_alert_share)
    measures += monitoring.quarantine_reasons(tables.on("quarantine", day), counts) + timings
    night.warnings, night.failures = monitoring.problems(measures)
    measures.append(
        Measure(
            "monitor", "night_status", "failed" if night.failures else "ok", 0.0 if night.failures else 1.0
        )
    )
    night.measures = measures
    extra = {"run_id": run.run_id, "recorded_at": datetime.now(UTC), "run_date": day}
    rows = pd.DataFrame(monitoring.as_rows(measures, extra))[schemas.RUN_METRICS.fieldNames()]
    info = run.commit_info(run_date=day.isoformat(), rows_written=len(rows))
    tables.replace("run_metrics", tables.storage.spark.createDataFrame(rows, schemas.RUN_METRICS), day, info)
    for warning in night.warnings:
        log.warning("night %s: %s", day, warning)
    history = _alert_history(tables, day, m.report_nights)
    night.report = f"{settings.evaluation.report_dir.rstrip('/')}/nightly-{day.isoformat()}-{run.run_id}.html"
    evaluate.write_text(night.report, render_night(night, drift, history, m))


def _alert_history(tables: Tables, day: date, nights: int) -> pd.DataFrame:
    """run_date, metric, value of the alert and block rates of the last `nights` nights."""
    first = day - timedelta(days=nights - 1)
    recent = tables.read("run_metrics", where=[("run_date", ">=", first), ("run_date", "<=", day)])
    wanted = recent.where("metric IN ('alert_rate', 'block_rate')").select("run_date", "metric", "value")
    return wanted.toPandas().sort_values("run_date")


def _completed_nights(tables: Tables, first: date, last: date) -> set[date]:
    if not tables.exists("run_metrics"):
        return set()
    done = tables.read("run_metrics", where=[("run_date", ">=", first), ("run_date", "<=", last)])
    return {
        r["run_date"] for r in done.where("metric = 'night_status'").select("run_date").distinct().collect()
    }


def describe(night: Night) -> dict[str, Any]:
    """The night in a few numbers, for the log's last line and the run record."""
    picked = {(m.metric, m.subject): m.value for m in night.measures}
    top = max((m.value for m in night.measures if m.metric == "psi"), default=0.0)
    return {
        "champion": night.champion,
        "challenger": night.challenger,
        "promoted": night.promoted.model_version if night.promoted else None,
        "alert_rate": round(picked.get(("alert_rate", "champion"), 0.0), 5),
        "max_feature_psi": round(top, 4),
        "score_psi": round(picked.get(("score_psi", "champion"), 0.0), 4),
        "warnings": len(night.warnings),
    }
