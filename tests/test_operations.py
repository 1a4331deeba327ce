"""What an operator and an analyst meet: an exit code per kind of outcome with one line that names the cause,
input tables of every layout read or refused up front, verdicts never lost or doubled, models never swapped
silently, and a log that says where a run is. Each test is one case of docs/operations.md."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import BACKENDS, DAY, ROOT, load_job, plant_uncommitted_file, submit
from deltalake import DeltaTable
from pyspark.sql import functions as F

from shopguard.config import ColumnSettings
from shopguard.errors import ExitCode
from shopguard.inputs import read_window
from shopguard.runtime import StageProgress, run_job
from shopguard.storage import DAMAGED_LOG_ADVICE, open_storage
from shopguard.synthetic import SyntheticSpec, split_records, synthetic_records

JOBS = ("generate", "features", "train", "score", "summary", "evaluate", "label", "maintenance")
LATER = str(dt.date.fromisoformat(DAY) + dt.timedelta(days=5))  # no input rows that day


def run(job: str, *argv: str) -> int:
    """A job's main in this process, ended as main_entry ends it: an exit code, never an exception."""
    return run_job(lambda: load_job(job)(list(argv)))


def last_error(caplog) -> str:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][-1]


# --------------------------------------------------------------------------- empty input


def test_a_date_without_input_rows_fails_with_exit_3_and_writes_nothing(pipeline, tmp_path, caplog):
    tables = pipeline.copy(tmp_path / "tables")
    versions = {t: tables.table(t).version() for t in ("features", "quarantine")}
    log_file = tmp_path / "features.log"

    code = run("features", "--date", LATER, *tables.settings, "--log-file", str(log_file))

    assert code == ExitCode.INPUT == 3
    line = last_error(caplog)
    assert f"clicks: no valid rows for {LATER} in {tables.root}/raw/clicks" in line
    assert "--allow-empty" in line and line.startswith(
        "exit 3 (missing, empty or unreadable input: nothing was written)"
    )
    assert {t: tables.table(t).version() for t in versions} == versions
    assert line in log_file.read_text()  # --log-file holds the same lines
    for handler in [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]:
        logging.getLogger().removeHandler(handler)
    listed = submit("runs", *tables.settings, "--json", timeout=60)
    (failed,) = [json.loads(r) for r in listed.stdout.splitlines() if json.loads(r)["outcome"] == "failed"]
    assert (failed["date"], failed["exit_code"], failed["outcome"]) == (LATER, 3, "failed")


def test_an_expected_empty_day_writes_an_empty_snapshot_and_scoring_it_succeeds(pipeline, tmp_path, caplog):
    tables = pipeline.copy(tmp_path / "tables")
    for table, empty_from in (("raw/clicks", "event_date"), ("raw/transactions", "order_date")):
        # empty tables of the right schema: the whole log was lost upstream
        frame = DeltaTable(str(tables.root / table)).to_pyarrow_table().slice(0, 0)
        from deltalake import write_deltalake

        write_deltalake(str(tables.root / table), frame, mode="overwrite", partition_by=[empty_from])
    assert run("features", "--date", DAY, *tables.settings) == ExitCode.INPUT

    assert run("features", "--date", DAY, "--allow-empty", *tables.settings) == ExitCode.OK
    features = tables.table("features")
    assert json.loads(features.history(1)[0]["userMetadata"])["rows_written"] == 0
    assert features.to_pandas(partitions=[("snapshot_date", "=", DAY)]).empty
    assert any("the snapshot is empty" in r.getMessage() for r in caplog.records)
    assert run("score", "--date", DAY, *tables.settings) == ExitCode.OK
    assert tables.table("scores").to_pandas(partitions=[("score_date", "=", DAY)]).empty


# --------------------------------------------------------------------------- verdicts


