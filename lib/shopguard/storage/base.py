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

This module: the interface both implement, the errors, and the checks both share.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from shopguard.storage.predicates import Clause, Predicate, check, check_plain, to_sql

log = logging.getLogger("shopguard.storage")
WriteMode = Literal["append", "overwrite"]

# No job runs this long: files younger than this may belong to a write that has not committed yet.
VACUUM_FLOOR_HOURS = 24


class StorageError(RuntimeError):
    """A Delta table could not be read or written as asked."""


class SchemaMismatchError(StorageError):
    """The rows to write do not have the table's schema; nothing was written."""


class DamagedLogError(StorageError):
    """A table's Delta log cannot be replayed (a commit cut short, emptied or missing, a bad copy): no rerun
    mends it."""


# What an operator does about a damaged log, whichever backend found it (errors.py says it for a log file
# Spark names).
DAMAGED_LOG_ADVICE = (
    "the table is damaged; restore the file from a backup or rebuild the table upstream, then rerun"
)


@contextmanager
def naming_a_damaged_log(path: str, damage: re.Pattern[str]) -> Iterator[None]:
    """A backend's error whose text matches `damage` (its words for a log it cannot replay, which name no
    table) becomes DamagedLogError naming the table at `path`, the matched words cut to 200 characters
    (delta-rs's can run to kilobytes), and the advice. Any other error passes through."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        found = damage.search(str(exc))
        if found is None:
            raise
        cause = found.group(0).strip()
        raise _damaged_log(path, cause if len(cause) <= 200 else cause[:200] + "...") from exc


def _damaged_log(path: str, cause: str) -> DamagedLogError:
    """The one line for a log that cannot be replayed, whatever found it: the table, the cause, the advice."""
    return DamagedLogError(f"cannot read the Delta log of {path} ({cause}): {DAMAGED_LOG_ADVICE}")


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
        self._sound_logs: set[tuple[str, int]] = set()  # (path, version) whose replayed commits were checked
        self._locations: dict[str, str] = {}  # catalog name -> location, looked up once per job

    def _refuse_empty_commits(
        self, path: str, version: int, replayed: Callable[[], Iterable[tuple[int, int]]]
    ) -> None:
        """`replayed()`: (version, size in bytes) of the commit files a reader of `version` replays, those after
        the checkpoint it starts from. A zero-byte commit (a full disk, a copy stopped before its first byte)
        is replayed by Delta and by delta-rs alike as a commit without actions: its rows vanish from every
        read and no error is raised. Refusing the table turns that silent loss into DamagedLogError. Checked
        once per version of a table."""
        if (path, version) in self._sound_logs:
            return
        empty = sorted(commit for commit, size in replayed() if size == 0)
        if empty:
            raise _damaged_log(path, f"commit {empty[0]} is an empty file")
        self._sound_logs.add((path, version))

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def version(self, path: str) -> int:
        """Latest version; raises StorageError when there is no table at `path`."""

    @abstractmethod
    def read(self, path: str, *, version: int | None = None, where: Sequence[Clause] = ()) -> DataFrame:
        """Rows of the table (at `version`), partition columns included, that `where` selects: a clause on
        partition columns selects partitions; one on other columns skips the files whose statistics rule it
        out, then filters the rows."""

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

    def preload(self, path: str) -> int | None:
        """Load the latest snapshot of the table at `path`, with its file list, now: a write soon after then
        finds them in memory instead of building them first. Returns the version loaded, or None where
        there is no table or the backend keeps nothing between calls (delta-rs reads the log per call)."""
        return None

    @abstractmethod
    def partition_columns(self, path: str) -> list[str]: ...

    def location_of(self, name: str) -> str:
        """Where the Delta table registered in the session's catalog as `name` lives; StorageError naming
        what was found where it is missing, a view or not a Delta table. The catalog, not Delta, answers,
        so both backends look tables up the same way. Answered once per name: a job's steps, its catalog
        check and its registration share the answer (a DESCRIBE reads the table's Delta log, ~1 s)."""
        if name in self._locations:
            return self._locations[name]
        catalog = self.spark.conf.get("spark.sql.catalogImplementation", "in-memory")
        if not self.spark.catalog.tableExists(name):
            raise StorageError(
                f"no table {name} in the session's catalog ({catalog}); register it (CREATE TABLE {name} USING "
                "DELTA LOCATION '...'), turn catalog.enabled on where it lives in the shared metastore, or give "
                "its path"
            )
        found = {
            r["col_name"]: r["data_type"] for r in self.spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect()
        }
        provider, location = (found.get("Provider") or "").lower(), found.get("Location")
        if found.get("Type") == "VIEW" or location is None:
            raise StorageError(f"{name} is a view, not a table: give the Delta table it reads")
        if provider != "delta":
            raise StorageError(
                f"{name} is a {provider or 'Hive'} table at {location}, not a Delta table; convert it "
                f"(CONVERT TO DELTA {name}) or give a Delta table"
            )
        log.info("catalog table %s: the Delta table at %s", name, location)
        self._locations[name] = str(location)
        return str(location)

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
        problems = same_schema(df.schema, self.schema(path))
        have = self.partition_columns(path)
        if have != list(partition_by):
            problems.append(f"the table is partitioned by {have}, the write by {list(partition_by)}")
        if problems:
            raise SchemaMismatchError(f"cannot write to {path}: " + "; ".join(problems))


# --------------------------------------------------------------------------- helpers shared by both


def check_write(
    df: DataFrame, mode: str, partition_by: Sequence[str] | str, replace_where: Sequence[Predicate] | None
) -> list[str]:
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
        check(replace_where, partition_by)
        check_plain(replace_where)
    return partition_by


def check_retention(retention_hours: int) -> None:
    if retention_hours < VACUUM_FLOOR_HOURS:
        raise StorageError(
            f"vacuum retention {retention_hours} h is below the floor of {VACUUM_FLOOR_HOURS} h: files that "
            "young may belong to a write still in progress"
        )


def replace_id(replace_where: Sequence[Predicate]) -> str:
    return "shopguard replace " + " AND ".join(sorted(to_sql([p]) for p in replace_where))


PAUSE_BEFORE_COMMIT = "SHOPGUARD_PAUSE_BEFORE_COMMIT"


def pause_before_commit(write_id: str) -> None:
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


def same_schema(actual: T.StructType, expected: T.StructType) -> list[str]:
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


def commit_json(commit_info: dict[str, Any] | None, write_id: str) -> str:
    return json.dumps({**(commit_info or {}), "write_id": write_id}, default=str, sort_keys=True)
