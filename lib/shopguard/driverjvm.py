"""What the driver's JVM starts with besides conf/'s settings: Spark's log configuration and the class-data
archive that `./submit.sh setup` builds; executors are given the archive too.

Every job is a fresh JVM that loads and verifies some twenty thousand classes of Spark's jars before its
first query. A dynamic class-data sharing archive (CDS, JDK 13+) holds them parsed and verified, mapped
at start instead (measured on 2 cores: a trivial spark-submit 8.9 s -> 5.5 s; the features job at 1 M
events 51 -> 46 s, the score job 27.6 -> 23.5 s). The JVM checks the archive against its own build and
class path; where they differ (another JDK, pyspark reinstalled, a SPARK_CONF_DIR on the class path) it
starts without it, only slower, and setup builds it again. A directory on the class path cannot be
archived, so Spark's log configuration (warnings only) is named by a system property, not put on the
class path through SPARK_CONF_DIR.

Executors on the machine where setup ran (a standalone cluster from `./submit.sh cluster-up`, the tests')
start from pyspark's same jars, so they map the same archive: measured on the test cluster (two 1-core
workers), each application's executors registered 2-3 s sooner. An executor on another host finds no file
at that path, or one from another build, and starts as it would without the option.

    python -m shopguard.driverjvm        # what setup runs: builds the archive, prints where and how big
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from shopguard.config import CHECKOUT, Settings, SparkSettings, checkout_path

LOG_CONFIG = CHECKOUT / "conf" / "spark" / "log4j2.properties"
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
EXECUTOR_JAVA_OPTIONS = "spark.executor.extraJavaOptions"
FIRST_QUERY = "from pyspark.sql import SparkSession\nSparkSession.builder.getOrCreate().range(3).count()\n"
# A stale archive is the JVM's to refuse; it says so in CDS log lines, which would end up in every job's log.
_QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def archive_path(settings: SparkSettings) -> Path | None:
    """Where setup puts the archive (spark.class_archive, relative to the checkout), or None: off."""
    return checkout_path(settings.class_archive)


def archive_options(settings: SparkSettings) -> list[str]:
    """The options that map the archive, where setup built it; none otherwise."""
    archive = archive_path(settings)
    if archive is None or not archive.is_file():
        return []
    return [f"-XX:SharedArchiveFile={archive}", *_QUIET]


def java_options(settings: SparkSettings) -> list[str]:
    """The driver's JVM options shopguard adds to conf/'s: the log configuration, and the archive where
    setup built it."""
    return [f"-Dlog4j2.configurationFile={LOG_CONFIG}", *archive_options(settings)]


def with_java_options(conf: dict[str, str], options: list[str], key: str = JAVA_OPTIONS) -> dict[str, str]:
    """conf with `options` after conf/'s own value of `key` (the driver's extraJavaOptions unless told)."""
    joined = " ".join([conf.get(key, ""), *options]).strip()
    return {**conf, key: joined} if joined else conf


# --------------------------------------------------------------------------- building the archive


def build(settings: Settings) -> Path | None:
    """Run a small pipeline (generate and features on a few hundred users, a pandas UDF) in a JVM that
    dumps every class it loaded at exit, then move the archive into place; None when the setting is off."""
    from shopguard.runtime import spark_conf

    target = archive_path(settings.spark)
    if target is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    conf = spark_conf(settings.spark, settings.storage, driver_jvm=False)
    # The job's environment (submit.sh's need_venv): pyspark's own Spark, no conf directory on the class path.
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("SPARK_HOME", None)
    env.pop("SPARK_CONF_DIR", None)
    log_option = java_options(settings.spark)[0]
    with tempfile.TemporaryDirectory() as root:
        log = Path(root) / "dump.log"
        script = Path(root) / "first_query.py"
        script.write_text(FIRST_QUERY)
        steps = [
            ([f"-XX:ArchiveClassesAtExit={partial}"], [__file__, "--workload", root]),
            # A JVM given an archive cut short crashes (JDK 17, relocating it) instead of starting without
            # it: only an archive a JVM has mapped with every check on (-Xshare:on) replaces the last one.
            ([f"-XX:SharedArchiveFile={partial}", "-Xshare:on"], [str(script)]),
        ]
        for options, program in steps:
            command = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]"]
            for key, value in with_java_options(conf, [log_option, *options]).items():
                command += ["--conf", f"{key}={value}"]
            with open(log, "ab") as out:
                done = subprocess.run([*command, *program], stdout=out, stderr=subprocess.STDOUT, env=env,
                                      cwd=CHECKOUT, check=False)  # fmt: skip
            if done.returncode != 0 or not partial.is_file():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                partial.unlink(missing_ok=True)
                raise RuntimeError(
                    f"no class archive (exit {done.returncode} of {program[0]}):\n" + "\n".join(tail)
                )
    os.replace(partial, target)
    return target


def _workload(root: str) -> None:
    """What the jobs load: Delta reads and writes, validation, the features' windows and aggregates,
    caching and the counts over the caches, and a pandas UDF over Arrow."""
    import pandas as pd

    from shopguard.catalog import Tables
    from shopguard.config import load_settings
    from shopguard.runtime import RunInfo, build_spark
    from shopguard.steps import features, generate
    from shopguard.storage import open_storage

    day = date(2026, 11, 22)
    settings = load_settings(overrides=[f"tables.root={root}", "generate.users=300", "generate.days=3",
                                        f"generate.end_date={day}"])  # fmt: skip
    spark = build_spark(settings.spark, "shopguard-class-archive", settings.storage)
    try:
        storage = open_storage(spark, settings.storage.backend, settings.storage.storage_options)
        tables = Tables(storage, settings.tables)
        generate.run(tables, settings.generate, RunInfo.start("generate"))
        features.run(tables, settings, RunInfo.start("features"), day, None)

        def doubled(batches):
            for pdf in batches:
                yield pd.DataFrame({"x": pdf["id"] * 2})

        spark.range(1000).mapInPandas(doubled, "x long").toPandas()
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--workload"]:
        _workload(argv[1])
        return 0
    from shopguard.config import load_settings

    started = time.perf_counter()
    try:
        built = build(load_settings())
    except RuntimeError as exc:
        print(f"shopguard.driverjvm: {exc}", file=sys.stderr)
        return 1
    if built is None:
        print("no class archive: spark.class_archive is null")
    else:
        size = built.stat().st_size / 2**20
        print(f"class archive {built} ({size:.0f} MiB) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