def verdicts_file(path: Path, rows: list[str]) -> Path:
    path.write_text("user_id,label,anomaly_type,labelled_at\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_verdicts_are_never_doubled_and_every_quarantined_verdict_is_kept_as_given(pipeline, tmp_path):
    tables = pipeline.copy(tmp_path / "tables")
    labels_before = len(tables.table("raw/labels").to_pandas())
    first = verdicts_file(tmp_path / "monday.csv", [
        "u00000001,1,brushing,2026-11-21 09:00:00", "u00000002,0,,2026-11-21 09:05:00",
        "u00000003,maybe,brushing,2026-11-21 09:10:00",
    ])  # fmt: skip
    second = verdicts_file(tmp_path / "tuesday.csv", ["u00000004,7,bulk_order,2026-11-21 10:00:00"])

    def state():
        labels = tables.table("raw/labels").to_pandas()
        quarantine = tables.table("quarantine").to_pandas()
        return len(labels), quarantine[quarantine.source_table == "verdicts"].sort_values("reason")

    assert run("label", "--verdicts", str(first), *tables.settings) == ExitCode.OK
    after_first = state()
    assert after_first[0] == labels_before + 2
    assert run("label", "--verdicts", str(first), *tables.settings) == ExitCode.OK  # the same file again
    assert state()[0] == after_first[0] and len(state()[1]) == len(after_first[1]) == 1
    assert run("label", "--verdicts", str(second), *tables.settings) == ExitCode.OK  # same day, new bad row

    _, quarantined = state()
    assert list(quarantined.reason) == ["label '7' is not 0 or 1", "label 'maybe' is not 0 or 1"]
    assert json.loads(quarantined.record.iloc[1])["label"] == "maybe"  # the text as the analyst wrote it


# --------------------------------------------------------------------------- input layouts


@pytest.fixture(scope="module")
def tiny(spark, tmp_path_factory):
    """80 generated users over 8 days, written the canonical way, and their features."""
    root = tmp_path_factory.mktemp("layouts")
    spec = SyntheticSpec(users=80, days=8, end_date=dt.date.fromisoformat(DAY), seed=3, users_per_block=80,
                         anomaly_share=0.1, dirty_share=0.0)  # fmt: skip
    clicks, orders, _, _ = split_records(synthetic_records(spark.range(1), spec))
    clicks, orders = clicks.persist(), orders.persist()
    from shopguard.storage import DeltaRsStorage

    storage = DeltaRsStorage(spark)
    storage.write(clicks, str(root / "clicks"), mode="overwrite", partition_by=["event_date"])
    storage.write(orders, str(root / "orders"), mode="overwrite", partition_by=["order_date"])
    settings = ["--set", f"tables.root={root}", "--set", f"tables.clicks={root}/clicks",
                "--set", f"tables.transactions={root}/orders", "--set", "logging.progress_seconds=0"]  # fmt: skip
    assert run("features", "--date", DAY, *settings) == ExitCode.OK
    return root, storage, clicks, orders, settings


def test_unpartitioned_and_string_partitioned_inputs_give_the_same_features(tiny, tmp_path):
    root, storage, clicks, orders, settings = tiny
    storage.write(clicks, str(tmp_path / "flat_clicks"), mode="overwrite")  # not partitioned at all
    dt_orders = orders.withColumn("dt", F.col("order_date").cast("string")).drop("order_date")
    storage.write(dt_orders, str(tmp_path / "dt_orders"), mode="overwrite", partition_by=["dt"])

    code = run("features", "--date", DAY, *settings, "--set", f"tables.features={tmp_path}/features",
               "--set", f"tables.clicks={tmp_path}/flat_clicks", "--set", f"tables.transactions={tmp_path}/dt_orders",
               "--set", "columns.transactions.order_date=dt")  # fmt: skip

    assert code == ExitCode.OK
    expected = DeltaTable(str(root / "features")).to_pandas().sort_values("user_id", ignore_index=True)
    got = DeltaTable(str(tmp_path / "features")).to_pandas().sort_values("user_id", ignore_index=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected)


@pytest.fixture
def bronze(spark, tmp_path):
    """A database `bronze` in the session's catalog, dropped afterwards (its tables' files stay)."""
    spark.sql(f"CREATE DATABASE bronze LOCATION '{tmp_path}/bronze.db'")
    yield
    spark.sql("DROP DATABASE bronze CASCADE")


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_given_by_their_catalog_name_give_the_same_features_as_by_path(
    spark, tiny, bronze, tmp_path, backend
):
    root, _, _, _, settings = tiny
    spark.sql(f"CREATE TABLE bronze.clicks USING DELTA LOCATION '{root}/clicks'")
    spark.sql(f"CREATE TABLE bronze.orders USING DELTA LOCATION '{root}/orders'")

    code = run("features", "--date", DAY, *settings, "--set", f"tables.features={tmp_path}/features",
               "--set", f"tables.quarantine={tmp_path}/quarantine", "--set", "tables.clicks=catalog:bronze.clicks",
               "--set", "tables.transactions=catalog:spark_catalog.bronze.orders",
               "--set", f"storage.backend={backend}")  # fmt: skip

    assert code == ExitCode.OK
    expected = DeltaTable(str(root / "features")).to_pandas().sort_values("user_id", ignore_index=True)
    got = DeltaTable(str(tmp_path / "features")).to_pandas().sort_values("user_id", ignore_index=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    inputs = json.loads(DeltaTable(str(tmp_path / "features")).history(1)[0]["userMetadata"])["inputs"]
    assert inputs["clicks"]["path"].endswith(f"{root}/clicks")
    assert inputs["transactions"]["path"].endswith(f"{root}/orders")


def test_an_input_given_by_a_catalog_name_that_is_no_delta_table_there_fails_naming_what_it_is(
    spark, tiny, bronze, tmp_path, caplog
):
    *_, settings = tiny
    spark.range(3).write.parquet(str(tmp_path / "plain"))
    spark.sql(f"CREATE TABLE bronze.plain USING PARQUET LOCATION '{tmp_path}/plain'")
    spark.sql("CREATE VIEW bronze.recent AS SELECT * FROM bronze.plain")

    for name, says in [
        ("bronze.clickz", "no table bronze.clickz in the session's catalog (in-memory)"),
        ("bronze.plain", "bronze.plain is a parquet table at"),
        ("bronze.recent", "bronze.recent is a view, not a table"),
    ]:
        code = run("features", "--date", DAY, *settings, "--set", f"tables.root={tmp_path}",
                   "--set", f"tables.clicks=catalog:{name}")  # fmt: skip
        assert code == ExitCode.INPUT and says in last_error(caplog), last_error(caplog)
    assert not (tmp_path / "features").exists() and not (tmp_path / "quarantine").exists()


def test_a_table_registered_at_another_location_stops_the_job_before_it_writes(spark, tiny, tmp_path, caplog):
    root, *_, settings = tiny
    # the lake moved to a new root; the catalog database still holds the old location of the features
    moved = tmp_path / "moved"
    shutil.copytree(root / "features", moved / "features")
    spark.sql(f"CREATE DATABASE sg_moved LOCATION '{tmp_path}/sg_moved.db'")
    try:
        spark.sql(f"CREATE TABLE sg_moved.features USING DELTA LOCATION '{root}/features'")
        catalog = ["--set", f"tables.root={moved}", "--set", "catalog.enabled=true",
                   "--set", "catalog.database=sg_moved"]  # fmt: skip
        version = DeltaTable(str(moved / "features")).version()

        code = run("features", "--date", DAY, *settings, *catalog)

        assert code == ExitCode.USAGE, last_error(caplog)
        line = last_error(caplog)
        assert (
            f"CatalogConflictError: sg_moved.features is registered at file:{root}/features, not at {moved}/features"
            in line
        )
        assert "SET LOCATION" in line and "catalog.database" in line
        assert DeltaTable(str(moved / "features")).version() == version
        assert not (moved / "quarantine").exists()

        # the fix the line names: the entry re-pointed, the job runs and registers its inputs and outputs
        spark.sql(f"ALTER TABLE sg_moved.features SET LOCATION '{moved}/features'")
        assert run("features", "--date", DAY, *settings, *catalog) == ExitCode.OK
        registered = {r.tableName for r in spark.sql("SHOW TABLES IN sg_moved").collect()}
        assert registered == {"clicks", "transactions", "features", "quarantine"}
        day = [("snapshot_date", "=", DAY)]
        for table in ("features", "quarantine"):
            counted = spark.sql(
                f"SELECT count(*) FROM sg_moved.{table} WHERE snapshot_date = '{DAY}'"
            ).first()[0]
            assert counted == len(DeltaTable(str(moved / table)).to_pandas(partitions=day))

        # an output given by its catalog name is written where the catalog says, looked up once by the job
        # (not again by its catalog check and its registration: each lookup reads the table's Delta log)
        version = DeltaTable(str(moved / "features")).version()
        by_name = ["--set", "tables.features=catalog:sg_moved.features"]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="shopguard.storage"):
            assert run("features", "--date", DAY, *settings, *catalog, *by_name) == ExitCode.OK
        assert DeltaTable(str(moved / "features")).version() == version + 1
        lookups = [r.getMessage() for r in caplog.records if r.getMessage().startswith("catalog table ")]
        assert lookups == [f"catalog table sg_moved.features: the Delta table at file:{moved}/features"]
    finally:
        spark.sql("DROP DATABASE sg_moved CASCADE")


WINDOW = (dt.date.fromisoformat(DAY) - dt.timedelta(days=2), dt.date.fromisoformat(DAY))


def rows_in_window(storage, path: Path, **columns: str) -> int:
    """Clicks `read_window` reads for WINDOW from the table at `path`, its columns mapped as given."""
    mapping = {**ColumnSettings().mapping("clicks"), **columns}
    return read_window(storage, str(path), "clicks", mapping, 0, *WINDOW).count()


def test_timestamp_and_hour_sub_partitions_are_read_by_date(tiny, tmp_path):
    _, storage, clicks, _, _ = tiny
    expected = clicks.where(F.col("event_date").between(*WINDOW)).count()
    hourly = clicks.withColumn("hour", F.hour("event_time"))
    storage.write(hourly, str(tmp_path / "hourly"), mode="overwrite", partition_by=["event_date", "hour"])
    by_hour = clicks.withColumn("logged_hour", F.date_trunc("hour", "event_time")).drop("event_date")
    storage.write(by_hour, str(tmp_path / "by_hour"), mode="overwrite", partition_by=["logged_hour"])

    assert rows_in_window(storage, tmp_path / "hourly") == expected
    assert rows_in_window(storage, tmp_path / "by_hour", event_date="logged_hour") == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_rows_without_a_date_partition_are_read_and_quarantined_not_lost(tiny, tmp_path, backend):
    """A range over the date partitions never selects the null partition: its rows were left out of every
    window and out of every count."""
    root, storage, clicks, _, settings = tiny
    on_day = clicks.where(F.col("event_date") == DAY).orderBy("user_id", "event_time").limit(3)
    undated = on_day.withColumn("event_date", F.lit(None).cast("date"))
    path = str(tmp_path / "clicks")
    storage.write(clicks.unionByName(undated), path, mode="overwrite", partition_by=["event_date"])

    code = run("features", "--date", DAY, *settings, "--set", f"tables.root={tmp_path}",
               "--set", f"tables.clicks={path}", "--set", f"storage.backend={backend}")  # fmt: skip

    assert code == ExitCode.OK
    (before, *_), (after, *_) = (DeltaTable(str(r / "features")).history() for r in (root, tmp_path))
    was, now = (json.loads(c["userMetadata"])["counts"]["clicks"] for c in (before, after))
    assert now["read"] == was["read"] + 3 == now["used"] + now["quarantined"] + now["duplicates"]
    assert now["quarantined"] == was["quarantined"] + 3
    quarantine = DeltaTable(str(tmp_path / "quarantine")).to_pandas()
    assert list(quarantine.reason) == ["missing event_date"] * 3


def test_rows_without_a_date_are_read_with_every_window_whatever_the_layout(tiny, tmp_path):
    _, storage, clicks, _, _ = tiny
    expected = clicks.where(F.col("event_date").between(*WINDOW)).count()
    lost = clicks.where(F.col("event_date") < WINDOW[0]).orderBy("user_id", "event_time").limit(4)
    text = clicks.withColumn("event_date", F.col("event_date").cast("string"))  # not partitioned, text days
    for value in (None, "soon"):
        text = text.unionByName(lost.withColumn("event_date", F.lit(value).cast("string")))
    storage.write(text, str(tmp_path / "flat"), mode="overwrite")
    stamped = clicks.withColumn("logged_hour", F.date_trunc("hour", "event_time")).drop("event_date")
    hourless = stamped.unionByName(
        lost.drop("event_date").withColumn("logged_hour", F.lit(None).cast("timestamp"))
    )
    storage.write(hourless, str(tmp_path / "by_hour"), mode="overwrite", partition_by=["logged_hour"])

    assert rows_in_window(storage, tmp_path / "flat") == expected + 8
    assert rows_in_window(storage, tmp_path / "by_hour", event_date="logged_hour") == expected + 4


@pytest.mark.parametrize(
    ("layout", "files"),
    [("appended by day", 3 + 1), ("liquid-clustered", 3 + 1), ("dated by its time alone", 3 + 1 + 1)],
)
def test_an_unpartitioned_input_is_read_through_the_files_whose_statistics_hold_the_window(
    spark, tiny, tmp_path, storage, layout, files
):
    """Delta 4 recommends clustering over partitioning, and many logs are simply appended day by day: the
    window's files are found by their statistics on both backends, where delta-rs read every file. Without
    a date column the day comes from the time in the session's zone, so the day before the window (and the
    day after) is read as well. The last file holds undated rows, which every window reads."""
    _, _, clicks, _, _ = tiny
    path = str(tmp_path / "clicks")
    if layout == "liquid-clustered":
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in clicks.schema)
        spark.sql(f"CREATE TABLE delta.`{path}` ({columns}) USING delta CLUSTER BY (event_date)")
    days = sorted(r.event_date for r in clicks.select("event_date").distinct().collect())
    daily = [clicks.where(F.col("event_date") == day) for day in days]
    undated = clicks.limit(5).withColumn("event_date", F.lit(None).cast("date"))
    if layout == "dated by its time alone":
        daily = [rows.drop("event_date") for rows in daily]
        undated = undated.drop("event_date").withColumn("event_time", F.lit(None).cast("timestamp"))
    # a file a day, then one of undated rows, by the backend under test (delta-rs cannot write to a
    # clustered table: the platform's writer does)
    writer = open_storage(spark, "delta-spark") if layout == "liquid-clustered" else storage
    for rows in [*daily, undated]:
        writer.write(rows.coalesce(1), path, mode="append")

    clustered = "clustering" in (DeltaTable(path).protocol().writer_features or [])
    assert clustered == (layout == "liquid-clustered")
    mapping = ColumnSettings().mapping("clicks")
    read = read_window(storage, path, "clicks", mapping, storage.version(path), *WINDOW)

    assert read.count() == clicks.where(F.col("event_date").between(*WINDOW)).count() + 5
    assert len(read.inputFiles()) == files < len(days) + 1


