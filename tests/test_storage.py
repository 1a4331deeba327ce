from __future__ import annotations

import datetime as dt
import json
import os
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import plant_uncommitted_file, wait_for
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from shopguard.errors import ExitCode, classify
from shopguard.storage import (
    PAUSE_BEFORE_COMMIT,
    AnyOf,
    ConcurrentWriteError,
    SchemaMismatchError,
    StorageError,
    open_storage,
)

SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("at", T.TimestampType()),
        T.StructField("day", T.DateType()),
    ]
)
D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
AT = dt.datetime(2026, 11, 1, 12, 30)


def rows(spark, data):
    return spark.createDataFrame(data, SCHEMA)


def test_auto_backend_is_delta_spark_once_setup_has_fetched_the_jars(spark):
    from shopguard.config import StorageSettings
    from shopguard.deltajars import jars

    assert [j.name for j in jars(StorageSettings())] == [
        "io.delta_delta-spark_4.2_2.13-4.4.0.jar",
        "io.delta_delta-storage-4.4.0.jar",
    ]
    assert open_storage(spark, "auto").name == "delta-spark"
    assert open_storage(spark, "delta-rs").name == "delta-rs"


def test_write_creates_a_delta_table_any_reader_opens_with_partitions(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    df = rows(spark, [("a", 1.0, AT, D1), ("b", 2.0, AT, D2)])
    version = storage.write(df, path, mode="append", partition_by=["day"], commit_info={"job": "test"})

    assert version == 0
    table = DeltaTable(path)
    assert table.metadata().partition_columns == ["day"]
    by_rs = table.to_pandas().sort_values("user_id")
    assert by_rs["day"].tolist() == [D1, D2]
    assertDataFrameEqual(storage.read(path), df)


def test_read_prunes_partitions_and_reads_old_versions(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    storage.write(rows(spark, [("b", 2.0, AT, D2)]), path, mode="append", partition_by=["day"])

    assert [r.user_id for r in storage.read(path, where=[("day", "=", D2)]).collect()] == ["b"]
    assert [r.user_id for r in storage.read(path, where=[("day", "in", [D1])]).collect()] == ["a"]
    assert storage.read(path, version=0).count() == 1
    assert storage.read(path).count() == 2
    # a filter on another column keeps its rows (test_operations: and skips files by their statistics)
    assert [r.user_id for r in storage.read(path, where=[("user_id", "=", "a")]).collect()] == ["a"]
    assert [r.user_id for r in storage.read(path, where=[("score", ">", 1.5)]).collect()] == ["b"]
    with pytest.raises(ValueError, match="filter on 'colour': expected one of the table's columns"):
        storage.read(path, where=[("colour", "=", "red")])


def test_a_write_records_each_files_rows_and_ranges_so_any_reader_skips_files(spark, storage, tmp_path):
    """Delta's per-file statistics, which the delta-rs bridge reads from the files' Parquet footers: other
    readers (here delta-spark and delta-rs) skip the files whose range lies outside a filter, and count
    rows from the log alone."""
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1), ("b", 2.0, None, D1)]).coalesce(1), path, mode="append")
    storage.write(rows(spark, [("c", 7.0, AT, D2)]).coalesce(1), path, mode="append")

    actions = pa.table(DeltaTable(path).get_add_actions(flatten=True)).sort_by("num_records").to_pylist()
    assert [(a["num_records"], a["min.score"], a["max.score"], a["null_count.at"]) for a in actions] == [
        (1, 7.0, 7.0, 0),
        (2, 1.0, 2.0, 1),
    ]
    delta = spark.read.format("delta").load(path)
    assert len(delta.where("score > 5").inputFiles()) == 1
    assert len(delta.where("user_id = 'z'").inputFiles()) == 0
    assert "LocalTableScan" in delta.groupBy().count()._jdf.queryExecution().executedPlan().toString()
    assert [r.user_id for r in storage.read(path, where=[("score", ">", 5.0)]).collect()] == ["c"]


