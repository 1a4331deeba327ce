"""Spark + delta-rs: the fallback where Delta's jars are absent. Spark writes and reads the Parquet files in
parallel; delta-rs (`deltalake`) keeps the Delta log: the files of each version and the atomic commit."""

from __future__ import annotations

import json
import logging
import operator
import re
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from shopguard.storage.base import (
    Commit,
    ConcurrentWriteError,
    DeltaStorage,
    StorageError,
    WriteMode,
    check_retention,
    check_write,
    commit_json,
    naming_a_damaged_log,
    pause_before_commit,
    replace_id,
)
from shopguard.storage.file_statistics import delta_statistics
from shopguard.storage.predicates import (
    IS_NULL,
    Clause,
    Predicate,
    as_log_strings,
    check,
    holds,
    literal,
    matches,
    on_columns,
    to_sql,
)

log = logging.getLogger("shopguard.storage")

# delta-rs's messages for a log it could not make sense of (a commit cut short or missing, a bad checkpoint):
# the line that holds one
_DAMAGED_LOG = re.compile(
    r"[^\n]*(?:Json error|Parquet error|Arrow error|Invalid Checkpoint|No table metadata or protocol"
    r"|contiguous commit)[^\n]*"
)

# delta-rs refusing, at the commit, a table whose writer features it lacks
_UNSUPPORTED_FEATURES = re.compile(r"Unsupported table features required: \[([^\]]*)\]")

# footers read at once after a write (each a round trip on an object store)
_FOOTER_READERS = 8

