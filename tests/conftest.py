"""One local SparkSession for the whole test run, built the way the jobs build theirs, and one small
pipeline run (every job on 1,500 generated users) that the end-to-end and fault tests share."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PSEUDONYM_KEY = "test-pseudonym-key-0123456789"

from deltalake import DeltaTable  # noqa: E402

from shopguard.config import SparkSettings, StorageSettings  # noqa: E402
from shopguard.runtime import build_spark  # noqa: E402
from shopguard.storage import open_storage  # noqa: E402

TEST_SPARK = SparkSettings(
    master="local[2,3]",  # failed tasks are retried, as on a cluster
    app_name="shopguard-tests",
    conf={
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "3g",
        "spark.driver.extraJavaOptions": "-XX:+UseParallelGC",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
        "spark.executorEnv.TF_NUM_INTRAOP_THREADS": "1",
        "spark.executorEnv.TF_NUM_INTEROP_THREADS": "1",
    },
)
DAY = "2026-11-22"
# A fresh JVM per submit.sh call: keep it small.
SUBMIT_FAST = [
    "--set", "spark.master=local[2,4]",
    "--set", "spark.conf.spark.sql.shuffle.partitions=4",
    "--set", "spark.conf.spark.driver.memory=2g",
    "--set", "spark.conf.spark.ui.enabled=false",
]  # fmt: skip


@pytest.fixture(scope="session")
def spark():
    session = build_spark(TEST_SPARK, storage=StorageSettings())  # with the Delta jars setup fetched
    yield session
    session.stop()


BACKENDS = ("delta-spark", "delta-rs")


@pytest.fixture(params=BACKENDS)
def storage(spark, request):
    """Each storage test runs on both backends: delta-spark (the normal path) and delta-rs (the fallback)."""
    return open_storage(spark, request.param)


def wait_for(predicate, timeout: float = 300.0) -> None:
    """Polls `predicate` until it holds; TimeoutError when it has not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def class_sources(log: Path) -> dict[str, str]:
    """Class name -> where the JVM loaded it from, out of an `-Xlog:class+load=info:file=...` log."""
    return {
        line.split()[1]: line.split(" source: ")[-1]
        for line in log.read_text().splitlines()
        if " source: " in line
    }


def plant_uncommitted_file(table: Path | str, age_hours: float) -> Path:
    """A Parquet file beside one of the table's committed files that no commit references, as a killed write
    leaves it, last modified `age_hours` ago: what vacuum deletes once older than the retention."""
    committed = Path(DeltaTable(str(table)).file_uris()[0].removeprefix("file://"))
    orphan = committed.with_name("part-00000-left-by-a-killed-write.c000.snappy.parquet")
    orphan.write_bytes(committed.read_bytes())
    then = time.time() - age_hours * 3600
    os.utime(orphan, (then, then))
    return orphan


def load_script(relative: str):
    """A module loaded from a script of the repository (jobs/, bench/), which are not packages."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"shopguard_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_job(name: str):
    """A job's main(), loaded from jobs/<name>.py."""
    return load_script(f"jobs/{name}.py").main


def submit(
    *args: str, env: dict[str, str] | None = None, timeout: int = 600, **popen
) -> subprocess.CompletedProcess:
    """./submit.sh in a process of its own, as an operator runs it."""
    return subprocess.run(
        [str(ROOT / "submit.sh"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, **popen,
    )  # fmt: skip


@dataclass(frozen=True)
class Pipeline:
    root: Path
    settings: list[str]
    first_scores: pd.DataFrame
    log: str

    def table(self, name: str) -> DeltaTable:
        return DeltaTable(str(self.root / name))

    def copy(self, target: Path) -> Pipeline:
        """The same tables elsewhere (Delta tables are relocatable), for tests that change them."""
        shutil.copytree(self.root, target)
        settings = [s.replace(str(self.root), str(target)) for s in self.settings]
        return Pipeline(target, settings, self.first_scores, self.log)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="session", params=BACKENDS)
def pipeline(spark, tmp_path_factory, request) -> Pipeline:
    """generate -> features -> train -> score, then features and score again for the same date, each job's
    main() in this process on the test session (as an orchestrator would run them), pseudonymisation on.
    Once per storage backend: every test that uses it runs on delta-spark and on delta-rs."""
    os.environ["SHOPGUARD_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    root = tmp_path_factory.mktemp(f"pipeline-{request.param}")
    settings = [
        "--set", f"tables.root={root}", "--set", "generate.users=1500", "--set", "generate.dirty_share=0.002",
        "--set", "model.epochs=15", "--set", "privacy.pseudonymise=true", "--set", f"storage.backend={request.param}",
    ]  # fmt: skip
    collect = _Collect()
    logging.getLogger().addHandler(collect)
    logging.getLogger("shopguard").setLevel(logging.DEBUG)
    try:
        load_job("generate")(["--end-date", DAY, *settings])
        load_job("features")(["--date", DAY, *settings])
        load_job("train")(["--date", DAY, *settings])
        load_job("score")(["--date", DAY, *settings])
        first_scores = DeltaTable(str(root / "scores")).to_pandas()
        load_job("features")(["--date", DAY, *settings])  # reruns for the same date
        load_job("score")(["--date", DAY, *settings])
    finally:
        logging.getLogger().removeHandler(collect)
    return Pipeline(root, settings, first_scores, "\n".join(collect.lines))