def test_an_input_partitioned_by_another_column_is_refused_naming_the_setting(tiny, tmp_path, caplog):
    _, storage, _, orders, settings = tiny
    storage.write(orders.withColumnRenamed("order_date", "event_date"), str(tmp_path / "orders"),
                  mode="overwrite", partition_by=["event_date"])  # fmt: skip

    code = run("features", "--date", DAY, *settings, "--set", f"tables.transactions={tmp_path}/orders",
               "--set", f"tables.features={tmp_path}/features")  # fmt: skip

    assert code == ExitCode.USAGE
    assert "run with --set columns.transactions.order_date=event_date" in last_error(caplog)
    assert not (tmp_path / "features").exists()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", ["cut short", "deleted"])
def test_a_truncated_or_missing_parquet_file_fails_in_one_line_naming_it(
    tiny, tmp_path, caplog, damage, backend
):
    import shutil

    root, _, _, _, settings = tiny
    shutil.copytree(root / "clicks", tmp_path / "clicks")
    broken = sorted((tmp_path / "clicks").rglob(f"event_date={DAY}/*.parquet"))[0]
    if damage == "cut short":
        broken.write_bytes(broken.read_bytes()[:100])
    else:  # a file the log still lists, gone (a bad copy, another tool's vacuum)
        broken.unlink()

    code = run("features", "--date", DAY, *settings, "--set", f"tables.clicks={tmp_path}/clicks",
               "--set", f"tables.features={tmp_path}/features", "--set", f"storage.backend={backend}")  # fmt: skip

    assert code == ExitCode.INPUT
    line = last_error(caplog)
    assert "UnreadableFile" in line and broken.name in line and "\n" not in line
    assert not (tmp_path / "features").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_maintenance_vacuums_every_other_table_when_one_fails_and_exits_with_its_code(
    tiny, tmp_path, caplog, backend
):
    import shutil

    root, _, _, _, settings = tiny
    shutil.copytree(root, tmp_path / "tables")
    settings = [s.replace(str(root), str(tmp_path / "tables")) for s in settings]
    (commit,) = (tmp_path / "tables" / "orders" / "_delta_log").glob("*.json")
    commit.write_bytes(commit.read_bytes()[:50])  # the orders table's only commit, cut short
    orphan = plant_uncommitted_file(tmp_path / "tables" / "features", age_hours=72)

    code = run("maintenance", *settings, "--retention-hours", "48", "--set", f"storage.backend={backend}")

    assert code == ExitCode.INPUT
    error = last_error(caplog)
    assert str(tmp_path / "tables" / "orders") in error and DAMAGED_LOG_ADVICE in error, error
    if backend == "delta-spark":  # Spark names the file; delta-rs only the table
        assert f"{commit.name}, a file of the table's Delta log" in error
    assert any(r.getMessage().startswith("transactions: not vacuumed") for r in caplog.records)
    assert not orphan.exists()  # the features table was vacuumed all the same


