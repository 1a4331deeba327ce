"""Reading an input log for the windows of one snapshot, whatever its layout: partitioned by a date, by
YYYY-MM-DD strings or by a timestamp, with sub-partitions (an hour) below the date, or not partitioned at all.
A layout that cannot be read correctly is refused before anything runs, naming the setting that fixes it.

Rows without a date (a null partition value, or a date that does not parse) belong to no window, so a range
alone would never read them, and nothing would ever count them. They are read with every window instead, and
validation quarantines them as missing their date: every night, until the upstream load is fixed."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shopguard import schemas
from shopguard.catalog import contract
from shopguard.config import ConfigError
from shopguard.storage import AnyOf, DeltaStorage, Predicate
from shopguard.storage.predicates import IS_NULL, Clause

log = logging.getLogger(__name__)

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# column types whose files' statistics tell which days a file holds
_DATED = (T.DateType, T.TimestampType, T.TimestampNTZType)


class LayoutError(ConfigError):
    """An input table is laid out in a way shopguard cannot read correctly without a setting."""


def _window_filter(
    storage: DeltaStorage, path: str, version: int, column: str, dtype: T.DataType, first: date, last: date
) -> list[Clause]:
    """Clauses selecting the days first..last, and the undated rows, on a column of type `dtype`."""
    undated: Predicate = (column, IS_NULL, None)
    return [AnyOf(bound, undated) for bound in _range(storage, path, version, column, dtype, first, last)]


def _range(
    storage: DeltaStorage, path: str, version: int, column: str, dtype: T.DataType, first: date, last: date
) -> list[Predicate]:
    if isinstance(dtype, T.DateType):
        return [(column, ">=", first), (column, "<=", last)]
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        start, end = datetime.combine(first, time.min), datetime.combine(last + timedelta(days=1), time.min)
        return [(column, ">=", start), (column, "<", end)]
    if isinstance(dtype, T.StringType):
        values = {v for p in storage.partition_values(path, version=version) if (v := p[column]) is not None}
        odd = sorted(v for v in values if not _ISO_DAY.match(str(v)))
        if odd:
            raise LayoutError(
                f"{path} is partitioned by the string column {column!r} with values such as {odd[:3]}, not "
                "YYYY-MM-DD days, so its partitions cannot be selected by date; rewrite the partitions as "
                "YYYY-MM-DD or as a date column"
            )
        return [(column, ">=", first.isoformat()), (column, "<=", last.isoformat())]
    raise LayoutError(
        f"{path} is partitioned by {column!r} of type {dtype.simpleString()}; expected a date, a timestamp or "
        "YYYY-MM-DD strings"
    )


def read_window(
    storage: DeltaStorage,
    path: str,
    table: str,
    mapping: dict[str, str],
    version: int,
    first: date,
    last: date,
) -> DataFrame:
    """Rows of input `table` (source column names) dated first..last, and its undated rows: by partition where
    the date is a partition column, else by the files' statistics where it is a date or a time, else by
    reading every row."""
    canonical = contract(table).date_column or ""
    setting = f"columns.{table}.{canonical}"
    date_column, time_column = mapping[canonical], mapping[schemas.TIME_COLUMN[table]]
    schema = storage.schema(path)
    partitions = storage.partition_columns(path)
    if date_column in partitions:
        dtype = schema[date_column].dataType
        return storage.read(
            path,
            version=version,
            where=_window_filter(storage, path, version, date_column, dtype, first, last),
        )
    if partitions and date_column not in schema.fieldNames():
        raise LayoutError(
            f"{table} table {path} is partitioned by {partitions}, and has no column {date_column!r} "
            f"({setting}): if {partitions[0]!r} holds the {table} date, run with --set {setting}={partitions[0]} "
            f"(or put it under columns: in conf/)"
        )
    found, clock = (
        schema[c].dataType if c in schema.fieldNames() else None for c in (date_column, time_column)
    )
    if isinstance(found, _DATED):
        # both backends skip the files whose statistics (each file's earliest and latest date) rule them out
        log.info(
            "%s: %s is not a partition column of %s (partitions: %s): reading the files whose statistics "
            "allow rows of %s..%s, few where the table is clustered or appended by date",
            table, date_column, path, partitions or "none", first, last,
        )  # fmt: skip
        where = _window_filter(storage, path, version, date_column, found, first, last)
        return storage.read(path, version=version, where=where)
    if found is None and isinstance(clock, _DATED):
        # the day comes from the time (below), in the session's time zone: a day more on either side keeps
        # every row of the window whatever that zone, and still skips the files of other days
        log.info(
            "%s: %s has no column %s: reading the files whose statistics allow %s around %s..%s",
            table, path, date_column, time_column, first, last,
        )  # fmt: skip
        wider = (first - timedelta(days=1), last + timedelta(days=1))
        df = storage.read(
            path, version=version, where=_window_filter(storage, path, version, time_column, clock, *wider)
        )
    else:
        log.warning(
            "%s: %s is not a partition column of %s (partitions: %s), nor a date: reading every file and "
            "keeping the rows of %s..%s; store the date as a DATE column, or partition the table by it, to "
            "read less",
            table, date_column, path, partitions or "none", first, last,
        )  # fmt: skip
        df = storage.read(path, version=version)
    if date_column not in schema.fieldNames():
        if time_column not in schema.fieldNames():
            return df  # conform names what is missing
        df = df.withColumn(date_column, F.to_date(F.col(time_column)))
    day = F.col(date_column).try_cast("date")  # a string that is no date: quarantined, not a failed job
    return df.where(day.between(first, last) | day.isNull())
