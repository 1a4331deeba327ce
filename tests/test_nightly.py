"""The nightly run end to end: three nights of generated data, the third with drift injected into the input,
in this process on the test session (as an orchestrator runs it)."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from conftest import load_job
from pyspark.sql import functions as F

from shopguard import champion
from shopguard.catalog import Tables
from shopguard.config import TableSettings
from shopguard.errors import ExitCode
from shopguard.registry import read_metadata
from shopguard.runtime import run_job
from shopguard.storage import open_storage

NIGHTS = [dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)]


@pytest.fixture(scope="module")
def nights(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    settings = [
        "--set", f"tables.root={root}", "--set", f"evaluation.report_dir={root}/reports",
        "--set", "generate.users=600", "--set", "generate.days=12", "--set", "model.epochs=8",
        "--set", "evaluation.baselines=false", "--set", "nightly.train=drift",
    ]  # fmt: skip
    load_job("generate")(["--end-date", NIGHTS[-1].isoformat(), *settings])
    tables = Tables(open_storage(spark, "auto"), TableSettings(root=str(root)))
    # drift: on the third day every order costs twenty times as much (a currency bug upstream, say)
    third = tables.on("transactions", NIGHTS[-1]).withColumn("amount", F.col("amount") * 20)
    tables.replace("transactions", third.localCheckpoint(), NIGHTS[-1], {"job": "test: injected drift"})
    load_job("nightly")(["--from", NIGHTS[0].isoformat(), "--to", NIGHTS[-1].isoformat(), *settings])
    return root, settings, tables


def _metrics(tables: Tables):
    return tables.read("run_metrics").toPandas()


def test_every_table_gets_a_partition_per_night_and_run_metrics_its_rows(nights):
    _, _, tables = nights
    for table in ("features", "quarantine", "scores", "evaluations", "run_metrics"):
        assert tables.dates(table) == NIGHTS, table
    metrics = _metrics(tables)
    for night in NIGHTS:
        mine = metrics[metrics.run_date == night]
        assert {"input_rows", "quarantine_rate", "psi", "score_psi", "alert_rate", "block_rate", "step_seconds",
                "night_status"} <= set(mine.metric)  # fmt: skip
        assert set(mine[mine.metric == "input_rows"].subject) == {"clicks", "transactions"}
        assert {"features", "score", "evaluate"} <= set(mine[mine.metric == "step_seconds"].subject)


def test_the_drifted_night_is_flagged_on_the_features_that_moved(nights):
    _, _, tables = nights
    psi = _metrics(tables).query("metric == 'psi'")
    amounts = psi[psi.subject.str.startswith("amount_")]
    worst = amounts.groupby("run_date").value.max()
    assert worst[NIGHTS[-1]] > 0.25 and worst[NIGHTS[-1]] > 3 * worst[NIGHTS[1]]
    flagged = psi[(psi.run_date == NIGHTS[-1]) & (psi.status != "ok")]
    assert len(flagged) and flagged.subject.str.startswith("amount_").any()


def test_a_challenger_trained_on_the_drifted_night_scores_in_shadow_and_decides_nothing(nights):
    root, _, tables = nights
    (first,) = [p for p in champion.history(str(root / "models")) if p.kind == "first"]
    assert champion.current(str(root / "models")) == first.model_version  # not promoted: too few labels
    decided = tables.on("scores", NIGHTS[-1]).select("model_version").distinct().collect()
    assert [r.model_version for r in decided] == [first.model_version]
    shadow = {
        r.model_version for r in tables.on("shadow_scores", NIGHTS[-1]).select("model_version").collect()
    }
    (challenger,) = shadow
    assert challenger != first.model_version
    assert read_metadata(str(root / "models"), challenger).training["snapshot_date"] == NIGHTS[-1].isoformat()
    users = tables.on("scores", NIGHTS[-1]).count()
    assert tables.on("shadow_scores", NIGHTS[-1]).count() == users


def test_a_rerun_replaces_the_night_and_a_failing_threshold_exits_5_after_writing(nights, caplog):
    root, settings, tables = nights
    before = tables.on("run_metrics", NIGHTS[-1]).count()
    strict = [*settings, "--set", "monitoring.feature_psi.fail=0.25"]
    code = run_job(lambda: load_job("nightly")(["--date", NIGHTS[-1].isoformat(), *strict]))
    assert code == ExitCode.MONITOR
    assert tables.on("scores", NIGHTS[-1]).count() == tables.on("features", NIGHTS[-1]).count()
    mine = tables.on("run_metrics", NIGHTS[-1]).toPandas()
    assert (mine.metric == "night_status").sum() == 1 and mine.query("metric == 'night_status'").subject.iloc[
        0
    ] == "failed"
    assert abs(len(mine) - before) <= 2  # replaced, not appended (a comparison row may come or go)
    assert any("failed by monitoring" in r.getMessage() or "psi of amount" in r.getMessage() for r in caplog.records
               if r.levelno >= logging.ERROR)  # fmt: skip
    report = max(
        (root / "reports").glob(f"nightly-{NIGHTS[-1]}-*.html"), key=lambda p: p.stat().st_mtime
    ).read_text()
    assert (
        "data-failure" in report
        and 'data-plot="feature_drift"' in report
        and 'data-plot="alert_rate"' in report
    )


def test_a_backfill_run_again_skips_the_nights_that_completed(nights, caplog):
    _, settings, tables = nights
    caplog.set_level(logging.INFO, logger="shopguard")
    load_job("nightly")(["--from", NIGHTS[0].isoformat(), "--to", NIGHTS[-1].isoformat(), *settings])
    skipped = [r.getMessage() for r in caplog.records if "completed in an earlier run" in r.getMessage()]
    assert len(skipped) == len(NIGHTS)


def test_promotion_by_hand_is_recorded_and_a_rollback_undoes_it(nights, capsys):
    from shopguard.cli import main

    root, settings, tables = nights
    models = str(root / "models")
    challenger = tables.on("shadow_scores", NIGHTS[-1]).first().model_version
    was = champion.current(models)
    overrides = list(settings)
    assert main(["promote", challenger, "--reason", "reviewed the shadow scores", "--json", *overrides]) == 0
    assert champion.current(models) == challenger
    capsys.readouterr()
    assert main(["promote", "--rollback", "--json", *overrides]) == 0
    assert champion.current(models) == was
    record = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    latest = record[0]
    assert (
        latest["kind"] == "rollback" and latest["model_version"] == was and latest["previous"] == challenger
    )
    assert main(["promote", "no-such-version", *overrides]) == ExitCode.INPUT
