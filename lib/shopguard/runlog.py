"""A record of every job run, success or failure: one small JSON file per run under `tables.runs`, written
through pyarrow's file systems (local, HDFS, S3), so a run that failed because Spark did is recorded too.

`./submit.sh runs` lists them, newest first.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.fs as pafs

from shopguard.registry import filesystem


def record_run(folder: str, record: dict[str, Any]) -> None:
    """Write one run's record; never raises (a run log must not turn a success into a failure)."""
    import logging

    try:
        fs, root = filesystem(folder)
        fs.create_dir(root, recursive=True)
        name = f"{record['started_at'].replace(':', '').replace('-', '')[:15]}-{record['job']}-{record['run_id']}.json"
        with fs.open_output_stream(f"{root.rstrip('/')}/{name}") as out:
            out.write(json.dumps(record, default=str, sort_keys=True).encode())
    except Exception as exc:  # noqa: BLE001 - logged, and the run's outcome stands
        logging.getLogger(__name__).warning("could not record the run in %s: %s", folder, exc)


def read_runs(folder: str, last: int = 30) -> list[dict[str, Any]]:
    """The `last` runs recorded under `folder`, newest first."""
    fs, root = filesystem(folder)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    files = sorted(
        (i.path for i in fs.get_file_info(pafs.FileSelector(root)) if i.base_name.endswith(".json")),
        reverse=True,
    )[:last]
    runs = []
    for path in files:
        with fs.open_input_stream(path) as handle:
            runs.append(json.loads(handle.read()))
    return runs
