"""Delta tables, read and written two ways behind one small interface.

* `DeltaSparkStorage`: delta-spark, when the Delta jars are on Spark's classpath: the normal path, on
  clusters and locally once `./submit.sh setup` has fetched the jars (shopguard.deltajars).
* `DeltaRsStorage`: the fallback where the jars are absent. Spark writes and reads the Parquet files in
  parallel; delta-rs (`deltalake`) keeps the Delta log: the list of files of each version and the atomic
  commit that adds and removes them.

Both pass the same tests, and a table written through one is read, appended to and overwritten through the
other.

Either way the result is a genuine Delta table. Layout of a delta-rs write::

    <table>/w-<utc time>-<id>/<partition>=<value>/part-....parquet

Each write lands in a folder of its own, so Spark's committers of two concurrent writes never share a
`_temporary` folder and files of an unfinished write never mix with committed ones; files that no commit
references (a crashed run, a replaced partition) are removed by `vacuum` once older than the retention.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

log = logging.getLogger(__name__)

Predicate = tuple[str, str, Any]
"""(partition column, operator, value): operators =, !=, <, <=, >, >=, in, not in."""

WriteMode = Literal["append", "overwrite"]

_OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in")

# No job runs this long: files younger than this may belong to a write that has not committed yet.
VACUUM_FLOOR_HOURS = 24


class StorageError(RuntimeError):
    """A Delta table could not be read or written as asked."""


class SchemaMismatchError(StorageError):
    """The rows to write do not have the table's schema; nothing was written."""


class ConcurrentWriteError(StorageError):
    """Another writer committed a conflicting change first; nothing of this write was committed."""


@dataclass(frozen=True)
class Commit:
    """One version of a table as its history records it."""

    version: int
    timestamp: datetime
    operation: str
    info: dict[str, Any]


class DeltaStorage(ABC):
    """How jobs read and write Delta tables; pick one with `open_storage`."""

    name: str

    def __init__(self, spark: SparkSession, storage_options: dict[str, str] | None = None) -> None:
        self.spark = spark
        self.storage_options = dict(storage_options or {})

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def version(self, path: str) -> int:
        """Latest version; raises StorageError when there is no table at `path`."""

    @abstractmethod
    def read(self, path: str, *, version: int | None = None, where: Sequence[Predicate] = ()) -> DataFrame:
        """Rows of the table (at `version`), partition columns included; `where` prunes partitions."""

    @abstractmethod
    def partition_values(self, path: str, *, version: int | None = None) -> list[dict[str, str | None]]:
        """The table's partitions (at `version`), values spelt as the Delta log holds them (strings).
        Lets a job pick snapshots without scanning data."""

    @abstractmethod
    def write(
        self,
        df: DataFrame,
        path: str,
        *,
        mode: WriteMode,
        partition_by: Sequence[str] = (),
        replace_where: Sequence[Predicate] | None = None,
        commit_info: dict[str, Any] | None = None,
    ) -> int:
        """Write `df` in one commit and return the new version.

        mode="append" adds rows; mode="overwrite" replaces the whole table, or with `replace_where` only the
        partitions it selects (rows of `df` outside them are refused, nothing is committed).
        """

    @abstractmethod
    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        """Newest first."""

    @abstractmethod
    def vacuum(self, path: str, *, retention_hours: int, dry_run: bool = False) -> list[str]:
        """Delete files that no version within the retention references, committed or never committed
        (a crashed write), once older than the retention; returns them. Refuses a retention below
        VACUUM_FLOOR_HOURS, so a write still in progress never loses its files."""

    @abstractmethod
    def schema(self, path: str) -> T.StructType: ...

    @abstractmethod
    def partition_columns(self, path: str) -> list[str]: ...

    def _version_of(self, path: str, write_id: str) -> int:
        """The version a write committed, found by its id in the history (others may have committed since)."""
        for commit in self.history(path, limit=50):
            if commit.info.get("write_id") == write_id:
                return commit.version
        raise StorageError(f"commit of write {write_id} not found in the history of {path}")

    def check_schema(self, df: DataFrame, path: str, partition_by: Sequence[str] = ()) -> None:
        """Raise SchemaMismatchError when `df` cannot be written to the table at `path` (if there is one).
        Every write calls it before Spark writes a single file; jobs call it before their first write."""
        if not self.exists(path):
            return
        problems = _same_schema(df.schema, self.schema(path))
        have = self.partition_columns(path)
        if have != list(partition_by):
            problems.append(f"the table is partitioned by {have}, the write by {list(partition_by)}")
        if problems:
            raise SchemaMismatchError(f"cannot write to {path}: " + "; ".join(problems))


