"""Which model decides: the champion, and the record of every promotion and rollback.

The record is one small JSON file per event in `<models>/_promotions/`, written whole and then moved into
place (local, HDFS or S3 alike; no Spark needed, so `./submit.sh promote` is instant). The champion is the
model of the newest event. Without any event, the newest model version decides, as before champions existed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from shopguard.registry import ModelNotFoundError, filesystem, list_versions, read_metadata

FOLDER = "_promotions"


class Promotion(BaseModel):
    """One change of champion: when, to which model from which, why, and the figures compared."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    promoted_at: datetime
    model_version: str
    previous: str | None  # the champion it replaced (None: the first)
    kind: str  # first | automatic | manual | rollback
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)  # what was compared, where anything was
    run_id: str | None = None


def history(models_root: str) -> list[Promotion]:
    """Every promotion and rollback, oldest first."""
    fs, root = filesystem(models_root)
    folder = f"{root.rstrip('/')}/{FOLDER}"
    if fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return []
    names = sorted(
        info.path
        for info in fs.get_file_info(pafs.FileSelector(folder))
        if info.base_name.endswith(".json") and not info.base_name.startswith(".")
    )
    events = []
    for name in names:
        with fs.open_input_stream(name) as handle:
            events.append(Promotion.model_validate_json(handle.read()))
    return events


def current(models_root: str) -> str | None:
    """The champion's version: the newest promotion's model, else the newest model version, else None."""
    events = history(models_root)
    if events:
        return events[-1].model_version
    versions = list_versions(models_root)
    return versions[-1] if versions else None


def promote(
    models_root: str,
    version: str,
    kind: str,
    reason: str,
    metrics: dict[str, float] | None = None,
    run_id: str | None = None,
) -> Promotion:
    """Make `version` the champion and record it; refuses a version that is missing or unusable."""
    if version not in list_versions(models_root):
        raise ModelNotFoundError(
            f"no model version {version!r} under {models_root}; ./submit.sh models lists them"
        )
    read_metadata(models_root, version)  # an unusable version is refused here, not at tonight's scoring
    events = history(models_root)
    previous = events[-1].model_version if events else None
    if previous == version:
        raise ValueError(f"{version} is already the champion")
    event = Promotion(promoted_at=datetime.now(UTC), model_version=version, previous=previous, kind=kind,
                      reason=reason, metrics=metrics or {}, run_id=run_id)  # fmt: skip
    _write(models_root, event)
    return event


def rollback(models_root: str, reason: str = "rolled back by hand") -> Promotion:
    """Undo the newest promotion: its previous champion decides again (recorded as a promotion too)."""
    events = history(models_root)
    if not events or events[-1].previous is None:
        raise ValueError("nothing to roll back: no promotion replaced an earlier champion")
    last = events[-1]
    assert last.previous is not None
    return promote(models_root, last.previous, "rollback", f"{reason} (undoes {last.model_version})")


def _write(models_root: str, event: Promotion) -> None:
    fs, root = filesystem(models_root)
    folder = f"{root.rstrip('/')}/{FOLDER}"
    fs.create_dir(folder, recursive=True)
    name = f"{event.promoted_at:%Y%m%dT%H%M%S%fZ}-{event.model_version}.json"
    staging = f"{folder}/.{name}"
    with fs.open_output_stream(staging) as out:
        out.write(json.dumps(event.model_dump(mode="json"), indent=2, sort_keys=True).encode())
    fs.move(staging, f"{folder}/{name}")


def describe(models_root: str) -> list[dict[str, Any]]:
    """The record, newest first, for `./submit.sh promote --history`."""
    return [e.model_dump(mode="json") for e in reversed(history(models_root))]