# --------------------------------------------------------------------------- models


def test_scoring_refuses_a_model_without_metadata_and_never_falls_back(pipeline, tmp_path, caplog):
    import shutil

    tables = pipeline.copy(tmp_path / "tables")
    (old,) = [p for p in (tables.root / "models").iterdir()]
    newer = tables.root / "models" / "29991231T000000Z-autoencoder-newest"
    shutil.copytree(old, newer)
    (newer / "metadata.json").unlink()
    scores_version = tables.table("scores").version()

    for pinned in ([], ["--model-version", newer.name]):
        assert run("score", "--date", DAY, *tables.settings, *pinned) == ExitCode.INPUT
        assert f"model folder {newer} has no metadata.json" in last_error(caplog)
    assert tables.table("scores").version() == scores_version

    listed = submit("models", *tables.settings, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert f"{newer.name}  UNUSABLE" in listed.stdout
    assert re.search(
        rf"{old.name}  mode autoencoder  trained for {DAY}  alert >= \S+  block >= ", listed.stdout
    )


# --------------------------------------------------------------------------- arguments, before any JVM


@pytest.mark.parametrize("job", JOBS)
def test_every_job_answers_help_without_spark(job):
    result = submit(job, "--help", timeout=60, env={"JAVA_HOME": "/no/java/here"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: submit.sh {job}") and "--log-file" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchjob"], "unknown job 'nosuchjob'"),
        (["score", "--date", DAY, "--set", "model.epocs=3"], "model.epocs: Extra inputs are not permitted"),
        (
            ["score", "--date", DAY, "--set", "model.epochs=many"],
            "model.epochs: Input should be a valid integer",
        ),
        (["score", "--date", DAY, "--conf-file", "/no/such.yml"], "--conf-file /no/such.yml: no such file"),
        (["score", "--date", DAY, "--profile", "staging"], "unknown profile 'staging'"),
        (["score", "--date", "yesterday"], "'yesterday' is not a date"),
        (["score"], "the following arguments are required: --date"),
    ],
)
def test_bad_arguments_exit_2_before_a_jvm_starts(args, message):
    result = submit(*args, timeout=60, env={"JAVA_HOME": "/no/java/here"})  # spark-submit would fail on it
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert message in result.stderr


