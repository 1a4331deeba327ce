"""Every table shopguard reads or writes, declared once, and the one reader/writer the steps use.

A `TableContract` says what a table is: its name (the key under `tables:` in conf/, and its name in the SQL
catalog), its partition columns, the date column a night's rerun replaces, and its schema where shopguard
fixes one. `Tables` binds the contracts to where the tables live (settings) and to a storage backend, so a
step reads and writes by name and never repeats a path, a partitioning or a replace predicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.config import TableSettings
from shopguard.errors import InputError
from shopguard.storage import Commit, DeltaStorage, Predicate, SchemaMismatchError

log = logging.getLogger("shopguard.catalog")


@dataclass(frozen=True)
class TableContract:
    name: str
    partition_by: tuple[str, ...] = ()
    date_column: str | None = None  # the partition a rerun for one date replaces
    schema: T.StructType | None = None  # None: the writer defines it (input logs, the feature set)
    registered: bool = True  # in the SQL catalog for analysts (shopguard.warehouse)
    purpose: str = ""


TABLES: dict[str, TableContract] = {
    t.name: t
    for t in (
        TableContract("clicks", ("event_date",), "event_date", schemas.CLICKS, purpose="input: click log"),
        TableContract(
            "transactions", ("order_date",), "order_date", schemas.TRANSACTIONS, purpose="input: orders"
        ),
        TableContract("labels", (), None, schemas.LABELS, purpose="input: analysts' verdicts"),
        TableContract(
            "truth", (), None, None, registered=False, purpose="generated data: injected anomalies"
        ),
        TableContract("features", ("snapshot_date",), "snapshot_date", purpose="per-user features per date"),
        TableContract(
            "quarantine",
            ("snapshot_date", "source_table"),
            "snapshot_date",
            schemas.QUARANTINE,
            purpose="rows that failed validation, with the reason",
        ),
        TableContract("scores", ("score_date",), "score_date", schemas.SCORES, purpose="score and action"),
        TableContract(
            "shadow_scores",
            ("score_date",),
            "score_date",
            schemas.SCORES,
            purpose="a challenger's scores beside the champion's; decisions come from scores only",
        ),
        TableContract(
            "run_metrics", ("run_date",), "run_date", schemas.RUN_METRICS, purpose="what each night measured"
        ),
        TableContract(
            "evaluations",
            ("snapshot_date", "model_version"),
            "snapshot_date",
            schemas.EVALUATIONS,
            purpose="quality metrics per scorer and anomaly type",
        ),
    )
}
REGISTERED: tuple[str, ...] = tuple(name for name, t in TABLES.items() if t.registered)


def contract(name: str) -> TableContract:
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; expected one of {sorted(TABLES)}")
    return TABLES[name]


class Tables:
    """Reads and writes shopguard's tables by name, with the partitioning and rerun semantics of their
    contract: `replace(name, df, day)` replaces one date's partition in one commit."""

    def __init__(self, storage: DeltaStorage, locations: TableSettings) -> None:
        self.storage = storage
        self.locations = locations
        # tables given by their catalog name, looked up when the job starts (the storage keeps the answer)
        self._located = {
            name: storage.location_of(found)
            for name in TABLES
            if (found := locations.catalog_name(name)) is not None
        }

    def path(self, name: str) -> str:
        return self._located.get(name) or self.locations.path(name)

    def exists(self, name: str) -> bool:
        return self.storage.exists(self.path(name))

    def require(self, name: str, hint: str) -> int:
        """The table's current version; InputError (exit 3) naming what to run when it is missing."""
        if not self.exists(name):
            raise InputError(f"no {name} table at {self.path(name)}; {hint}")
        return self.storage.version(self.path(name))

    def version(self, name: str) -> int:
        return self.storage.version(self.path(name))

    def read(self, name: str, *, version: int | None = None, where: Sequence[Predicate] = ()) -> DataFrame:
        return self.storage.read(self.path(name), version=version, where=where)

    def on(self, name: str, day: date, *, version: int | None = None) -> DataFrame:
        """One date's partition."""
        return self.read(name, version=version, where=[(self._date_column(name), "=", day)])

    def dates(self, name: str, *, version: int | None = None) -> list[date]:
        """The dates the table holds, from its log (no data scanned)."""
        column = self._date_column(name)
        found = self.storage.partition_values(self.path(name), version=version)
        return sorted({date.fromisoformat(v) for p in found if (v := p.get(column)) is not None})

    def history(self, name: str, limit: int | None = None) -> list[Commit]:
        return self.storage.history(self.path(name), limit=limit)

    def check(self, name: str, df: DataFrame, hint: str = "") -> None:
        """SchemaMismatchError before anything is written when `df` does not fit the table."""
        try:
            self.storage.check_schema(df, self.path(name), contract(name).partition_by)
        except SchemaMismatchError as exc:
            raise SchemaMismatchError(f"{exc}{'. ' + hint if hint else ''}") from exc

    @contextmanager
    def preloading(self, name: str) -> Iterator[None]:
        """While the block runs, load the table the step will write (`DeltaStorage.preload`) on a background
        thread, so that its write does not start by reading its log. The driver mostly waits on the
        step's first Spark jobs then; the preload is a few small jobs. A failure here only costs the
        write its head start, so it is logged, never raised. Waits for the thread on the way out."""

        def load() -> None:
            started = time.perf_counter()
            try:
                version = self.storage.preload(self.path(name))
            except Exception as exc:  # noqa: BLE001 - the write loads the table itself
                log.warning("could not preload the %s table ahead of its write: %s", name, exc)
                return
            if version is not None:
                log.info("%s table v%d loaded ahead of its write in %.1f s", name, version,
                         time.perf_counter() - started)  # fmt: skip

        thread = threading.Thread(target=load, name="shopguard-preload-table", daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join()

    def replace(
        self, name: str, df: DataFrame, day: date, info: dict[str, Any], also: Sequence[Predicate] = ()
    ) -> int:
        """Replace the partition of `day` (narrowed by `also`) in one commit: a rerun duplicates nothing."""
        where = [(self._date_column(name), "=", day), *also]
        return self._write(name, df, "overwrite", info, replace_where=where)

    def append(self, name: str, df: DataFrame, info: dict[str, Any]) -> int:
        return self._write(name, df, "append", info)

    def overwrite(self, name: str, df: DataFrame, info: dict[str, Any]) -> int:
        return self._write(name, df, "overwrite", info)

    def _write(
        self, name: str, df: DataFrame, mode: Any, info: dict[str, Any], replace_where: Any = None
    ) -> int:
        return self.storage.write(
            df,
            self.path(name),
            mode=mode,
            partition_by=list(contract(name).partition_by),
            replace_where=replace_where,
            commit_info=info,
        )

    def _date_column(self, name: str) -> str:
        column = contract(name).date_column
        if column is None:
            raise ValueError(f"table {name} is not partitioned by date")
        return column