# --------------------------------------------------------------------------- helpers shared by both


def _check_predicates(where: Sequence[Predicate], partition_columns: Sequence[str]) -> None:
    for column, op, _ in where:
        if op not in _OPERATORS:
            raise ValueError(
                f"unsupported operator {op!r} in {column!r} filter; expected one of {_OPERATORS}"
            )
        if column not in partition_columns:
            raise ValueError(
                f"filter on {column!r}: only partition columns {list(partition_columns)} can prune a read"
            )


def _predicate_column(column: str, op: str, value: Any) -> Column:
    col = F.col(column)
    if op == "in":
        return col.isin(list(value))
    if op == "not in":
        return ~col.isin(list(value))
    return {
        "=": col == value,
        "!=": col != value,
        "<": col < value,
        "<=": col <= value,
        ">": col > value,
        ">=": col >= value,
    }[op]


def _partition_literal(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _check_write(df: DataFrame, mode: str, partition_by: Sequence[str] | str, replace_where) -> list[str]:
    partition_by = [partition_by] if isinstance(partition_by, str) else list(partition_by)
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    missing = [c for c in partition_by if c not in df.columns]
    if missing:
        raise ValueError(f"partition columns {missing} are not among the columns {df.columns}")
    if replace_where is not None:
        if mode != "overwrite":
            raise ValueError("replace_where needs mode='overwrite'")
        if not replace_where:
            raise ValueError("replace_where is empty; to replace the whole table, leave it None")
        _check_predicates(replace_where, partition_by)
    return partition_by


def _check_retention(retention_hours: int) -> None:
    if retention_hours < VACUUM_FLOOR_HOURS:
        raise StorageError(
            f"vacuum retention {retention_hours} h is below the floor of {VACUUM_FLOOR_HOURS} h: files that "
            "young may belong to a write still in progress"
        )


def _replace_id(replace_where: Sequence[Predicate]) -> str:
    return "shopguard replace " + " AND ".join(sorted(_predicate_sql(p) for p in replace_where))


PAUSE_BEFORE_COMMIT = "SHOPGUARD_PAUSE_BEFORE_COMMIT"


def _pause_before_commit(write_id: str) -> None:
    """Fault-injection point for crash and concurrency drills, off unless the variable names a folder.

    The writer announces `<folder>/<write_id>.ready` with its files written and uncommitted, then waits for
    `<folder>/go`: a drill can kill it there, or release several writers at once."""
    gate = os.environ.get(PAUSE_BEFORE_COMMIT)
    if not gate:
        return
    Path(gate, f"{write_id}.ready").touch()
    deadline = time.monotonic() + 600
    while not Path(gate, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _predicate_sql(predicate: Predicate) -> str:
    column, op, value = predicate
    if op in ("in", "not in"):
        values = ", ".join(f"'{_partition_literal(v)}'" for v in value)
        return f"`{column}` {op.upper()} ({values})"
    return f"`{column}` {op} '{_partition_literal(value)}'"


def _matches(values: dict[str, str | None], predicates: Sequence[Predicate]) -> bool:
    """Partition values as the Delta log holds them (strings) against predicates. Compared as strings,
    which orders ISO dates and names correctly: the partition columns shopguard writes."""
    for column, op, value in predicates:
        have = values.get(column)
        if op in ("in", "not in"):
            if (have in {_partition_literal(v) for v in value}) != (op == "in"):
                return False
            continue
        want = _partition_literal(value)
        if have is None:
            return False
        ok = {
            "=": have == want,
            "!=": have != want,
            "<": have < want,
            "<=": have <= want,
            ">": have > want,
            ">=": have >= want,
        }[op]
        if not ok:
            return False
    return True


def _same_schema(actual: T.StructType, expected: T.StructType) -> list[str]:
    """Differences by column name and type (nullability and order aside)."""
    problems = []
    have = {f.name: f.dataType for f in actual.fields}
    want = {f.name: f.dataType for f in expected.fields}
    for name, dtype in want.items():
        if name not in have:
            problems.append(f"missing column {name!r} ({dtype.simpleString()})")
        elif have[name] != dtype:
            problems.append(
                f"column {name!r} is {have[name].simpleString()}, the table has {dtype.simpleString()}"
            )
    for name in have:
        if name not in want:
            problems.append(f"column {name!r} is not in the table")
    return problems


def _commit_json(commit_info: dict[str, Any] | None, write_id: str) -> str:
    return json.dumps({**(commit_info or {}), "write_id": write_id}, default=str, sort_keys=True)


# --------------------------------------------------------------------------- delta-spark


class DeltaSparkStorage(DeltaStorage):
    """delta-spark on the JVM: Delta's own writer, conflict detection, history and vacuum. Needs the Delta jars
    on Spark's classpath and Delta's SQL extension (shopguard.deltajars puts both there)."""

    name = "delta-spark"

    def _table(self, path: str):
        from delta.tables import DeltaTable

        if not self.exists(path):
            raise StorageError(f"no Delta table at {path}")
        return DeltaTable.forPath(self.spark, path)

    def exists(self, path: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, path))

    def version(self, path: str) -> int:
        return int(self._table(path).history(1).collect()[0]["version"])

    def schema(self, path: str) -> T.StructType:
        return self._table(path).toDF().schema

    def partition_columns(self, path: str) -> list[str]:
        return list(self._table(path).detail().first()["partitionColumns"])

    def read(self, path: str, *, version: int | None = None, where: Sequence[Predicate] = ()) -> DataFrame:
        _check_predicates(where, self.partition_columns(path) if where else [])
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.load(path)
        for column, op, value in where:
            df = df.where(_predicate_column(column, op, value))
        return df

    def partition_values(self, path: str, *, version: int | None = None) -> list[dict[str, str | None]]:
        columns = self.partition_columns(path)
        if not columns:
            return []
        distinct = self.read(path, version=version).select(
            *[F.col(c).cast("string").alias(c) for c in columns]
        )
        return sorted((row.asDict() for row in distinct.distinct().collect()), key=str)

    def write(self, df, path, *, mode, partition_by=(), replace_where=None, commit_info=None) -> int:
        partition_by = _check_write(df, mode, partition_by, replace_where)
        write_id = uuid.uuid4().hex
        self.check_schema(df, path, partition_by)
        if self.exists(path):
            df = df.select(*self.schema(path).fieldNames())
        writer = (
            _held_before_commit(df, write_id)
            .write.format("delta")
            .mode(mode)
            .option("userMetadata", _commit_json(commit_info, write_id))
        )
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace_where is not None:
            writer = writer.option("replaceWhere", " AND ".join(_predicate_sql(p) for p in replace_where))
        before = self.version(path) if self.exists(path) else None
        try:
            writer.save(path)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if "Concurrent" in type(exc).__name__ or "DELTA_CONCURRENT" in text:
                raise ConcurrentWriteError(
                    f"another job committed a conflicting change to {path} first; this write ({write_id}) was "
                    f"not committed and the table is unchanged by it. Rerun the job. ({text.splitlines()[0]})"
                ) from exc
            if "DELTA_REPLACE_WHERE_MISMATCH" in text:
                replaced = " AND ".join(_predicate_sql(p) for p in replace_where or [])
                raise StorageError(
                    f"rows outside the partitions replaced ({replaced}); nothing was committed"
                ) from exc
            raise
        if (
            before is not None and self.version(path) == before
        ):  # nothing to add or remove: Delta commits nothing
            return before
        return self._version_of(path, write_id)

    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        table = self._table(path)
        rows = (table.history(limit) if limit else table.history()).collect()
        commits = []
        for r in rows:
            try:
                info = json.loads(r["userMetadata"]) if r["userMetadata"] else {}
            except json.JSONDecodeError:
                info = {"userMetadata": r["userMetadata"]}
            timestamp = (
                r["timestamp"].replace(tzinfo=UTC) if r["timestamp"].tzinfo is None else r["timestamp"]
            )
            commits.append(Commit(int(r["version"]), timestamp, str(r["operation"]), info))
        return commits

    def vacuum(self, path: str, *, retention_hours: int, dry_run: bool = False) -> list[str]:
        """Delta's VACUUM: it also deletes files no commit ever referenced (a crashed write)."""
        _check_retention(retention_hours)
        self._table(path)
        statement = f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS"
        doomed = [str(r[0]) for r in self.spark.sql(f"{statement} DRY RUN").collect()]
        if not dry_run and doomed:
            self.spark.sql(statement).collect()
        return doomed


def _held_before_commit(df: DataFrame, write_id: str) -> DataFrame:
    """The delta-spark side of `_pause_before_commit`. Delta's writer commits inside `save`, so the drill
    splits the rows in two tasks: the first writes its file, the second announces `<write_id>.ready` and
    waits for `<folder>/go`. A kill there leaves written, uncommitted files, as a crash would; writers
    released together commit at the same moment. Off, and `df` unchanged, unless the variable names a folder."""
    gate = os.environ.get(PAUSE_BEFORE_COMMIT)
    if not gate:
        return df

    def hold(batches):
        from pyspark import TaskContext

        if TaskContext.get().partitionId() == 0:
            yield from batches
            return
        time.sleep(1.0)  # the first task's file is written by now
        Path(gate, f"{write_id}.ready").touch()
        deadline = time.monotonic() + 600
        while not Path(gate, "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield from batches

    return df.repartition(2).mapInPandas(hold, df.schema)


# --------------------------------------------------------------------------- Spark + delta-rs


def _rs_uri(path: str) -> str:
    """delta-rs and pyarrow spell S3 `s3://`; Hadoop's connector is `s3a://`."""
    return "s3://" + path[len("s3a://") :] if path.startswith("s3a://") else path


def _spark_uri(uri: str) -> str:
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def _file_for_spark(table_uri: str, relative: str) -> str:
    """A data file as Spark's Hadoop paths need it: a local file as a plain path (taken literally), a
    remote one as a URI with any literal '%' encoded (Hadoop decodes URIs)."""
    if "://" in relative:  # absolute paths are allowed in the log (e.g. shallow clones)
        return _spark_uri(relative)
    if table_uri.startswith("file://"):
        return f"{table_uri[len('file://') :].rstrip('/')}/{relative}"
    return _spark_uri(f"{table_uri.rstrip('/')}/{relative.replace('%', '%25')}")


class DeltaRsStorage(DeltaStorage):
    """Spark moves the data; delta-rs keeps the log. Works with no JVM Delta at all."""

    name = "delta-rs"

    def _table(self, path: str, version: int | None = None):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(_rs_uri(path), version=version, storage_options=self.storage_options or None)
        except TableNotFoundError as exc:
            raise StorageError(f"no Delta table at {path}") from exc

    def exists(self, path: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(_rs_uri(path), storage_options=self.storage_options or None)

    def version(self, path: str) -> int:
        return self._table(path).version()

    def _spark_schema(self, table) -> T.StructType:
        return from_arrow_schema(pa.schema(table.schema().to_arrow()))

    def schema(self, path: str) -> T.StructType:
        return self._spark_schema(self._table(path))

    def partition_columns(self, path: str) -> list[str]:
        return list(self._table(path).metadata().partition_columns)

    def read(self, path: str, *, version: int | None = None, where: Sequence[Predicate] = ()) -> DataFrame:
        table = self._table(path, version)
        unsupported = set(table.protocol().reader_features or []) - {"timestampNtz"}
        if unsupported:
            raise StorageError(
                f"{path} uses Delta reader features {sorted(unsupported)} that the delta-rs backend does not "
                "read through Spark; use the delta-spark backend (storage.backend: delta-spark)"
            )
        schema = self._spark_schema(table)
        partition_columns = list(table.metadata().partition_columns)
        _check_predicates(where, partition_columns)

        actions = pa.table(table.get_add_actions(flatten=True))
        for column, op, value in where:
            actions = actions.filter(_arrow_predicate(actions[f"partition.{column}"], op, value))
        if actions.num_rows == 0:
            return self.spark.createDataFrame([], schema)

        # The log holds URI-encoded paths; the names on disk are their decoded form (Hive escapes a ':' in a
        # partition value as '%3A' on disk, which the log writes '%253A').
        paths = [unquote(p) for p in actions["path"].to_pylist()]
        uris = [_file_for_spark(table.table_uri, p) for p in paths]
        data_schema = T.StructType([f for f in schema.fields if f.name not in partition_columns])
        data = self.spark.read.schema(data_schema).parquet(*uris)
        if not partition_columns:
            return data

        # Partition values live in the Delta log, not in the files: join them back by the file's path, in one
        # scan whatever the folder layout (delta-spark, delta-rs and this writer lay files out differently).
        # The key is the path's last segments (one per partition column, plus the file name), which Spark and
        # delta-rs spell alike, unlike the URI scheme in front of them.
        depth = len(partition_columns) + 1
        keys = ["/".join(p.split("/")[-depth:]) for p in paths]
        if len(set(keys)) != len(keys):
            raise StorageError(
                f"{path}: file paths repeat in their last {depth} segments; use the delta-spark backend"
            )
        partition_values = pa.table(
            {"_key": keys, **{c: actions[f"partition.{c}"] for c in partition_columns}}
        )
        partition_schema = T.StructType(
            [T.StructField("_key", T.StringType())] + [schema[c] for c in partition_columns]
        )
        values_df = self.spark.createDataFrame(partition_values.to_pandas(), partition_schema)
        key = F.expr(
            f"array_join(slice(split(url_decode(_metadata.file_path), '/'), -{depth}, {depth}), '/')"
        )
        joined = data.withColumn("_key", key).join(F.broadcast(values_df), on="_key", how="inner")
        return joined.select(*schema.fieldNames())

    def partition_values(self, path: str, *, version: int | None = None) -> list[dict[str, str | None]]:
        table = self._table(path, version)
        columns = list(table.metadata().partition_columns)
        if not columns:
            return []
        actions = pa.table(table.get_add_actions(flatten=True))
        found = zip(*(actions[f"partition.{c}"].to_pylist() for c in columns), strict=True)
        return [
            {c: None if v is None else _partition_literal(v) for c, v in zip(columns, values, strict=True)}
            for values in sorted(set(found), key=str)
        ]

    def write(self, df, path, *, mode, partition_by=(), replace_where=None, commit_info=None) -> int:
        from deltalake import Schema
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties, Transaction, create_table_with_add_actions

        partition_by = _check_write(df, mode, partition_by, replace_where)

        exists = self.exists(path)
        if exists:
            self.check_schema(df, path, partition_by)
            df = df.select(*self.schema(path).fieldNames())  # the table's column order

        write_id = f"w-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        write_dir = f"{path.rstrip('/')}/{write_id}"
        writer = df.write.mode("errorifexists")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(write_dir)

        files = self._list_files(write_dir)
        actions = []
        for file_path, size, modified in files:
            relative = file_path[len(path.rstrip("/")) + 1 :]
            values = _partition_values_from_path(relative)
            if set(values) != set(partition_by):
                raise StorageError(f"written file {file_path} is not in folders of partitions {partition_by}")
            actions.append((relative, size, modified, {c: values[c] for c in partition_by}))

        if replace_where is not None:
            stray = sorted(
                {tuple(sorted(a[3].items())) for a in actions if not _matches(a[3], replace_where)}
            )
            if stray:
                self._delete(write_dir)
                raise StorageError(
                    f"rows in partitions {[dict(p) for p in stray][:5]}, outside the partitions replaced "
                    f"({' AND '.join(_predicate_sql(p) for p in replace_where)}); nothing was committed"
                )

        add_actions = [_add_action(*a) for a in actions]
        arrow_schema = _nullable(to_arrow_schema(df.schema, timezone="UTC"))
        properties = CommitProperties(
            custom_metadata={"userMetadata": _commit_json(commit_info, write_id)},
            # Two writers replacing the same partitions share an application id, so Delta's conflict check
            # fails the later one even when the partitions were empty (nothing to remove, nothing to clash).
            app_transactions=[Transaction(app_id=_replace_id(replace_where), version=time.time_ns())]
            if replace_where is not None
            else None,
        )
        table = self._table(path) if exists else None  # the version this write commits against
        _pause_before_commit(write_id)
        try:
            if table is None:
                try:
                    create_table_with_add_actions(
                        _rs_uri(path),
                        Schema.from_arrow(arrow_schema),
                        add_actions,
                        mode="error",
                        partition_by=partition_by or None,
                        storage_options=self.storage_options or None,
                        commit_properties=properties,
                    )
                    return self._version_of(path, write_id)
                except Exception:
                    if not self.exists(path):
                        raise
                    # Another writer created the table meanwhile: commit as an ordinary write on top of it.
                    table = self._table(path)
            filters = None
            if replace_where is not None:
                filters = [
                    (
                        c,
                        op,
                        [_partition_literal(v) for v in value]
                        if op in ("in", "not in")
                        else _partition_literal(value),
                    )
                    for c, op, value in replace_where
                ]
            table.create_write_transaction(
                add_actions,
                mode,
                arrow_schema,
                partition_by=partition_by or None,
                partition_filters=filters,
                commit_properties=properties,
            )
        except CommitFailedError as exc:
            self._delete(write_dir)
            raise ConcurrentWriteError(
                f"another job committed a conflicting change to {path} first; this write ({write_id}) was "
                f"not committed and the table is unchanged by it. Rerun the job. ({exc})"
            ) from exc
        return self._version_of(path, write_id)

    def _hadoop_fs(self, path: str):
        jvm = self.spark.sparkContext._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        return hadoop_path, hadoop_path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())

    def _list_files(self, directory: str) -> list[tuple[str, int, int]]:
        """(path as written under the table, size, modification time ms) of each Parquet file."""
        hadoop_path, fs = self._hadoop_fs(directory)
        qualified_root = fs.makeQualified(hadoop_path).toString()
        found = []
        iterator = fs.listFiles(hadoop_path, True)
        while iterator.hasNext():
            status = iterator.next()
            name = status.getPath().getName()
            if name.startswith(("_", ".")) or not name.endswith(".parquet"):
                continue
            qualified = status.getPath().toString()
            relative = qualified[len(qualified_root) :].lstrip("/")
            found.append(
                (f"{directory.rstrip('/')}/{relative}", status.getLen(), status.getModificationTime())
            )
        return found

    def _delete(self, directory: str) -> None:
        try:
            hadoop_path, fs = self._hadoop_fs(directory)
            fs.delete(hadoop_path, True)
        except Exception:  # best effort: vacuum removes what is left
            log.warning("could not remove uncommitted files under %s; vacuum will", directory)

    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        commits = []
        for entry in self._table(path).history(limit):
            raw = entry.get("userMetadata")
            try:
                info = json.loads(raw) if isinstance(raw, str) else {}
            except json.JSONDecodeError:
                info = {"userMetadata": raw}
            commits.append(
                Commit(
                    version=int(entry["version"]),
                    timestamp=datetime.fromtimestamp(entry["timestamp"] / 1000, tz=UTC),
                    operation=str(entry.get("operation")),
                    info=info,
                )
            )
        return commits

    def vacuum(self, path: str, *, retention_hours: int, dry_run: bool = False) -> list[str]:
        _check_retention(retention_hours)
        # full: also files no commit ever referenced (a crashed write), once older than the retention
        removed = self._table(path).vacuum(
            retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
        )
        if not dry_run:
            self._remove_empty_write_dirs(path)
        return list(removed)

    def _remove_empty_write_dirs(self, path: str) -> None:
        hadoop_path, fs = self._hadoop_fs(path)
        for status in fs.listStatus(hadoop_path):
            if status.isDirectory() and status.getPath().getName().startswith("w-"):
                if not fs.listFiles(status.getPath(), True).hasNext():
                    fs.delete(status.getPath(), True)


def _add_action(relative: str, size: int, modified_ms: int, partition_values: dict[str, str | None]):
    from deltalake.transaction import AddAction

    return AddAction(relative, size, partition_values, modified_ms, True, None)


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_nullable(True) for field in schema])