def test_no_job_imports_keras_scikit_learn_or_matplotlib_before_its_session_starts():
    """The jobs import their heavy libraries in the background while the session starts (spark_job's preload:
    Keras ~5 s for train; scikit-learn and matplotlib ~1.3 s for evaluate, nightly and summary). An import
    when the job module loads would put that time back in front of the JVM, and every night would pay
    TensorFlow's, also the nights that do not train."""
    jobs = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")
    heavy = ("tensorflow", "keras", "sklearn", "matplotlib", "pyod")
    probe = (f"import sys, importlib\nfor job in {jobs!r}: importlib.import_module('jobs.' + job)\n"
             f"print(sorted(m for m in {heavy!r} if m in sys.modules))")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert len(jobs) >= 9 and result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- progress and exit codes


def test_a_long_stage_reports_its_progress(spark, caplog):
    def slow(batches):
        for batch in batches:
            time.sleep(2)
            yield batch

    progress = StageProgress(spark, interval=0.5)
    with caplog.at_level(logging.INFO, logger="shopguard"):
        progress.start()
        spark.range(2, numPartitions=2).mapInPandas(slow, "id long").collect()
        progress.stop()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage ")]
    assert lines and re.match(r"stage \d+ \(collect\): \d/2 tasks done, \d running", lines[0])