def test_the_bridge_records_the_statistics_delta_spark_records_but_where_they_would_be_inexact(
    spark, tmp_path
):
    """Every type the tables use, nested fields and nulls. The differences: where delta-spark's figure needs
    its own reader's rules (a float's NaN maximum, a long string's truncated maximum, a time's maximum
    truncated to the millisecond, which the bridge rounds up instead), and a list's nulls, which a Parquet
    footer counts together with its items' nulls. Past Delta's first 32 leaf columns (a partition column
    not among them), none."""
    schema = "id string, n int, big long, f double, at timestamp, local timestamp_ntz, day date, ok boolean, " \
             "long string, items array<int>, pair struct<a:string,b:int>"  # fmt: skip
    data = [
        ("u1", 3, 2**40, 1.5, dt.datetime(2026, 11, 22, 10, 0, 0, 123456), dt.datetime(2026, 11, 22, 10),
         D1, True, "x" * 40, [1, None], ("a", 1)),
        ("u2", None, -1, float("nan"), None, None, D2, None, None, None, None),
        ("u3", -7, 0, -2.0, AT, AT, D1, False, "short", [], ("b", None)),
    ]  # fmt: skip
    df = spark.createDataFrame(data, schema).select("*", *(F.lit(i).alias(f"c{i}") for i in range(25)))
    df = df.withColumn("part", F.lit("p")).coalesce(1)
    found = {}
    for backend in ("delta-spark", "delta-rs"):
        open_storage(spark, backend).write(
            df, str(tmp_path / backend), mode="overwrite", partition_by=["part"]
        )
        (add,) = [a for a in _log_actions(tmp_path / backend) if "add" in a]
        found[backend] = json.loads(add["add"]["stats"])

    expected = found["delta-spark"]
    assert expected["maxValues"].pop("f") == "NaN"
    assert expected["maxValues"].pop("long").startswith("x" * 32)
    assert expected["maxValues"]["at"] == "2026-11-22T10:00:00.123Z"
    expected["maxValues"]["at"] = "2026-11-22T10:00:00.124Z"
    assert expected["nullCount"].pop("items") == 1
    assert found["delta-rs"] == expected
    assert "c19" in expected["nullCount"] and "c20" not in expected["nullCount"]  # 12 + 20 leaves


def test_a_nan_in_any_row_group_leaves_the_files_maximum_unknown(spark, tmp_path):
    """Spark's writer puts NaN in a row group's maximum; a file's maximum taken over its row groups must not
    drop it wherever that row group falls (the last one here), or a reader would skip rows `x > 5` keeps."""
    from shopguard.storage.file_statistics import delta_statistics

    df = spark.range(20_000).selectExpr(
        "CASE WHEN id < 19990 THEN CAST(id % 5 AS DOUBLE) ELSE DOUBLE('NaN') END AS x"
    )
    df.coalesce(1).write.option("parquet.block.size", 4096).parquet(str(tmp_path / "p"))
    (file,) = (tmp_path / "p").glob("*.parquet")
    footer = pq.read_metadata(file)

    assert footer.num_row_groups > 1
    stats = json.loads(delta_statistics(footer))
    assert stats["numRecords"] == 20_000 and stats["minValues"] == {"x": 0.0}
    assert "x" not in stats["maxValues"]


def _log_actions(table) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(table.glob("_delta_log/*.json"))
        for line in f.read_text().splitlines()
    ]


def test_a_read_keeps_the_null_partition_only_where_a_clause_asks_for_it(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1), ("b", 2.0, AT, None), ("c", 3.0, AT, D2)]), path,
                  mode="append", partition_by=["day"])  # fmt: skip
    or_undated = AnyOf(("day", ">=", D2), ("day", "is null", None))

    assert sorted(r.user_id for r in storage.read(path, where=[("day", ">=", D1)]).collect()) == ["a", "c"]
    assert sorted(r.user_id for r in storage.read(path, where=[or_undated]).collect()) == ["b", "c"]
    with pytest.raises(ValueError, match="plain predicates"):
        storage.write(rows(spark, [("d", 4.0, AT, D2)]), path, mode="overwrite", partition_by=["day"],
                      replace_where=[or_undated])  # fmt: skip
    assert storage.version(path) == 0


@pytest.mark.parametrize("feature", ["column mapping", "deletion vectors"])
def test_a_table_the_backend_would_misread_is_refused_by_name(spark, storage, tmp_path, feature):
    """Tables as Delta's own writer makes them upstream (here through the test session's Delta jars)."""
    path = str(tmp_path / "t")
    df = rows(spark, [("a", 1.0, AT, D1), ("b", 2.0, AT, D1)]).coalesce(1)
    writer = df.write.format("delta").partitionBy("day")
    if feature == "column mapping":  # what a renamed column needs
        writer.option("delta.columnMapping.mode", "name").save(path)
        spark.sql(f"ALTER TABLE delta.`{path}` RENAME COLUMN score TO points")
        expected = df.withColumnRenamed("score", "points")
    else:  # a DELETE that marks a row deleted instead of rewriting its file
        writer.option("delta.enableDeletionVectors", "true").save(path)
        spark.sql(f"DELETE FROM delta.`{path}` WHERE user_id = 'a'")
        expected = df.where("user_id = 'b'")
    version = DeltaTable(path).version()

    if storage.name == "delta-spark":
        assertDataFrameEqual(storage.read(path), expected)
    else:  # before: the column-mapped table read as nulls, and a write left it unreadable to delta-rs
        with pytest.raises(StorageError, match="use the delta-spark backend"):
            storage.read(path)
        if feature == "column mapping":
            with pytest.raises(StorageError, match="features columnMapping that .* when it writes"):
                storage.write(expected, path, mode="append", partition_by=["day"])
        assert DeltaTable(path).version() == version


