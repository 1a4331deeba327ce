"""The driver JVM's start: Spark's classes from the archive setup built, Spark's own logging at warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import class_sources

from shopguard import javaversion
from shopguard.config import CHECKOUT, load_settings
from shopguard.driverjvm import FIRST_QUERY, JAVA_OPTIONS, archive_path
from shopguard.runtime import spark_conf


def _spark_submit(tmp_path: Path, java_options: str) -> subprocess.CompletedProcess:
    """A first query in a fresh driver JVM started as the jobs start theirs (no SPARK_CONF_DIR)."""
    script = tmp_path / "first_query.py"
    script.write_text(FIRST_QUERY)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_CONF_DIR", None)
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]",
               "--conf", f"{JAVA_OPTIONS}={java_options}", str(script)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def test_a_jobs_driver_maps_sparks_classes_from_the_archive_setup_built(tmp_path):
    settings = load_settings().spark
    options = spark_conf(settings)[JAVA_OPTIONS]
    assert f"-XX:SharedArchiveFile={archive_path(settings)}" in options

    loaded = tmp_path / "classes.log"
    done = _spark_submit(tmp_path, f"{options} -Xlog:class+load=info:file={loaded}")

    assert done.returncode == 0, done.stderr[-2000:]
    sources = class_sources(loaded)
    for name in ("org.apache.spark.SparkContext", "org.apache.spark.sql.catalyst.plans.logical.LogicalPlan"):
        assert sources[name] == "shared objects file (top)", (name, sources[name])
    # Spark logs warnings only (conf/spark/log4j2.properties), named by the same options
    assert not [line for line in done.stderr.splitlines() if " INFO " in line], done.stderr[-2000:]


def test_an_archive_the_jvm_cannot_use_is_skipped_quietly(tmp_path):
    stale = tmp_path / "stale.jsa"
    stale.write_bytes(b"not an archive of this JVM" * 100)  # as after a JDK or pyspark upgrade
    options = spark_conf(load_settings().spark)[JAVA_OPTIONS]
    options = options.replace(f"-XX:SharedArchiveFile={archive_path(load_settings().spark)}",
                              f"-XX:SharedArchiveFile={stale}")  # fmt: skip
    assert str(stale) in options

    done = _spark_submit(tmp_path, options)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "cds" not in (done.stdout + done.stderr).lower()


def test_without_an_archive_the_driver_gets_the_log_configuration_alone():
    settings = load_settings(overrides=["spark.class_archive=null"]).spark
    options = spark_conf(settings)[JAVA_OPTIONS]
    assert "SharedArchiveFile" not in options
    assert options.startswith("-XX:+UseParallelGC -Dlog4j2.configurationFile=")
    assert "log4j2" not in spark_conf(settings, driver_jvm=False)[JAVA_OPTIONS]


def test_java_versions_spark_predates_or_deprecates_are_refused_and_the_others_run():
    for refused in ("11.0.22", "1.8.0_392", "25", "25.0.1", "25.0.2", "25-ea"):
        assert javaversion.refusal(refused) is not None, refused
    assert "25.0.3 or later" in javaversion.refusal("25.0.2")
    assert "17 or newer" in javaversion.refusal("1.8.0_392")
    for runs in ("17.0.15", "21.0.5", "21-ea", "25.0.3", "25.1.0", "26"):
        assert javaversion.refusal(runs) is None, runs
    assert javaversion.warning("26") is not None and javaversion.warning("17.0.15") is None


def test_setup_refuses_a_java_25_before_25_0_3_before_installing_anything(tmp_path):
    """The rule runs on the machine's python3 before any virtual environment exists."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'openjdk version \"25.0.2\" 2026-01-20 LTS' >&2\n")
    java.chmod(0o755)
    venv = tmp_path / "venv"
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "jdk"), "SHOPGUARD_VENV": str(venv)}

    done = subprocess.run(["./submit.sh", "setup"], cwd=CHECKOUT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Java 25.0.2: Spark 4.2 deprecates Java 25 before 25.0.3" in done.stderr
    assert not venv.exists()
