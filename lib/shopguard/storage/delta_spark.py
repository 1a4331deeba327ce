"""delta-spark: the normal backend, where Delta's jars are on Spark's classpath (shopguard.deltajars)."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard.storage.base import (
    PAUSE_BEFORE_COMMIT,
    Commit,
    ConcurrentWriteError,
    DeltaStorage,
    StorageError,
    WriteMode,
    check_retention,
    check_write,
    commit_json,
    naming_a_damaged_log,
)
from shopguard.storage.predicates import Clause, Predicate, check, to_sql

log = logging.getLogger("shopguard.storage")

# Delta's errors for a log it cannot replay that name no table: a gap says which versions, not which table (a
# commit cut short is a file Spark names: errors.py)
_DAMAGED_LOG = re.compile(r"\[DELTA_VERSIONS_NOT_CONTIGUOUS\][^\n]*")
# A table's own rule (a CHECK constraint, a NOT NULL column) refused a row; Delta's line names the rule.
_CONSTRAINT = re.compile(
    r"\[(?:DELTA_VIOLATE_CONSTRAINT_WITH_VALUES|DELTA_NOT_NULL_CONSTRAINT_VIOLATED)\]\s*([^\n]*)"
)


def _replayed_commits(snapshot: Any) -> Iterator[tuple[int, int]]:
    """(version, size) of the commit files the snapshot was replayed from, those after its checkpoint."""
    files = snapshot.logSegment().deltas().iterator()
    while files.hasNext():
        status = files.next()
        yield int(status.getPath().getName().split(".")[0]), int(status.getLen())


class DeltaSparkStorage(DeltaStorage):
    """delta-spark on the JVM: Delta's own writer, conflict detection, history and vacuum. Needs the Delta jars
    on Spark's classpath and Delta's SQL extension (shopguard.deltajars puts both there)."""

    name = "delta-spark"

    def __init__(self, spark: Any, storage_options: dict[str, str] | None = None) -> None:
        super().__init__(spark, storage_options)
        self._partitioning: dict[str, list[str]] = {}

    def _table(self, path: str) -> Any:  # delta.tables.DeltaTable
        from delta.tables import DeltaTable

        if not self.exists(path):
            raise StorageError(f"no Delta table at {path}")
        with naming_a_damaged_log(path, _DAMAGED_LOG):
            return DeltaTable.forPath(self.spark, path)

    def exists(self, path: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, path))

    def version(self, path: str) -> int:
        """The latest version, from the snapshot Delta's own reader resolves (`DeltaLog.update`): a few
        milliseconds, where `DeltaTable.history(1)` runs a Spark job (warm session: ~11 ms against ~270 ms;
        a features job asks six times)."""
        version = int(self._snapshot(path).version())
        if version < 0:  # Delta's snapshot of a folder without a log
            raise StorageError(f"no Delta table at {path}")
        return version

    def _snapshot(self, path: str) -> Any:  # org.apache.spark.sql.delta.Snapshot
        """The session's snapshot of the table, brought up to its latest commit; its log checked for an empty
        commit, which Delta would replay as one without rows (`_refuse_empty_commits`)."""
        jvm = self.spark._jvm
        assert jvm is not None  # a classic session (delta-spark needs one)
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, path)
        with naming_a_damaged_log(path, _DAMAGED_LOG):
            snapshot = delta_log.update(False, jvm.scala.Option.empty(), jvm.scala.Option.empty())
        version = int(snapshot.version())
        if version >= 0:  # a table (-1: a folder without a log)
            self._refuse_empty_commits(path, version, lambda: _replayed_commits(snapshot))
        return snapshot

    def preload(self, path: str) -> int | None:
        """Delta keeps one snapshot per table in the session (`DeltaLog.update` returns it while no commit
        has landed since); a replacing write needs its file list and its totals (number of files, bytes),
        each a Spark job over the log the first time: ~1 s of the score job's write at 1 M events
        (docs/sizing.md)."""
        snapshot = self._snapshot(path)
        if snapshot.version() < 0:  # no table (as in `version`)
            return None
        snapshot.allFiles().count()  # builds the snapshot's cached state: the file list
        snapshot.sizeInBytes()  # and the totals a commit records
        return int(snapshot.version())

    def schema(self, path: str) -> T.StructType:
        schema: T.StructType = self._table(path).toDF().schema
        return schema

    def partition_columns(self, path: str) -> list[str]:
        """From DESCRIBE TABLE's partition section: it reads the table's metadata only, where DESCRIBE DETAIL
        also sums every file of the table (measured: 0.2 s against 6 s on a warm session). A table's
        partitioning never changes, so each table is asked once per storage."""
        if path not in self._partitioning:
            self._table(path)  # StorageError when there is no table
            names = [r["col_name"] for r in self.spark.sql(f"DESCRIBE TABLE delta.`{path}`").collect()]
            marker = "# Partition Information"
            # the section is the marker, a '# col_name' header, then one row per partition column
            self._partitioning[path] = names[names.index(marker) + 2 :] if marker in names else []
        return list(self._partitioning[path])

    def read(self, path: str, *, version: int | None = None, where: Sequence[Clause] = ()) -> DataFrame:
        self.version(path)  # no table or a damaged log: StorageError naming the table, as on delta-rs
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        with naming_a_damaged_log(path, _DAMAGED_LOG):
            df = reader.load(path)
        if not where:
            return df
        check(where, df.columns, "columns")  # Delta prunes partitions, and skips files by their statistics
        return df.where(to_sql(where))

    def partition_values(self, path: str, *, version: int | None = None) -> list[dict[str, str | None]]:
        columns = self.partition_columns(path)
        if not columns:
            return []
        distinct = self.read(path, version=version).select(
            *[F.col(c).cast("string").alias(c) for c in columns]
        )
        return sorted((row.asDict() for row in distinct.distinct().collect()), key=str)

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
        columns = check_write(df, mode, partition_by, replace_where)
        write_id = uuid.uuid4().hex
        self.check_schema(df, path, columns)
        if self.exists(path):
            df = df.select(*self.schema(path).fieldNames())
        writer = (
            _held_before_commit(df, write_id)
            .write.format("delta")
            .mode(mode)
            .option("userMetadata", commit_json(commit_info, write_id))
        )
        if columns:
            writer = writer.partitionBy(*columns)
        if replace_where is not None:
            writer = writer.option("replaceWhere", to_sql(replace_where))
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
                replaced = to_sql(replace_where or [])
                raise StorageError(
                    f"rows outside the partitions replaced ({replaced}); nothing was committed"
                ) from exc
            if found := _CONSTRAINT.search(text):
                rule = found[1].removesuffix(" by row with values:").rstrip(".")  # values: not in a log line
                raise StorageError(
                    f"{path} refused the write by its own rule: {rule}; nothing was committed. Correct or drop "
                    "the rule (ALTER TABLE ... DROP CONSTRAINT), or the rows upstream"
                ) from exc
            raise
        latest = self.version(path)
        if before is not None and latest == before:  # nothing to add or remove: Delta commits nothing
            return before
        if latest == (0 if before is None else before + 1):
            # one commit since `before`, and this write's save committed after it was read: it is this
            # write's (no history job: ~0.15 s in a warm session, up to 1 s in a job's first write)
            return latest
        return self._version_of(path, write_id)  # others committed too: found by this write's id

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
        check_retention(retention_hours)
        self._table(path)
        statement = f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS"
        # DRY RUN names the files; VACUUM itself returns only the table's path, and logs its count (VACUUM END)
        # only where Delta logs vacuums, not on S3. A second listing is paid only when files are due: on a
        # 7,279-file table DRY RUN took 3.5 s and VACUUM 3.9 s in a warm session (2026-12-07).
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

    def hold(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        task = TaskContext.get()
        if task is None or task.partitionId() == 0:
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
