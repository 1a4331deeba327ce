"""The filters jobs pass to `read` and `write(replace_where=...)`, and their one interpreter.

A filter is a list of clauses that must all hold. A clause is a predicate, `(column, operator, value)`, or
`AnyOf(predicates)`, of which one must hold: reads need it to keep the rows whose partition value is missing,
which a range alone drops without a word (SQL's null is neither >= nor <=). On a partition column a filter
selects whole partitions; a read also takes one on another column, for which a backend skips the files whose
statistics rule it out and then filters the rows (writes replace partitions, so they take partition columns
only). Every backend needs a filter in one of two spellings: SQL (Spark's filters and Delta's replaceWhere) or
the strings the Delta log holds for partition values (delta-rs' partition filters, and `matches`, which
decides which logged partitions a filter selects).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

Predicate = tuple[str, str, Any]
"""(column, operator, value): operators =, !=, <, <=, >, >=, in, not in, and `is null` (value
None), which only reads take."""


@dataclass(frozen=True, init=False)
class AnyOf:
    """A clause that holds where any of its predicates does."""

    predicates: tuple[Predicate, ...]

    def __init__(self, *predicates: Predicate) -> None:
        object.__setattr__(self, "predicates", predicates)


Clause = Predicate | AnyOf

_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
IS_NULL = "is null"
OPERATORS: tuple[str, ...] = (*_COMPARE, "in", "not in", IS_NULL)


def _predicates(where: Sequence[Clause]) -> Iterator[Predicate]:
    for clause in where:
        yield from clause.predicates if isinstance(clause, AnyOf) else (clause,)


def check(where: Sequence[Clause], columns: Sequence[str], what: str = "partition columns") -> None:
    """Refuse an unknown operator, or a filter on a column other than `columns` (a write's partition
    columns, a read's columns)."""
    for column, op, _ in _predicates(where):
        if op not in OPERATORS:
            raise ValueError(f"unsupported operator {op!r} in {column!r} filter; expected one of {OPERATORS}")
        if column not in columns:
            raise ValueError(f"filter on {column!r}: expected one of the table's {what} {list(columns)}")


def on_columns(clause: Clause) -> set[str]:
    """The columns a clause tests."""
    return {column for column, _, _ in _predicates([clause])}


def literal(value: Any) -> str:
    """A value as the Delta log spells partition values (ISO dates and times)."""
    if isinstance(value, datetime):  # UTC, as the session's time zone is
        moment: datetime = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return moment.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def check_plain(where: Sequence[Clause]) -> None:
    """Refuse what only a read takes (delta-rs commits a replacement with a plain conjunction)."""
    if any(isinstance(c, AnyOf) or c[1] == IS_NULL for c in where):
        raise ValueError(f"a write replaces partitions named by plain predicates, not {to_sql(where)}")


def _log_string(predicate: Predicate) -> tuple[str, str, str | list[str] | None]:
    column, op, value = predicate
    if op == IS_NULL:
        return column, op, None
    return column, op, [literal(v) for v in value] if op in ("in", "not in") else literal(value)


def as_log_strings(where: Sequence[Predicate]) -> list[tuple[str, str, str | list[str] | None]]:
    """Plain predicates with their values spelt as the log holds them (delta-rs' partition filters)."""
    return [_log_string(p) for p in where]


def to_sql(where: Sequence[Clause]) -> str:
    """`a = 'x' AND b IN ('y', 'z') AND (c >= 'v' OR c IS NULL)`; Spark casts the quoted literals to each
    column's type."""

    def one(predicate: Predicate) -> str:
        column, op, value = _log_string(predicate)
        if op == IS_NULL:
            return f"`{column}` IS NULL"
        if isinstance(value, list):
            return f"`{column}` {op.upper()} ({', '.join(repr(v) for v in value)})"
        return f"`{column}` {op} {value!r}"

    return " AND ".join(
        f"({' OR '.join(one(p) for p in c.predicates)})" if isinstance(c, AnyOf) else one(c) for c in where
    )


def _selects(values: dict[str, str | None], predicate: Predicate) -> bool:
    column, op, value = _log_string(predicate)
    have = values.get(column)
    if op == IS_NULL:
        return have is None
    if isinstance(value, list):
        return (have in value) == (op == "in")
    return have is not None and value is not None and _COMPARE[op](have, value)


def holds(where: Sequence[Clause], test: Callable[[Predicate], bool]) -> bool:
    """Whether every clause holds, a predicate where `test` says so, an AnyOf where one of its does."""
    return all(any(map(test, c.predicates)) if isinstance(c, AnyOf) else test(c) for c in where)


def matches(values: dict[str, str | None], where: Sequence[Clause]) -> bool:
    """Whether a partition, as the log holds its values (strings), is selected. Compared as strings, which
    orders ISO dates and names correctly: the partition columns shopguard writes."""
    return holds(where, lambda predicate: _selects(values, predicate))