def _partition_values_from_path(relative: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for segment in relative.split("/")[:-1]:
        if "=" in segment:
            key, raw = segment.split("=", 1)
            value = unquote(raw)
            values[unquote(key)] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    return values


def _arrow_predicate(column: pa.ChunkedArray, op: str, value: Any) -> pa.ChunkedArray:
    if op in ("in", "not in"):
        mask = pc.is_in(column, value_set=pa.array(list(value), type=column.type))
        return pc.invert(mask) if op == "not in" else mask
    scalar = pa.scalar(value, type=column.type)
    return {
        "=": pc.equal,
        "!=": pc.not_equal,
        "<": pc.less,
        "<=": pc.less_equal,
        ">": pc.greater,
        ">=": pc.greater_equal,
    }[op](column, scalar)


# --------------------------------------------------------------------------- choosing


def delta_jars_on_classpath(spark: SparkSession) -> bool:
    try:
        jvm = spark.sparkContext._jvm
        # spark.jars load through Spark's class loader, not the JVM's system one
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName("io.delta.tables.DeltaTable", False, loader)
        return True
    except Exception:
        return False


def open_storage(
    spark: SparkSession, backend: str = "auto", storage_options: dict[str, str] | None = None
) -> DeltaStorage:
    """delta-spark when asked or when its jars are there (auto); else Spark + delta-rs."""
    if backend not in ("auto", "delta-spark", "delta-rs"):
        raise ValueError(f"storage backend must be auto, delta-spark or delta-rs, got {backend!r}")
    jars = delta_jars_on_classpath(spark)
    if backend == "delta-spark" and not jars:
        raise StorageError(
            "storage.backend is delta-spark but io.delta.tables.DeltaTable is not on Spark's classpath: run "
            "./submit.sh setup (it fetches Delta's jars into storage.delta_jars), add them with spark.jars, or "
            "use storage.backend auto"
        )
    chosen: DeltaStorage
    if backend == "delta-spark" or (backend == "auto" and jars):
        chosen = DeltaSparkStorage(spark, storage_options)
    else:
        chosen = DeltaRsStorage(spark, storage_options)
    log.info("Delta storage: %s", chosen.name)
    return chosen