def test_every_run_logs_its_start_and_its_end_with_duration_and_counts(pipeline):
    assert re.search(r"features started: run \w+, date " + DAY, pipeline.log)
    assert re.search(
        r"features succeeded in \d+\.\d s: clicks_read \d+, clicks_quarantined \d+", pipeline.log
    )
    assert re.search(r"score succeeded in \d+\.\d s: users \d+, pass \d+", pipeline.log)


SHUTDOWN_ABORT = """
import atexit, os, sys
sys.path.insert(0, {lib!r})
from shopguard.errors import InputError
from shopguard.runtime import main_entry

def main():
    atexit.register(os.abort)  # what a native library's destructor did here: exit 134 after a clean run
    if sys.argv[1] == "fail":
        raise InputError("no clicks table at /x")

main_entry(main)
"""


@pytest.mark.parametrize(("outcome", "code"), [("succeed", 0), ("fail", 3)])
def test_the_exit_code_is_the_jobs_whatever_happens_at_interpreter_shutdown(tmp_path, outcome, code):
    script = tmp_path / "job.py"
    script.write_text(SHUTDOWN_ABORT.format(lib=str(ROOT / "lib")))
    result = subprocess.run(
        [sys.executable, str(script), outcome], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code, result.stderr


# --------------------------------------------------------------------------- analysts


def test_the_documented_way_for_analysts_reads_one_row_per_user_after_reruns(pipeline, tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "analysts.md").read_text()
    duckdb_example = re.search(r"## SQL: DuckDB.*?```python\n(.*?)```", doc, re.S).group(1)
    scores = pipeline.root / "scores"
    files = list(scores.rglob("*.parquet"))
    assert len(files) > len(DeltaTable(str(scores)).file_uris())  # replaced files are still on disk

    namespace: dict = {}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "scores").symlink_to(scores)
    exec(
        duckdb_example.replace("action = 'block'", "action <> 'nothing'"), namespace
    )  # every user of the day

    blocked = namespace["blocked"]
    assert len(blocked) == blocked.user_id.nunique() == len(pipeline.table("scores").to_pandas())


# --------------------------------------------------------------------------- the evaluation report


def test_two_evaluations_of_one_date_keep_both_reports_and_say_what_limits_them(pipeline, tmp_path):
    tables = pipeline.copy(tmp_path / "tables")
    reports = tmp_path / "reports"
    common = [
        *tables.settings,
        "--set",
        f"evaluation.report_dir={reports}",
        "--set",
        "evaluation.baselines=false",
    ]
    assert run("evaluate", "--date", DAY, "--against", "truth", *common) == ExitCode.OK
    assert run("evaluate", "--date", DAY, "--against", "labels", *common) == ExitCode.OK

    pages = sorted(reports.glob(f"evaluation-{DAY}-*.html"), key=lambda p: p.stat().st_mtime)
    assert len(pages) == 2
    first, second = (p.read_text() for p in pages)
    for page in (first, second):
        assert "training data (it held none out" in page  # the pipeline's model held nobody out
        assert "ROC-AUC: the chance that a random anomalous user scores above a random normal one" in page
        assert "baseline:" not in page and "the baselines that ran: none" in page
    assert re.search(r"Only \d+ anomalous users are known among those evaluated \(fewer than 30\)", second)
