"""The whole nightly chain on a small generated data set (the `pipeline` fixture in conftest.py runs every
job's main() in this process), then the score job again through ./submit.sh and spark-submit, as an operator
runs it."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest
from conftest import DAY, PSEUDONYM_KEY, SUBMIT_FAST, load_job, submit
from deltalake import write_deltalake
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from shopguard import schemas
from shopguard.anomalies import DESIGNED
from shopguard.config import load_settings
from shopguard.privacy import pseudonym
from shopguard.storage import open_storage
from shopguard.validation import Rules, conform, normalise, validate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def submitted(pipeline, tmp_path_factory):
    """A third score run through submit.sh, in which one Python worker dies mid-scoring."""
    marker = tmp_path_factory.mktemp("fault") / "worker-crashed"
    result = submit("score", "--date", DAY, *pipeline.settings, *SUBMIT_FAST,
                    env={"SHOPGUARD_CRASH_WORKER_ONCE": str(marker)})  # fmt: skip
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr, marker


def test_every_table_is_a_delta_table_with_one_commit_per_job_run(pipeline):
    runs = {"raw/clicks": 1, "raw/transactions": 1, "raw/labels": 1, "raw/truth": 1, "features": 2,
            "quarantine": 2, "scores": 2}  # fmt: skip
    for name, commits in runs.items():
        history = pipeline.table(name).history()
        assert len(history) == commits, name
        assert {json.loads(h["userMetadata"])["job"] for h in history} <= {"generate", "features", "score"}


def test_reruns_replace_the_partition_and_never_duplicate(pipeline):
    features = pipeline.table("features").to_pandas()
    scores = pipeline.table("scores").to_pandas()
    assert features.user_id.is_unique and scores.user_id.is_unique
    assert set(scores.user_id) == set(features.user_id) == set(pipeline.first_scores.user_id)
    merged = scores.merge(pipeline.first_scores, on="user_id", suffixes=("", "_first"))
    assert np.allclose(merged.score, merged.score_first)


def test_rows_read_equal_rows_used_plus_quarantined_plus_duplicates(pipeline):
    (latest, *_) = pipeline.table("features").history()
    counts = json.loads(latest["userMetadata"])["counts"]
    quarantine = pipeline.table("quarantine").to_pandas()
    for source, c in counts.items():
        assert c["read"] == c["used"] + c["quarantined"] + c["duplicates"]
        assert c["quarantined"] == (quarantine.source_table == source).sum() > 0
        assert c["duplicates"] > 0  # the generator repeats some rows and orders
    assert {"missing user_id", "unknown event_type", "event_time in the future"} <= set(
        r for reasons in quarantine.reason for r in reasons.split("; ")
    )


def test_a_days_quarantine_is_one_file_per_source_log_not_one_per_input_partition(pipeline):
    files = [f for f in pipeline.table("quarantine").file_uris() if f"snapshot_date={DAY}" in f]
    logs = [f.split("source_table=")[1].split("/")[0] for f in files]
    assert sorted(logs) == ["clicks", "transactions"], files


def test_a_rerun_on_clean_logs_empties_the_dates_quarantine(pipeline, spark, tmp_path):
    """The features job skips the quarantine's second read of a log whose pass counted no bad row; the
    date's quarantine partition must still be replaced (by nothing), not keep the earlier run's rows."""
    run = pipeline.copy(tmp_path / "tables")
    rules = Rules.from_settings(load_settings().validation, dt.datetime.now(dt.UTC))
    clean = {}
    for table, partition in (("clicks", "event_date"), ("transactions", "order_date")):
        raw = open_storage(spark, "delta-rs").read(str(run.root / "raw" / table))
        checked = validate(
            conform(raw, table, {}).transform(normalise(table)), table, rules, dt.date.fromisoformat(DAY)
        )
        clean[table] = tmp_path / f"clean_{table}"
        write_deltalake(str(clean[table]), checked.valid.toArrow(), partition_by=[partition])
    before = len(run.table("quarantine").to_pandas())
    load_job("features")(["--date", DAY, *run.settings, "--set", f"tables.clicks={clean['clicks']}",
                          "--set", f"tables.transactions={clean['transactions']}"])  # fmt: skip
    (latest, *_) = run.table("features").history()
    counts = json.loads(latest["userMetadata"])["counts"]
    assert before > 0 and all(
        c["quarantined"] == 0 and c["read"] == c["used"] + c["duplicates"] for c in counts.values()
    )
    quarantine = run.table("quarantine").to_pandas()
    assert (quarantine.snapshot_date == dt.date.fromisoformat(DAY)).sum() == 0


def test_injected_anomalies_score_above_normal_users(pipeline):
    scores = pipeline.table("scores").to_pandas()
    truth = pipeline.table("raw/truth").to_pandas()
    anomalous = {pseudonym(u, PSEUDONYM_KEY.encode()) for u in truth.user_id}
    y = scores.user_id.isin(anomalous)
    assert y.sum() >= 20
    assert roc_auc_score(y, scores.score) > 0.9
    assert set(scores.action) <= set(schemas.ACTIONS) and (scores.action != "pass").any()
    alerts = scores[scores.is_anomaly]
    assert alerts.reasons.map(len).min() > 0


def test_raw_identifiers_never_reach_features_scores_quarantine_or_logs(pipeline):
    clicks = pipeline.table("raw/clicks").to_pandas()
    raw = {v.strip().lower() for column in ("user_id", "device_id", "ip") for v in clicks[column].dropna()}
    raw.discard("")
    stored = " ".join(
        [*pipeline.table("features").to_pandas().user_id, *pipeline.table("scores").to_pandas().user_id,
         *pipeline.table("quarantine").to_pandas().record]
    )  # fmt: skip
    sample = sorted(raw)[:: max(1, len(raw) // 300)]
    assert not [v for v in sample if v in stored]
    assert not [v for v in sample if v in pipeline.log]
    assert all(len(u) == 32 for u in pipeline.table("scores").to_pandas().user_id)


def test_the_model_records_what_it_was_trained_on(pipeline):
    (version,) = [p for p in (pipeline.root / "models").iterdir() if p.is_dir()]
    meta = json.loads((version / "metadata.json").read_text())
    features = pipeline.table("features")
    assert meta["inputs"]["features"]["version"] == 0 and meta["inputs"]["features"]["snapshots"] == [DAY]
    names = [n for n in features.schema().to_arrow().names if n not in ("user_id", "snapshot_date")]
    assert meta["feature_names"] == names
    assert meta["thresholds"]["block"] >= meta["thresholds"]["alert"]
    assert meta["training"]["device"].startswith(("CPU", "GPU")) and "keras" in meta["libraries"]
    assert (version / "tensorboard").is_dir()


def test_submit_sh_runs_a_job_under_spark_submit(pipeline, submitted):
    log, _ = submitted
    assert len(pipeline.table("scores").history()) == 3
    assert "INFO shopguard.score: scored" in log
    assert "INFO SparkContext" not in log  # Spark's own chatter stays at warnings


def test_a_python_worker_that_dies_mid_scoring_is_retried_and_the_table_is_complete(pipeline, submitted):
    _, marker = submitted
    assert marker.exists()  # a worker did die
    scores = pipeline.table("scores").to_pandas()
    features = pipeline.table("features").to_pandas()
    assert scores.user_id.is_unique and set(scores.user_id) == set(features.user_id)


def test_the_summary_reports_counts_per_step_and_ranks_per_anomaly_type(pipeline, capsys):
    load_job("summary")(["--date", DAY, *pipeline.settings])
    out = capsys.readouterr().out
    assert "injected anomalies (truth)" in out
    assert "features      features" in out and "score         scores" in out
    assert all(kind in out for kind in DESIGNED)

    load_job("summary")(["--date", DAY, *pipeline.settings, "--set", "evaluation.max_evaluated_rows=300"])
    capped = capsys.readouterr().out

    def counted(text):  # the users scored, and the known and scored anomalies of every type
        rows = [line.split()[:3] for line in text.splitlines() if line.split()[:1] in [[k] for k in DESIGNED]]
        return re.search(r"(\d+) users scored", text)[1], rows

    assert counted(capped) == counted(out)  # exact though ~300 of the other users were read


def test_a_bad_setting_stops_submit_sh_before_spark_starts():
    result = submit("score", "--date", DAY, "--set", "model.epocs=3", timeout=120)
    assert result.returncode != 0
    assert "model.epocs: Extra inputs are not permitted" in result.stderr


def test_evaluate_writes_metrics_per_type_and_a_report_and_a_rerun_replaces_them(pipeline, tmp_path):
    run = pipeline.copy(tmp_path / "tables")
    report = tmp_path / "report.html"
    for _ in range(2):
        load_job("evaluate")(["--date", DAY, "--against", "truth", "--report", str(report), *run.settings])
    evaluations = run.table("evaluations")
    rows = evaluations.to_pandas()
    assert len(evaluations.history()) == 2
    assert not rows.duplicated(["model_version", "anomaly_type", "metric"]).any()
    (model,) = [v for v in rows.model_version.unique() if not v.startswith("baseline:")]
    assert "baseline:isolation_forest" in set(rows.model_version)
    metric = rows.set_index(["model_version", "anomaly_type", "metric"])["value"]
    assert metric[(model, "all", "roc_auc")] > 0.9
    for kind in DESIGNED:
        assert (model, kind, "recall@budget_0.01") in metric.index
    assert (model, "all", "precision@threshold_alert") in metric.index
    assert (model, "all", "top_reason_in_signature") in metric.index
    html = report.read_text()
    assert html.count("data-plot=") == 6 and "baseline:isolation_forest" in html


def test_evaluate_collects_only_a_capped_sample_to_the_driver_for_the_baselines(pipeline, tmp_path):
    run = pipeline.copy(tmp_path / "tables")
    report = tmp_path / "report.html"
    load_job("evaluate")(["--date", DAY, "--against", "truth", "--report", str(report), *run.settings,
                          "--set", "evaluation.max_baseline_rows=300"])  # fmt: skip
    users = set(run.table("features").to_pandas().user_id)
    verdicts = run.table("raw/labels").to_pandas().user_id
    labelled = users & {pseudonym(u, PSEUDONYM_KEY.encode()) for u in verdicts}
    ((sampled, of),) = re.findall(r"baselines on (\d+) of (\d+) users", report.read_text())
    assert len(labelled) <= int(sampled) < 600  # every labelled user and a few of the others
    assert int(of) == len(users)
    rows = run.table("evaluations").to_pandas()
    metric = rows.set_index(["model_version", "anomaly_type", "metric"])["value"]
    assert ("baseline:isolation_forest", "all", "roc_auc") in metric.index
    model = next(v for v, *_ in metric.index if not v.startswith("baseline:"))
    assert metric[(model, "all", "roc_auc")] > 0.9  # the model is still measured on every user


def test_above_the_cap_evaluate_weighs_a_sample_of_normal_users_and_keeps_every_known_anomaly(
    pipeline, tmp_path
):
    run = pipeline.copy(tmp_path / "tables")
    figures = {}
    for cap in (10_000, 300):
        report = tmp_path / f"report-{cap}.html"
        settings = ["--set", "evaluation.baselines=false", "--set", f"evaluation.max_evaluated_rows={cap}"]
        load_job("evaluate")(
            ["--date", DAY, "--against", "truth", "--report", str(report), *run.settings, *settings]
        )
        rows = run.table("evaluations").to_pandas()
        figures[cap] = rows[rows.anomaly_type == "all"].set_index("metric")["value"]
        evaluated = int(re.search(r"(\d+) users evaluated", report.read_text())[1])
        figures[cap]["evaluated"] = evaluated
    full, sampled = figures[10_000], figures[300]
    shares = re.findall(r"of the others, each of whom stands for ([\d.]+) users", report.read_text())
    assert len(shares) == 1 and float(shares[0]) > 3  # 1,500 users of whom ~300 others were read
    assert sampled["positives"] == full["positives"]  # every known anomaly is kept, at weight one
    for recall in ("recall@threshold_alert", "recall@threshold_block"):
        assert sampled[recall] == full[recall]
    assert abs(sampled["evaluated"] - full["evaluated"]) <= 0.1 * full["evaluated"]
    assert abs(sampled["roc_auc"] - full["roc_auc"]) < 0.03


def test_verdicts_appended_by_analysts_reach_the_next_training_run(pipeline, tmp_path):
    run = pipeline.copy(tmp_path / "tables")
    (old,) = [json.loads((p / "metadata.json").read_text()) for p in (run.root / "models").iterdir()]
    labelled = set(run.table("raw/labels").to_pandas().user_id)
    fresh = [u for u in run.table("raw/truth").to_pandas().user_id if u not in labelled][:4]
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text(
        "user_id,label,anomaly_type,labelled_at\n"
        + "".join(
            f"{u.upper()} ,1,brushing,2026-11-21 09:00:00\n" for u in fresh
        )  # ids as analysts type them
        + "u00000001,7,brushing,2026-11-21 09:00:00\n"  # not a label: quarantined
    )
    load_job("label")(["--verdicts", str(verdicts), *run.settings])
    assert run.table("raw/labels").version() == old["inputs"]["labels"]["version"] + 1
    quarantine = run.table("quarantine").to_pandas()
    assert (quarantine.source_table == "verdicts").sum() == 1

    load_job("train")(["--date", DAY, *run.settings])
    (new,) = [json.loads((p / "metadata.json").read_text()) for p in (run.root / "models").iterdir()
              if p.name != old["model_version"]]  # fmt: skip
    assert new["inputs"]["labels"]["version"] == old["inputs"]["labels"]["version"] + 1
    assert new["training"]["labelled_rows"] == old["training"]["labelled_rows"] + len(fresh)


def test_training_takes_the_latest_snapshots_up_to_its_date_and_never_a_later_one(
    pipeline, storage, tmp_path
):
    run = pipeline.copy(tmp_path / "tables")
    path, day = str(run.root / "features"), dt.date.fromisoformat(DAY)
    snapshot = storage.read(path, where=[("snapshot_date", "=", day)])
    for other in (day - dt.timedelta(days=1), day + dt.timedelta(days=1)):
        storage.write(
            snapshot.withColumn("snapshot_date", F.lit(other)),
            path,
            mode="overwrite",
            partition_by=["snapshot_date"],
            replace_where=[("snapshot_date", "=", other)],
        )
    before = {p.name for p in (run.root / "models").iterdir()}

    load_job("train")(
        ["--date", DAY, *run.settings, "--set", "model.training_snapshots=2", "--set", "model.epochs=2"]
    )

    (new,) = [json.loads((p / "metadata.json").read_text()) for p in (run.root / "models").iterdir()
              if p.name not in before]  # fmt: skip
    assert new["inputs"]["features"]["snapshots"] == [str(day - dt.timedelta(days=1)), DAY]
    assert new["training"]["rows"] == 2 * snapshot.count()
