"""Delta's promises kept end to end: a killed job leaves no partial table, concurrent runs leave one
consistent partition, a schema that does not fit fails before anything is written. Each test works on its
own copy of the shared pipeline's tables."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import DAY, ROOT, SUBMIT_FAST, load_job, wait_for
from deltalake import DeltaTable
from pyspark.sql import functions as F

from shopguard.storage import PAUSE_BEFORE_COMMIT, ConcurrentWriteError
from shopguard.validation import SchemaError


def files_under(path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".parquet")}


def test_a_job_killed_before_its_commit_leaves_the_table_unchanged_and_maintenance_cleans_up(
    pipeline, tmp_path
):
    run = pipeline.copy(tmp_path / "tables")
    scores = run.root / "scores"
    version_before, committed = DeltaTable(str(scores)).version(), set(DeltaTable(str(scores)).file_uris())
    files_before = files_under(scores)
    gate = tmp_path / "gate"
    gate.mkdir()

    import subprocess

    job = subprocess.Popen(
        [str(ROOT / "submit.sh"), "score", "--date", DAY, *run.settings, *SUBMIT_FAST], cwd=ROOT,
        env={**os.environ, PAUSE_BEFORE_COMMIT: str(gate)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any(gate.glob("*.ready")))  # files written, commit not yet made
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()

    orphans = files_under(scores) - files_before
    assert orphans  # the killed run's Parquet files are there...
    assert DeltaTable(str(scores)).version() == version_before  # ...but the table never saw them
    assert set(DeltaTable(str(scores)).file_uris()) == committed

    # the scores table alone: every table is the subject of test_maintenance_vacuums_every_other_table_...
    maintenance = load_job("maintenance")
    maintenance([*run.settings, "--set", "maintenance.tables=[scores]"])
    assert orphans <= files_under(scores)  # younger than the retention: could be a write in progress
    long_ago = time.time() - 8 * 86400
    for path in orphans:
        os.utime(path, (long_ago, long_ago))
    maintenance([*run.settings, "--set", "maintenance.tables=[scores]"])
    assert not orphans & files_under(scores)
    assert set(DeltaTable(str(scores)).file_uris()) == committed  # committed files untouched

    load_job("score")(["--date", DAY, *run.settings])  # the rerun succeeds
    assert DeltaTable(str(scores)).to_pandas().user_id.is_unique


def test_two_score_runs_at_the_same_moment_leave_one_consistent_partition(pipeline, tmp_path, monkeypatch):
    run = pipeline.copy(tmp_path / "tables")
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(PAUSE_BEFORE_COMMIT, str(gate))
    outcomes: list[BaseException | None] = []

    def score():
        try:
            load_job("score")(["--date", DAY, *run.settings])
            outcomes.append(None)
        except BaseException as exc:  # noqa: BLE001 - the outcome is the test's subject
            outcomes.append(exc)

    threads = [threading.Thread(target=score) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(list(gate.glob("*.ready"))) == 2)  # both written, neither committed
    (gate / "go").touch()
    for thread in threads:
        thread.join(timeout=300)

    failures = [o for o in outcomes if o is not None]
    assert len(outcomes) == 2 and len(failures) == 1
    assert isinstance(failures[0], ConcurrentWriteError)
    assert "another job committed a conflicting change" in str(failures[0])
    scores = DeltaTable(str(run.root / "scores"))
    assert len(scores.history()) == len(pipeline.table("scores").history()) + 1
    frame = scores.to_pandas()
    assert frame.user_id.is_unique
    assert set(frame.user_id) == set(DeltaTable(str(run.root / "features")).to_pandas().user_id)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop("event_type"), r"missing required column 'event_type' \(expected string\)"),
        (
            lambda df: df.withColumn("dwell_ms", F.array("dwell_ms")),
            r"'dwell_ms' is array<bigint>, expected bigint",
        ),
    ],
)
def test_a_source_schema_that_does_not_fit_fails_before_anything_is_written(
    pipeline, storage, tmp_path, change, message
):
    run = pipeline.copy(tmp_path / "tables")
    clicks_path = str(run.root / "raw" / "clicks")
    drifted = change(storage.read(clicks_path))
    storage.write(drifted, str(tmp_path / "drifted_clicks"), mode="overwrite", partition_by=["event_date"])
    versions = {name: DeltaTable(str(run.root / name)).version() for name in ("features", "quarantine")}

    with pytest.raises(SchemaError, match=message):
        load_job("features")(
            ["--date", DAY, *run.settings, "--set", f"tables.clicks={tmp_path}/drifted_clicks"]
        )
    assert {name: DeltaTable(str(run.root / name)).version() for name in versions} == versions