@pytest.mark.parametrize("rule", ["CHECK", "NOT NULL"])
def test_a_write_that_would_break_a_tables_constraint_commits_nothing(spark, storage, tmp_path, rule):
    path = str(tmp_path / "t")
    if rule == "CHECK":
        storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
        spark.sql(f"ALTER TABLE delta.`{path}` ADD CONSTRAINT positive CHECK (score > 0)")
        bad, spark_says, rs_says = (
            ("z", -5.0, AT, D1),
            "CHECK constraint positive",
            "features checkConstraints that",
        )
    else:  # what a table made by DDL can declare
        spark.sql(f"CREATE TABLE delta.`{path}` (user_id STRING NOT NULL, score DOUBLE, at TIMESTAMP, day DATE) "
                  "USING delta PARTITIONED BY (day)")  # fmt: skip
        rows(spark, [("a", 1.0, AT, D1)]).write.format("delta").mode("append").save(path)
        bad, spark_says, rs_says = (
            (None, 1.0, AT, D1),
            "NOT NULL constraint violated",
            r"features NOT NULL \(user_id\) that",
        )

    # delta-spark checks each row (before: exit 1); delta-rs cannot, so refuses any write (before: it
    # committed the row, and after the null, delta-spark failed to read the table)
    with pytest.raises(
        StorageError, match=spark_says if storage.name == "delta-spark" else rs_says
    ) as refused:
        storage.write(rows(spark, [bad]), path, mode="append", partition_by=["day"])
    assert classify(refused.value)[0] == ExitCode.INPUT
    assert storage.version(path) == 1
    assert [r.user_id for r in storage.read(path).collect()] == ["a"]


def test_a_write_to_a_liquid_clustered_table_is_refused_by_name_on_delta_rs_not_called_a_conflict(
    spark, storage, tmp_path
):
    path = str(tmp_path / "t")
    spark.sql(f"CREATE TABLE delta.`{path}` (user_id STRING, score DOUBLE, at TIMESTAMP, day DATE) "
              "USING delta CLUSTER BY (day)")  # fmt: skip
    df = rows(spark, [("a", 1.0, AT, D1)])

    if storage.name == "delta-spark":
        assert storage.write(df, path, mode="append") == 1
        return
    with pytest.raises(StorageError, match="ClusteredTable.* Use the delta-spark backend") as refused:
        storage.write(df, path, mode="append")
    assert classify(refused.value)[0] == ExitCode.INPUT  # before: a conflict, exit 4, "rerun the job"
    assert storage.version(path) == 0
    assert not [p for p in (tmp_path / "t").rglob("*.parquet")]


