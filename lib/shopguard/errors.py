"""What an operator sees when a job ends: one exit code per kind of outcome, and one line naming the cause.

    0  success
    1  anything unexpected: a bug or an infrastructure fault; rerun once, then report it with the log
    2  bad configuration or arguments (checked before Spark starts where possible); nothing ran
    3  missing, empty or unreadable input (a table, a file, a model); nothing was written
    4  a data conflict: another writer committed first; the table is consistent; rerun if this run should win
    5  the night ran and wrote everything, but its monitoring passed a fail threshold (drift, alert volume,
       quarantine rate): read the night's report before acting on its alerts

The exceptions live in the modules that raise them; this module maps them to codes, once. docs/operations.md
holds the same table for people.
"""

from __future__ import annotations

import re
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INPUT = 3
    CONFLICT = 4
    MONITOR = 5


MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "unexpected failure: rerun once, then report it with the log",
    ExitCode.USAGE: "bad configuration or arguments: nothing ran",
    ExitCode.INPUT: "missing, empty or unreadable input: nothing was written",
    ExitCode.CONFLICT: "another writer committed first: the table is consistent; rerun if this run should win",
    ExitCode.MONITOR: "written, but monitoring failed the night: read its report before acting on its alerts",
}


class JobError(RuntimeError):
    """A job cannot do what it was asked with the data it found (no features for that date, say)."""


class InputError(JobError):
    """An input table, file or model is missing, empty for the date, or unreadable."""


class MonitoringFailure(JobError):
    """A night wrote its tables, but a measure passed its fail threshold in conf/ (monitoring:)."""


# Spark names a file it could not read in the message of these error conditions (Spark 4); PATH_NOT_FOUND is
# a file the delta-rs backend passed Spark from a table's log, gone from the store (delta-spark's reader says
# FAILED_READ_FILE.FILE_NOT_EXIST).
_UNREADABLE_FILE = re.compile(
    r"\[(FAILED_READ_FILE[.\w]*|CANNOT_READ_FILE_FOOTER)\][^\n]*?(?:reading file|file)\s+(\S+?)\.?(?:\s|$)"
    r"|\[PATH_NOT_FOUND\] Path does not exist: (\S+?)\.?(?:\s|$)"
)
_NOT_PARQUET = re.compile(r"(\S+) is not a Parquet file")


def unreadable_file(exc: BaseException) -> str | None:
    """The path of the file Spark failed to read, when that is what `exc` is about."""
    text = str(exc)
    found = _UNREADABLE_FILE.search(text) or _NOT_PARQUET.search(text)
    if found is None:
        return None
    return found.group(found.lastindex or 1)


def classify(exc: BaseException) -> tuple[ExitCode, str]:
    """(exit code, one line naming the cause and what to do) for an exception that ended a job."""
    from shopguard.config import ConfigError
    from shopguard.privacy import PseudonymKeyError
    from shopguard.registry import ModelIntegrityError, ModelNotFoundError
    from shopguard.scoring import ModelMismatchError
    from shopguard.storage import DAMAGED_LOG_ADVICE, ConcurrentWriteError, SchemaMismatchError, StorageError
    from shopguard.validation import SchemaError

    kind = type(exc).__name__
    first_line = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, MonitoringFailure):
        return ExitCode.MONITOR, f"{kind}: {first_line}"
    if isinstance(exc, ConcurrentWriteError):
        return ExitCode.CONFLICT, f"{kind}: {first_line}"
    if isinstance(exc, (ConfigError, PseudonymKeyError, SchemaMismatchError)):
        return ExitCode.USAGE, f"{kind}: {first_line}"
    if isinstance(
        exc,
        (JobError, SchemaError, StorageError, ModelNotFoundError, ModelIntegrityError, ModelMismatchError),
    ):
        return ExitCode.INPUT, f"{kind}: {first_line}"
    path = unreadable_file(exc)
    if path is not None and "/_delta_log/" in path:
        return (
            ExitCode.INPUT,
            f"UnreadableFile: Spark could not read {path}, a file of the table's Delta log: {DAMAGED_LOG_ADVICE}",
        )
    if path is not None:
        return ExitCode.INPUT, (
            f"UnreadableFile: Spark could not read {path} (missing, truncated or not Parquet); the table's log still "
            "lists it: restore the file from its source, or repair the table upstream, then rerun"
        )
    return ExitCode.FAILURE, f"{kind}: {first_line}"
