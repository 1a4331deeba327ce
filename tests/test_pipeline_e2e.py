"""The whole nightly chain on a small generated data set: every job's main() in this process (sharing the
test session, as an orchestrator would), then the score job again through ./submit.sh and spark-submit, as an
operator runs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score

from shopguard import schemas

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-22"


def job(name: str):
    spec = importlib.util.spec_from_file_location(f"shopguard_job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    settings = ["--set", f"tables.root={root}", "--set", "generate.users=1500", "--set", "model.epochs=15"]
    job("generate")(["--end-date", DAY, *settings])
    job("features")(["--date", DAY, *settings])
    job("train")(["--date", DAY, *settings])
    job("score")(["--date", DAY, *settings])
    first_scores = DeltaTable(str(root / "scores")).to_pandas()
    job("features")(["--date", DAY, *settings])  # reruns for the same date
    job("score")(["--date", DAY, *settings])
    return root, settings, first_scores


@pytest.fixture(scope="module")
def submitted(pipeline):
    """A third score run, through submit.sh in a process of its own."""
    root, settings, _ = pipeline
    fast = [
        "--set",
        "spark.master=local[2]",
        "--set",
        "spark.conf.spark.sql.shuffle.partitions=4",
        "--set",
        "spark.conf.spark.driver.memory=2g",
        "--set",
        "spark.conf.spark.ui.enabled=false",
    ]
    result = subprocess.run(
        [str(ROOT / "submit.sh"), "score", "--date", DAY, *settings, *fast],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


def table(root: Path, name: str) -> DeltaTable:
    return DeltaTable(str(root / name))


def test_every_table_is_a_delta_table_with_one_commit_per_job_run(pipeline):
    root, _, _ = pipeline
    runs = {
        "raw/clicks": 1,
        "raw/transactions": 1,
        "raw/labels": 1,
        "raw/truth": 1,
        "features": 2,
        "quarantine": 2,
        "scores": 2,
    }
    for name, commits in runs.items():
        history = table(root, name).history()
        assert len(history) == commits, name
        assert {json.loads(h["userMetadata"])["job"] for h in history} <= {"generate", "features", "score"}


def test_reruns_replace_the_partition_and_never_duplicate(pipeline):
    root, _, first_scores = pipeline
    features = table(root, "features").to_pandas()
    scores = table(root, "scores").to_pandas()
    assert features.user_id.is_unique and scores.user_id.is_unique
    assert set(scores.user_id) == set(features.user_id) == set(first_scores.user_id)
    merged = scores.merge(first_scores, on="user_id", suffixes=("", "_first"))
    assert np.allclose(merged.score, merged.score_first)


def test_injected_anomalies_score_above_normal_users(pipeline):
    root, _, _ = pipeline
    scores = table(root, "scores").to_pandas()
    truth = table(root, "raw/truth").to_pandas()
    y = scores.user_id.isin(truth.user_id)
    assert y.sum() >= 20
    assert roc_auc_score(y, scores.score) > 0.9
    assert set(scores.action) <= set(schemas.ACTIONS) and (scores.action != "pass").any()
    alerts = scores[scores.is_anomaly]
    assert alerts.reasons.map(len).min() > 0


def test_the_model_records_what_it_was_trained_on(pipeline):
    root, _, _ = pipeline
    (version,) = [p for p in (root / "models").iterdir() if p.is_dir()]
    meta = json.loads((version / "metadata.json").read_text())
    features = table(root, "features")
    assert meta["inputs"]["features"]["version"] == 0 and meta["inputs"]["features"]["snapshots"] == [DAY]
    assert meta["feature_names"] == [
        n for n in features.schema().to_arrow().names if n not in ("user_id", "snapshot_date")
    ]
    assert meta["thresholds"]["block"] >= meta["thresholds"]["alert"]
    assert meta["training"]["device"].startswith(("CPU", "GPU")) and "keras" in meta["libraries"]
    assert (version / "tensorboard").is_dir()


def test_submit_sh_runs_a_job_under_spark_submit(pipeline, submitted):
    root, _, _ = pipeline
    assert len(table(root, "scores").history()) == 3
    assert table(root, "scores").to_pandas().user_id.is_unique
    assert "INFO shopguard.score: scored" in submitted
    assert "INFO SparkContext" not in submitted  # Spark's own chatter stays at warnings


def test_the_summary_reports_counts_per_step_and_ranks_per_anomaly_type(pipeline, capsys):
    root, settings, _ = pipeline
    job("summary")(["--date", DAY, *settings])
    out = capsys.readouterr().out
    assert "injected anomalies (truth)" in out
    assert "features      features" in out and "score         scores" in out
    assert all(kind in out for kind in schemas.ANOMALY_TYPES)


def test_a_bad_setting_stops_submit_sh_before_spark_starts():
    result = subprocess.run(
        [str(ROOT / "submit.sh"), "score", "--date", DAY, "--set", "model.epocs=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "model.epocs: Extra inputs are not permitted" in result.stderr
