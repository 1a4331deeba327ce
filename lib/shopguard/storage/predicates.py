"""The partition filters jobs pass to `read` and `write(replace_where=...)`, and their one interpreter.

A predicate is `(partition column, operator, value)`. Every backend needs it in one of two spellings: SQL
(Spark's filters and Delta's replaceWhere) or the strings the Delta log holds for partition values (delta-rs'
partition filters, and `matches`, which decides which logged partitions a predicate selects).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

Predicate = tuple[str, str, Any]
"""(partition column, operator, value): operators =, !=, <, <=, >, >=, in, not in."""

_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
OPERATORS: tuple[str, ...] = (*_COMPARE, "in", "not in")


def check(where: Sequence[Predicate], partition_columns: Sequence[str]) -> None:
    """Refuse an unknown operator, or a filter on a column that cannot prune partitions."""
    for column, op, _ in where:
        if op not in OPERATORS:
            raise ValueError(f"unsupported operator {op!r} in {column!r} filter; expected one of {OPERATORS}")
        if column not in partition_columns:
            raise ValueError(
                f"filter on {column!r}: only partition columns {list(partition_columns)} can prune a read"
            )


def literal(value: Any) -> str:
    """A value as the Delta log spells partition values (ISO dates and times)."""
    if isinstance(value, datetime):  # UTC, as the session's time zone is
        moment: datetime = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return moment.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def as_log_strings(where: Sequence[Predicate]) -> list[tuple[str, str, str | list[str]]]:
    """The predicates with their values spelt as the log holds them (delta-rs' partition filters)."""
    return [
        (column, op, [literal(v) for v in value] if op in ("in", "not in") else literal(value))
        for column, op, value in where
    ]


def to_sql(where: Sequence[Predicate]) -> str:
    """`a = 'x' AND b IN ('y', 'z')`; Spark casts the quoted literals to each column's type."""

    def one(column: str, op: str, value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return f"`{column}` {op.upper()} ({', '.join(repr(v) for v in value)})"
        return f"`{column}` {op} {value!r}"

    return " AND ".join(one(*p) for p in as_log_strings(where))


def matches(values: dict[str, str | None], where: Sequence[Predicate]) -> bool:
    """Whether a partition, as the log holds its values (strings), is selected. Compared as strings, which
    orders ISO dates and names correctly: the partition columns shopguard writes."""
    for column, op, value in as_log_strings(where):
        have = values.get(column)
        if isinstance(value, list):
            if (have in value) != (op == "in"):
                return False
        elif have is None or not _COMPARE[op](have, value):
            return False
    return True
