"""Delta tables, read and written two ways behind one small interface (`base.DeltaStorage`):

* `delta_spark.DeltaSparkStorage`: the normal path, where Delta's jars are on Spark's classpath;
* `delta_rs.DeltaRsStorage`: the fallback without them (Spark moves the data, delta-rs keeps the log).

Both pass the same tests; `open_storage` picks one. Partition filters are lists of `predicates.Predicate`
tuples and `predicates.AnyOf` clauses.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession

from shopguard.storage.base import (
    DAMAGED_LOG_ADVICE,
    PAUSE_BEFORE_COMMIT,
    VACUUM_FLOOR_HOURS,
    Commit,
    ConcurrentWriteError,
    DamagedLogError,
    DeltaStorage,
    SchemaMismatchError,
    StorageError,
    WriteMode,
)
from shopguard.storage.delta_rs import DeltaRsStorage
from shopguard.storage.delta_spark import DeltaSparkStorage
from shopguard.storage.predicates import AnyOf, Predicate

__all__ = [
    "AnyOf",
    "DAMAGED_LOG_ADVICE",
    "PAUSE_BEFORE_COMMIT",
    "VACUUM_FLOOR_HOURS",
    "Commit",
    "ConcurrentWriteError",
    "DamagedLogError",
    "DeltaRsStorage",
    "DeltaSparkStorage",
    "DeltaStorage",
    "Predicate",
    "SchemaMismatchError",
    "StorageError",
    "WriteMode",
    "delta_jars_on_classpath",
    "open_storage",
]

log = logging.getLogger(__name__)


def delta_jars_on_classpath(spark: SparkSession) -> bool:
    try:
        jvm: Any = spark.sparkContext._jvm
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