# the log's commit files and checkpoints (single or multi-part, classic or v2), named by their version
_COMMIT_FILE = re.compile(r"(\d{20})\.json")
_CHECKPOINT_FILE = re.compile(r"(\d{20})\.checkpoint\.")


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

    def _table(self, path: str, version: int | None = None) -> Any:  # deltalake.DeltaTable
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        # the store's own errors (network, permissions) pass through: exit 1, rerun
        with naming_a_damaged_log(path, _DAMAGED_LOG):
            try:
                table = DeltaTable(
                    _rs_uri(path), version=version, storage_options=self.storage_options or None
                )
            except TableNotFoundError as exc:
                raise StorageError(f"no Delta table at {path}") from exc
        loaded = int(table.version())
        self._refuse_empty_commits(path, loaded, lambda: self._replayed_commits(path, loaded))
        return table

    def _replayed_commits(self, path: str, version: int) -> list[tuple[int, int]]:
        """(version, size) of the commit files delta-rs replays for `version`: those after the latest
        checkpoint at or below it, from one listing of the log (delta-rs does not expose its own)."""
        from deltalake.fs import DeltaStorageHandler
        from pyarrow.fs import FileSelector

        store = DeltaStorageHandler(_rs_uri(path), self.storage_options or None)
        commits, checkpoint = [], -1
        for info in store.get_file_info_selector(FileSelector("_delta_log")):
            name = info.path.rsplit("/", 1)[-1]
            if found := _COMMIT_FILE.fullmatch(name):
                commits.append((int(found[1]), int(info.size)))
            elif (found := _CHECKPOINT_FILE.match(name)) and int(found[1]) <= version:
                checkpoint = max(checkpoint, int(found[1]))
        return [(commit, size) for commit, size in commits if checkpoint < commit <= version]

    def exists(self, path: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(_rs_uri(path), storage_options=self.storage_options or None)

    def version(self, path: str) -> int:
        return int(self._table(path).version())

    def _spark_schema(self, table: Any) -> T.StructType:
        return from_arrow_schema(pa.schema(table.schema().to_arrow()))

    def schema(self, path: str) -> T.StructType:
        return self._spark_schema(self._table(path))

    def partition_columns(self, path: str) -> list[str]:
        return list(self._table(path).metadata().partition_columns)

    def read(self, path: str, *, version: int | None = None, where: Sequence[Clause] = ()) -> DataFrame:
        table = self._table(path, version)
        _refuse_unhonoured(path, table, writing=False)
        schema = self._spark_schema(table)
        partition_columns = list(table.metadata().partition_columns)
        check(where, schema.fieldNames(), "columns")
        # a clause on partition columns selects whole partitions; any other skips files by their statistics,
        # as delta-spark does, and then filters the rows
        by_partition: list[Clause] = []
        by_rows: list[Clause] = []
        for clause in where:
            (by_partition if on_columns(clause) <= set(partition_columns) else by_rows).append(clause)

        actions = pa.table(table.get_add_actions(flatten=True))
        if by_partition:
            logged = _logged_partitions(actions, partition_columns)
            actions = actions.filter(pa.array([matches(v, by_partition) for v in logged], pa.bool_()))
        if by_rows:
            tested = set().union(*map(on_columns, by_rows))
            statistics = [f"{kind}{c}" for kind in _STATISTICS for c in tested]
            stats = actions.select([n for n in statistics if n in actions.column_names]).to_pylist()
            selected = [holds(by_rows, partial(_may_hold, s)) for s in stats]
            actions = actions.filter(pa.array(selected, pa.bool_()))
        if actions.num_rows == 0:
            return self.spark.createDataFrame([], schema)
        df = self._files(table, actions, schema, partition_columns)
        return df.where(to_sql(by_rows)) if by_rows else df

    def _files(
        self, table: Any, actions: pa.Table, schema: T.StructType, partition_columns: list[str]
    ) -> DataFrame:
        """The rows of the files of `actions`, with their partition values from the log."""
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
                f"{table.table_uri}: file paths repeat in their last {depth} segments; use the delta-spark "
                "backend"
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
        unique = {tuple(p.items()) for p in _logged_partitions(actions, columns)}
        return [dict(p) for p in sorted(unique, key=lambda p: str(tuple(v for _, v in p)))]

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
        from deltalake.exceptions import CommitFailedError

        columns = check_write(df, mode, partition_by, replace_where)

        exists = self.exists(path)
        configuration: dict[str, str] = {}
        if exists:
            current = self._table(path)
            _refuse_unhonoured(path, current, writing=True)
            configuration = current.metadata().configuration or {}
            self.check_schema(df, path, columns)
            df = df.select(*self._spark_schema(current).fieldNames())  # the table's column order

        write_id = f"w-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        write_dir, actions = self._write_files(df, path, write_id, columns, configuration)

        if replace_where is not None:
            stray = sorted({tuple(sorted(a[3].items())) for a in actions if not matches(a[3], replace_where)})
            if stray:
                self._delete(write_dir)
                raise StorageError(
                    f"rows in partitions {[dict(p) for p in stray][:5]}, outside the partitions replaced "
                    f"({to_sql(replace_where)}); nothing was committed"
                )

        arrow_schema = _nullable(to_arrow_schema(df.schema, timezone="UTC"))
        table = self._table(path) if exists else None  # the version this write commits against
        pause_before_commit(write_id)
        try:
            self._commit(path, table, [_add_action(*a) for a in actions], arrow_schema, mode, columns, replace_where,
                         commit_json(commit_info, write_id))  # fmt: skip
        except CommitFailedError as exc:
            self._delete(write_dir)
            if unsupported := _UNSUPPORTED_FEATURES.search(str(exc)):
                # no rerun helps (before: reported as a conflict, exit 4, "rerun the job")
                raise StorageError(
                    f"{path} uses Delta table features delta-rs cannot write ({unsupported[1]}, liquid "
                    "clustering say); nothing was committed. Use the delta-spark backend (storage.backend: "
                    "delta-spark)"
                ) from exc
            raise ConcurrentWriteError(
                f"another job committed a conflicting change to {path} first; this write ({write_id}) was "
                f"not committed and the table is unchanged by it. Rerun the job. ({exc})"
            ) from exc
        return self._version_of(path, write_id)

    def _write_files(
        self, df: DataFrame, path: str, write_id: str, columns: list[str], configuration: dict[str, str]
    ) -> tuple[str, list[tuple[str, int, int, dict[str, str | None], str]]]:
        """Spark writes the Parquet files into a folder of this write's own; returns it and, per file, what
        its add action needs (path in the table, size, time, partition values, statistics)."""
        write_dir = f"{path.rstrip('/')}/{write_id}"
        writer = df.write.mode("errorifexists")
        if columns:
            writer = writer.partitionBy(*columns)
        writer.parquet(write_dir)
        actions = []
        for file_path, size, modified in self._list_files(write_dir):
            relative = file_path[len(path.rstrip("/")) + 1 :]
            values = _partition_values_from_path(relative)
            if set(values) != set(columns):
                raise StorageError(f"written file {file_path} is not in folders of partitions {columns}")
            actions.append((relative, size, modified, {c: values[c] for c in columns}))
        statistics = self._statistics(path, [a[0] for a in actions], configuration)
        return write_dir, [(*a, stats) for a, stats in zip(actions, statistics, strict=True)]

    def _statistics(self, path: str, relatives: list[str], configuration: dict[str, str]) -> list[str]:
        """Each written file's Delta statistics, from its Parquet footer: one small read per file, a few at
        once (on object stores each read is a round trip)."""
        import pyarrow.parquet as pq
        from deltalake.fs import DeltaStorageHandler

        store = DeltaStorageHandler(_rs_uri(path), self.storage_options or None)

        def of(relative: str) -> str:
            with store.open_input_file(relative) as file:
                return delta_statistics(pq.read_metadata(file), configuration)

        with ThreadPoolExecutor(max_workers=max(1, min(_FOOTER_READERS, len(relatives)))) as pool:
            return list(pool.map(of, relatives))

    def _commit(
        self,
        path: str,
        table: Any,
        add_actions: list[Any],
        arrow_schema: pa.Schema,
        mode: WriteMode,
        columns: list[str],
        replace_where: Sequence[Predicate] | None,
        user_metadata: str,
    ) -> None:
        """One Delta commit of the written files: creates the table, or appends/replaces on `table`."""
        from deltalake import Schema
        from deltalake.transaction import CommitProperties, Transaction, create_table_with_add_actions

        properties = CommitProperties(
            custom_metadata={"userMetadata": user_metadata},
            # Two writers replacing the same partitions share an application id, so Delta's conflict check
            # fails the later one even when the partitions were empty (nothing to remove, nothing to clash).
            app_transactions=[Transaction(app_id=replace_id(replace_where), version=time.time_ns())]
            if replace_where is not None
            else None,
        )
        if table is None:
            try:
                create_table_with_add_actions(
                    _rs_uri(path),
                    Schema.from_arrow(arrow_schema),
                    add_actions,
                    mode="error",
                    partition_by=columns or None,
                    storage_options=self.storage_options or None,
                    commit_properties=properties,
                )
                return
            except Exception:
                if not self.exists(path):
                    raise
                # Another writer created the table meanwhile: commit as an ordinary write on top of it.
                table = self._table(path)
        filters = as_log_strings(replace_where) if replace_where is not None else None
        table.create_write_transaction(
            add_actions,
            mode,
            arrow_schema,
            partition_by=columns or None,
            partition_filters=filters,
            commit_properties=properties,
        )

    def _hadoop_fs(self, path: str) -> tuple[Any, Any]:
        jvm: Any = self.spark.sparkContext._jvm
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
        check_retention(retention_hours)
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


def _add_action(
    relative: str, size: int, modified_ms: int, partition_values: dict[str, str | None], stats: str
) -> Any:
    from deltalake.transaction import AddAction

    return AddAction(relative, size, partition_values, modified_ms, True, stats)


def _refuse_unhonoured(path: str, table: Any, *, writing: bool) -> None:
    """StorageError for a table that uses Delta features this backend would get wrong, before it reads or
    writes anything. Spark reads and writes the Parquet files by logical column names and enforces nothing
    the table declares: a column-mapped table read as all nulls, and a write to it committed files other
    readers cannot resolve (measured: delta-rs could no longer open the table); a write broke CHECK
    constraints that delta-spark enforces, and put a null in a NOT NULL column, after which delta-spark could
    no longer read the table."""
    configuration = table.metadata().configuration or {}
    found = set() if writing else set(table.protocol().reader_features or []) - {"timestampNtz"}
    if configuration.get("delta.columnMapping.mode", "none") != "none":
        found.add("columnMapping")
    if writing:
        if any(key.startswith("delta.constraints.") for key in configuration):
            found.add("checkConstraints")
        fields = table.schema().fields
        for field in fields:
            keys = set(field.metadata)
            found |= {feature for key, feature in _DECLARED_IN_FIELDS if any(k.startswith(key) for k in keys)}
        # only DDL makes NOT NULL columns: Delta's DataFrame writes make every column nullable
        if required := [f.name for f in fields if not f.nullable]:
            found.add(f"NOT NULL ({', '.join(required)})")
    if found:
        raise StorageError(
            f"{path} uses Delta table features {', '.join(sorted(found))} that the delta-rs backend does not "
            f"honour when it {'writes' if writing else 'reads'} through Spark; use the delta-spark backend "
            "(storage.backend: delta-spark)"
        )


# (prefix of a schema field's metadata key, the table feature it declares)
_DECLARED_IN_FIELDS = (
    ("delta.invariants", "invariants"),
    ("delta.generationExpression", "generatedColumns"),
    ("delta.identity.", "identityColumns"),
)


def _logged_partitions(actions: pa.Table, columns: Sequence[str]) -> list[dict[str, str | None]]:
    """Each add action's partition values, spelt as the log holds them."""
    found = zip(*(actions[f"partition.{c}"].to_pylist() for c in columns), strict=True)
    return [
        {c: None if v is None else literal(v) for c, v in zip(columns, values, strict=True)}
        for values in found
    ]


_STATISTICS = ("min.", "max.", "null_count.")
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _ordered(value: Any) -> Any:
    """A statistic or a bound as a value that orders correctly against the other, or None: strings are left
    out (Delta truncates long ones in its statistics), and times compare as UTC without a zone."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, bool) or not isinstance(value, (date, int, float)):
        return None
    return value


def _may_hold(stats: dict[str, Any], predicate: Predicate) -> bool:
    """Whether a row of a file may satisfy `predicate`, by the file's statistics in the log (minimum, maximum
    and null count per column); True wherever they cannot tell."""
    column, op, value = predicate
    if op == IS_NULL:
        nulls = stats.get(f"null_count.{column}")
        return nulls is None or nulls > 0
    low, high = _ordered(stats.get(f"min.{column}")), _ordered(stats.get(f"max.{column}"))
    wanted = [_ordered(v) for v in value] if op == "in" else [_ordered(value)]
    if low is None or high is None or None in wanted or op in ("!=", "not in"):
        return True
    try:
        if op in ("=", "in"):
            return any(low <= v <= high for v in wanted)
        # below a bound: the file's smallest value; above it: its largest
        return bool(_ORDER[op](low if op in ("<", "<=") else high, wanted[0]))
    except TypeError:  # a date against a time, say: the statistics cannot tell
        return True


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
