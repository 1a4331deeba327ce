"""Delta's per-file statistics (rows, and per column the minimum, maximum and null count) read from the
footer Spark's Parquet writer leaves in each file.

delta-spark collects them as it writes. The delta-rs bridge commits files Spark wrote as plain Parquet, so
without these no reader (delta-spark, delta-rs, Trino, this package's own reads) could skip a file of the
tables it wrote, nor count their rows from the log. The footer already holds the figures per row group;
reading it costs one small read per file, not a pass over the data.

The statistics follow Delta's rules: the first `delta.dataSkippingNumIndexedCols` (32) leaf columns, or the
columns `delta.dataSkippingStatsColumns` names; no minimum or maximum for booleans, binaries and decimals,
nor for lists and maps. Where a figure cannot be exact it is left out, which readers take as "unknown":
a float column holding NaN, a string longer than Delta's 32-character prefix (its maximum; the minimum is
the prefix, which sorts no higher than the value), a row group without statistics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_INDEXED_COLUMNS = 32  # delta.dataSkippingNumIndexedCols when the table does not set it
STRING_PREFIX = 32  # characters of a string Delta keeps in its statistics

Path = tuple[str, ...]


def delta_statistics(footer: pq.FileMetaData, configuration: Mapping[str, str] | None = None) -> str:
    """The add action's `stats` JSON for one Parquet file, from its footer and the table's configuration."""
    schema = footer.schema.to_arrow_schema()
    leaves = list(_leaves(list(schema)))
    indexed = _indexed(leaves, configuration or {})
    minimum: dict[str, Any] = {}
    maximum: dict[str, Any] = {}
    nulls: dict[str, Any] = {}
    column = 0  # the Parquet column (a primitive leaf) of the leaf in hand
    for path, kind, width in leaves:
        if path in indexed and not pa.types.is_nested(kind):  # a list's or map's nulls are not its items'
            low, high, null_count = _column_figures(footer, column, kind)
            for found, into in ((low, minimum), (high, maximum), (null_count, nulls)):
                if found is not None:
                    _put(into, path, found)
        column += width
    if column != footer.num_columns:  # a layout this reading does not know: rows only
        minimum, maximum, nulls = {}, {}, {}
    return json.dumps(
        {"numRecords": footer.num_rows, "minValues": minimum, "maxValues": maximum, "nullCount": nulls},
        separators=(",", ":"),
    )


def _leaves(fields: list[pa.Field], prefix: Path = ()) -> Iterator[tuple[Path, pa.DataType, int]]:
    """Delta's leaf columns in schema order: struct fields one by one, anything else (lists and maps
    included) as one; with how many Parquet columns each spans."""
    for field in fields:
        path = (*prefix, field.name)
        if pa.types.is_struct(field.type):
            yield from _leaves([field.type.field(i) for i in range(field.type.num_fields)], path)
        else:
            yield path, field.type, _parquet_columns(field.type)


def _parquet_columns(kind: pa.DataType) -> int:
    if pa.types.is_struct(kind):
        return sum(_parquet_columns(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _parquet_columns(kind.key_type) + _parquet_columns(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _parquet_columns(kind.value_type)
    return 1


def _indexed(leaves: list[tuple[Path, pa.DataType, int]], configuration: Mapping[str, str]) -> set[Path]:
    named = configuration.get("delta.dataSkippingStatsColumns")
    if named:
        wanted = [tuple(part.strip().strip("`") for part in name.split(".")) for name in named.split(",")]
        return {path for path, _, _ in leaves if any(path[: len(w)] == w for w in wanted)}
    count = int(configuration.get("delta.dataSkippingNumIndexedCols", DEFAULT_INDEXED_COLUMNS))
    paths = [path for path, _, _ in leaves]
    return set(paths if count < 0 else paths[:count])


def _column_figures(footer: pq.FileMetaData, column: int, kind: pa.DataType) -> tuple[Any, Any, int | None]:
    """(minimum, maximum, null count) of one Parquet column over the file's row groups, each None where the
    footer cannot tell it exactly."""
    lows: list[Any] = []
    highs: list[Any] = []
    nulls: int | None = 0
    ranged = _has_range(kind)
    for group in range(footer.num_row_groups):
        chunk = footer.row_group(group).column(column)
        stats = chunk.statistics
        if stats is None or not stats.has_null_count:
            nulls, ranged = None, False
            break
        if nulls is not None:
            nulls += stats.null_count
        if stats.null_count == chunk.num_values:
            continue  # only nulls here: no range to add
        if not stats.has_min_max:
            ranged = False
        elif ranged:
            lows.append(stats.min)
            highs.append(stats.max)
    if not ranged or not lows:
        return None, None, nulls
    # Spark's writer counts NaN as a float's largest value: one row group's NaN maximum leaves the file's
    # maximum unknown (Python's max would skip it or not by the row groups' order), while its minimum is
    # the least of the other values
    lows = [v for v in lows if not _is_nan(v)]
    high = None if any(_is_nan(v) for v in highs) else _high(max(highs), kind)
    return (_low(min(lows), kind) if lows else None), high, nulls


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _has_range(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
    )


def _low(value: Any, kind: pa.DataType) -> Any:
    if isinstance(value, str):
        return value[:STRING_PREFIX]
    if isinstance(value, datetime):
        return _time(value, kind, ceiling=False)
    return _plain(value)


def _high(value: Any, kind: pa.DataType) -> Any:
    if isinstance(value, str):
        return value if len(value) <= STRING_PREFIX else None
    if isinstance(value, datetime):
        return _time(value, kind, ceiling=True)
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # Parquet writers disagree on NaN in statistics: unknown
    if isinstance(value, date):
        return value.isoformat()
    return value


def _time(value: datetime, kind: pa.DataType, *, ceiling: bool) -> str:
    """Delta writes times to the millisecond: a maximum is rounded up so that it still bounds the file."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    extra = value.microsecond % 1000
    value -= timedelta(microseconds=extra)
    if ceiling and extra:
        value += timedelta(milliseconds=1)
    text = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    return text + "Z" if getattr(kind, "tz", None) else text


def _put(into: dict[str, Any], path: Path, value: Any) -> None:
    for name in path[:-1]:
        into = into.setdefault(name, {})
    into[path[-1]] = value
