"""One local SparkSession for the whole test run, built the way the jobs build theirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_CONF_DIR", str(Path(__file__).resolve().parents[1] / "conf" / "spark"))

from shopguard.config import SparkSettings  # noqa: E402
from shopguard.runtime import build_spark  # noqa: E402
from shopguard.storage import DeltaRsStorage  # noqa: E402

TEST_SPARK = SparkSettings(
    master="local[2,3]",  # failed tasks are retried, as on a cluster
    app_name="shopguard-tests",
    conf={
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "3g",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
        "spark.executorEnv.TF_NUM_INTRAOP_THREADS": "1",
        "spark.executorEnv.TF_NUM_INTEROP_THREADS": "1",
    },
)


@pytest.fixture(scope="session")
def spark():
    session = build_spark(TEST_SPARK)
    yield session
    session.stop()


@pytest.fixture
def storage(spark):
    """The delta-rs path: the one these machines can run (no Delta jars)."""
    return DeltaRsStorage(spark)