def test_replacing_a_partition_is_one_commit_and_leaves_other_partitions(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(
        rows(spark, [("a", 1.0, AT, D1), ("b", 2.0, AT, D2)]), path, mode="append", partition_by=["day"]
    )
    for _ in range(2):  # a rerun replaces, never duplicates
        version = storage.write(
            rows(spark, [("a", 9.0, AT, D1), ("c", 3.0, AT, D1)]),
            path,
            mode="overwrite",
            partition_by=["day"],
            replace_where=[("day", "=", D1)],
            commit_info={"job": "rerun"},
        )
    assert version == 2
    assert [c.version for c in storage.history(path)] == [2, 1, 0]
    assert storage.history(path, limit=1)[0].info["job"] == "rerun"
    assertDataFrameEqual(
        storage.read(path), rows(spark, [("a", 9.0, AT, D1), ("c", 3.0, AT, D1), ("b", 2.0, AT, D2)])
    )


def test_partition_values_come_from_the_log_of_the_version_asked(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    storage.write(rows(spark, [("b", 2.0, AT, D2)]), path, mode="append", partition_by=["day"])
    storage.write(
        rows(spark, [("c", 3.0, AT, D2)]),
        path,
        mode="overwrite",
        partition_by=["day"],
        replace_where=[("day", "in", [D1, D2])],
    )

    assert storage.partition_values(path) == [{"day": "2026-11-02"}]
    assert storage.partition_values(path, version=1) == [{"day": "2026-11-01"}, {"day": "2026-11-02"}]


def test_rows_outside_the_replaced_partition_are_refused_and_nothing_is_committed(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    with pytest.raises(StorageError, match="outside the partitions replaced"):
        storage.write(
            rows(spark, [("b", 2.0, AT, D2)]),
            path,
            mode="overwrite",
            partition_by=["day"],
            replace_where=[("day", "=", D1)],
        )
    assert storage.version(path) == 0


def test_a_schema_mismatch_fails_before_any_file_is_written(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    files_before = sorted(p for p, _, _ in os.walk(path))
    wrong = spark.createDataFrame([("a", "high", D1)], "user_id string, score string, day date")
    with pytest.raises(SchemaMismatchError, match="'score' is string, the table has double"):
        storage.write(wrong, path, mode="append", partition_by=["day"])
    assert sorted(p for p, _, _ in os.walk(path)) == files_before
    assert storage.version(path) == 0


def test_an_empty_table_reads_back_with_its_schema(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, []), path, mode="append", partition_by=["day"])
    assert storage.read(path).count() == 0
    assert storage.read(path).schema.fieldNames() == SCHEMA.fieldNames()


def test_unpartitioned_overwrite_replaces_everything(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append")
    storage.write(rows(spark, [("b", 2.0, AT, D2)]), path, mode="overwrite")
    assert [r.user_id for r in storage.read(path).collect()] == ["b"]
    assert DeltaTable(path).version() == 1


def test_two_writers_replacing_a_new_partition_at_once_leave_one_write(spark, storage, tmp_path, monkeypatch):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(PAUSE_BEFORE_COMMIT, str(gate))
    outcomes: dict[str, BaseException | None] = {}

    def replace(user: str) -> None:
        try:
            storage.write(rows(spark, [(user, 2.0, AT, D2)]), path, mode="overwrite", partition_by=["day"],
                          replace_where=[("day", "=", D2)])  # fmt: skip
            outcomes[user] = None
        except BaseException as exc:  # noqa: BLE001 - the outcome is the test's subject
            outcomes[user] = exc

    threads = [threading.Thread(target=replace, args=(u,)) for u in ("x", "y")]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(list(gate.glob("*.ready"))) == 2, timeout=120)
    (gate / "go").touch()
    for thread in threads:
        thread.join(timeout=120)

    winners = [u for u, o in outcomes.items() if o is None]
    losers = [o for o in outcomes.values() if o is not None]
    assert len(winners) == 1 and len(losers) == 1 and isinstance(losers[0], ConcurrentWriteError)
    assert [r.user_id for r in storage.read(path, where=[("day", "=", D2)]).collect()] == winners
    assert storage.version(path) == 1


def test_vacuum_refuses_a_retention_that_could_delete_a_write_in_progress(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    with pytest.raises(StorageError, match="below the floor of 24 h"):
        storage.vacuum(path, retention_hours=1)
    assert storage.vacuum(path, retention_hours=24, dry_run=True) == []


def test_vacuum_deletes_an_uncommitted_file_only_once_older_than_the_retention_asked_for(
    spark, storage, tmp_path
):
    path = str(tmp_path / "t")
    df = rows(spark, [("a", 1.0, AT, D1)])
    storage.write(df, path, mode="append", partition_by=["day"])
    orphan = plant_uncommitted_file(path, age_hours=72)

    def doomed(hours: int) -> list[str]:
        return [os.path.basename(p) for p in storage.vacuum(path, retention_hours=hours, dry_run=True)]

    assert doomed(168) == []  # younger than a week
    assert doomed(48) == [orphan.name]  # older than two days: Delta's own 7-day default must not win
    storage.vacuum(path, retention_hours=48)
    assert not orphan.exists()
    assertDataFrameEqual(storage.read(path), df)


@pytest.mark.parametrize("damage", ["a commit cut short", "a commit emptied", "a commit missing"])
def test_a_damaged_log_is_an_unreadable_input_naming_the_table_not_an_unexpected_failure(
    spark, storage, tmp_path, damage
):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    # other writers' commits (this session has not read them), then one damaged: a full disk, a bad copy
    for day in (D1, D2):
        write_deltalake(
            path, rows(spark, [("b", 2.0, AT, day)]).toArrow(), mode="append", partition_by=["day"]
        )
    commit = tmp_path / "t" / "_delta_log" / "00000000000000000001.json"
    if damage == "a commit cut short":
        commit.write_bytes(commit.read_bytes()[:50])
    elif damage == "a commit emptied":  # Delta and delta-rs alone read it as a commit without rows
        commit.write_bytes(b"")
    else:
        commit.unlink()

    for ask in (lambda: storage.version(path), lambda: storage.read(path).count()):
        with pytest.raises(Exception) as raised:
            ask()
        code, line = classify(raised.value)
        assert code == ExitCode.INPUT, line
        assert path in line and "Delta log" in line and "damaged" in line, line


def test_partition_values_with_characters_hive_escapes_read_back(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    schema = "user_id string, name string"
    df = spark.createDataFrame([("a", "baseline:forest"), ("b", "a/b c%d")], schema)
    storage.write(df, path, mode="append", partition_by=["name"])
    assertDataFrameEqual(storage.read(path), df)
    assert [r.user_id for r in storage.read(path, where=[("name", "=", "baseline:forest")]).collect()] == [
        "a"
    ]


def test_a_write_returns_its_own_version_when_another_writer_committed_while_it_wrote(
    spark, storage, tmp_path, monkeypatch
):
    path = str(tmp_path / "t")
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(PAUSE_BEFORE_COMMIT, str(gate))
    got: list[int] = []
    ours = threading.Thread(target=lambda: got.append(storage.write(
        rows(spark, [("b", 2.0, AT, D2)]), path, mode="append", partition_by=["day"], commit_info={"job": "ours"}
    )))  # fmt: skip
    ours.start()
    wait_for(lambda: any(gate.glob("*.ready")), timeout=120)
    # another writer, outside Spark, appends while ours is held
    write_deltalake(path, rows(spark, [("c", 3.0, AT, D1)]).toArrow(), mode="append", partition_by=["day"])
    (gate / "go").touch()
    ours.join(timeout=120)

    assert got == [2]  # not 1, the version after the one this write started from: that one is the other's
    assert storage.history(path, limit=1)[0].info["job"] == "ours"


@pytest.mark.parametrize("first", ["delta-spark", "delta-rs"])
def test_a_table_written_through_one_backend_is_read_appended_and_overwritten_through_the_other(
    spark, tmp_path, first
):
    path = str(tmp_path / "t")
    writer = open_storage(spark, first)
    other = open_storage(spark, "delta-rs" if first == "delta-spark" else "delta-spark")
    writer.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])

    assertDataFrameEqual(other.read(path), rows(spark, [("a", 1.0, AT, D1)]))
    other.write(
        rows(spark, [("b", 2.0, AT, D2)]), path, mode="append", partition_by=["day"], commit_info={"job": "x"}
    )
    other.write(rows(spark, [("c", 3.0, AT, D1)]), path, mode="overwrite", partition_by=["day"],
                replace_where=[("day", "=", D1)])  # fmt: skip

    expected = rows(spark, [("c", 3.0, AT, D1), ("b", 2.0, AT, D2)])
    for reader in (writer, other):
        assertDataFrameEqual(reader.read(path), expected)
        assert [c.version for c in reader.history(path)] == [2, 1, 0]
        assert reader.history(path)[1].info["job"] == "x"
        assert reader.partition_values(path) == [{"day": "2026-11-01"}, {"day": "2026-11-02"}]
    assert DeltaTable(path).version() == 2


def test_version_is_the_latest_commit_whoever_made_it_and_a_missing_table_is_an_error(
    spark, storage, tmp_path
):
    path = str(tmp_path / "t")
    for ask in (storage.version, storage.read):
        with pytest.raises(StorageError, match="no Delta table"):
            ask(path)
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    assert storage.version(path) == 0
    # another writer commits behind this session's back (delta-rs, outside Spark): the next ask sees it
    write_deltalake(path, rows(spark, [("b", 2.0, AT, D2)]).toArrow(), mode="append")
    assert storage.version(path) == 1 == DeltaTable(path).version()


def test_a_write_after_a_preload_keeps_what_another_writer_committed_since(spark, storage, tmp_path):
    path = str(tmp_path / "t")
    assert storage.preload(path) is None  # no table yet: nothing to load, no error
    storage.write(rows(spark, [("a", 1.0, AT, D1)]), path, mode="append", partition_by=["day"])
    assert storage.preload(path) == (0 if storage.name == "delta-spark" else None)
    # another writer commits after the preload, before our write
    write_deltalake(path, rows(spark, [("b", 2.0, AT, D2)]).toArrow(), mode="append", partition_by=["day"])
    storage.write(rows(spark, [("c", 3.0, AT, D1)]), path, mode="overwrite", partition_by=["day"],
                  replace_where=[("day", "=", D1)])  # fmt: skip

    assertDataFrameEqual(storage.read(path), rows(spark, [("c", 3.0, AT, D1), ("b", 2.0, AT, D2)]))
    assert storage.version(path) == 2
