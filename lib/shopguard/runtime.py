"""The edge of every job: logging, the one place a SparkSession is built, the run's start and end lines,
progress of long Spark stages, the record of each run, and the exit code.

Transforms never import this module; jobs call it first and hand plain values to the transforms. The command
line itself is declared in `shopguard.cli`, which checks arguments before any JVM starts.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from shopguard.config import CatalogSettings, Settings, SparkSettings, StorageSettings
from shopguard.errors import MEANING, ExitCode, InputError, JobError, classify

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from shopguard.storage import DeltaStorage

__all__ = ["InputError", "JobError", "RunInfo", "build_spark", "run_job", "spark_job"]

log = logging.getLogger("shopguard")
LOG_FORMAT, LOG_DATE = "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"

# Settings shopguard's correctness depends on; not configurable.
REQUIRED_SPARK_CONF: dict[str, str] = {
    # Days, windows and partitions are UTC days whatever the machine's zone.
    "spark.sql.session.timeZone": "UTC",
    # Delta's own writers use INT64 microseconds; Spark's default INT96 is legacy.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Spark -> pandas and pandas UDFs through Arrow batches.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Writes commit through the Delta log; a _SUCCESS marker would only be litter in the table.
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
}


def configure_logging(level: str | int = "INFO", log_file: str | None = None) -> None:
    """One line per event on stderr, and in `log_file` too when given (--log-file)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATE, stream=sys.stderr, force=True)
    if log_file:
        add_log_file(log_file)
    for noisy in ("py4j", "absl", "tensorflow", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_log_file(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE))
    logging.getLogger().addHandler(handler)


def spark_conf(
    settings: SparkSettings,
    storage: StorageSettings | None = None,
    catalog: CatalogSettings | None = None,
    driver_jvm: bool = True,
) -> dict[str, str]:
    """Everything the session is built with: conf/'s spark.conf, the Delta jars where setup fetched them,
    the shared metastore where the catalog is on, the settings shopguard's correctness depends on, and
    (`driver_jvm`) the driver JVM's log configuration and class archive, and the archive for executors
    (shopguard.driverjvm)."""
    from shopguard.deltajars import delta_conf
    from shopguard.driverjvm import EXECUTOR_JAVA_OPTIONS, archive_options, java_options, with_java_options
    from shopguard.warehouse import metastore_conf

    extra = {
        **(delta_conf(storage) if storage else {}),
        **(metastore_conf(catalog, storage) if catalog and storage else {}),
    }
    conf = {**settings.conf, **extra, **REQUIRED_SPARK_CONF}
    if not driver_jvm:
        return conf
    conf = with_java_options(conf, archive_options(settings), EXECUTOR_JAVA_OPTIONS)
    return with_java_options(conf, java_options(settings))


def build_spark(
    settings: SparkSettings,
    app_name: str | None = None,
    storage: StorageSettings | None = None,
    catalog: CatalogSettings | None = None,
):
    """The one place shopguard builds a SparkSession."""
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter, the one that has pandas, pyarrow and Keras.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    builder = SparkSession.builder.appName(app_name or settings.app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit, which set the master
        builder = builder.master(settings.master)
    for key, value in spark_conf(settings, storage, catalog).items():
        builder = builder.config(key, value)
    if catalog is not None and catalog.enabled:
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _check_java(spark)
    check_executors_java(spark)
    return spark


def _check_java(spark: SparkSession) -> None:
    """ConfigError, before the job reads or writes anything, on a JVM shopguard refuses
    (shopguard.javaversion); JAVA_HOME may have changed since setup checked it. A warning on one Spark does
    not name."""
    from shopguard import javaversion

    jvm: Any = spark.sparkContext._jvm
    version, home = (str(jvm.java.lang.System.getProperty(name)) for name in ("java.version", "java.home"))
    _judge_java(spark, version, f"the driver's JVM: {home}", javaversion.refusal)


def check_executors_java(spark: SparkSession, refuse: Callable[[str], str | None] | None = None) -> None:
    """On a cluster the executors run JVMs of their own, perhaps another Java than the driver's, and they
    are the ones that write the Parquet files a refused Java may corrupt. One small job asks the JVMs that
    run its tasks (two per core the application has, so every executor registered so far takes some) for
    their Java: a ConfigError (exit 2), before anything is read or written, where `refuse` (by default
    shopguard.javaversion.refusal) refuses one of them. Executors that join later are not asked. In local
    mode the executors are the driver's JVM, checked already."""
    from shopguard import javaversion

    context = spark.sparkContext
    if str(context.master).startswith("local"):
        return
    tasks = 2 * max(context.defaultParallelism, 1)
    asked = {
        "version": "reflect('java.lang.System', 'getProperty', 'java.version')",
        "home": "reflect('java.lang.System', 'getProperty', 'java.home')",
        "host": "reflect('org.apache.spark.util.Utils', 'localHostName')",
    }
    rows = spark.range(0, tasks, 1, tasks).selectExpr(*(f"{e} AS {n}" for n, e in asked.items())).collect()
    found: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        found.setdefault((row.version, row.home), set()).add(row.host)
    for (version, home), hosts in sorted(found.items()):
        where = f"{home} on {', '.join(sorted(hosts))}"
        _judge_java(spark, version, f"the executors' JVM: {where}", refuse or javaversion.refusal)
        log.info("executors run Java %s: %s", version, where)


def _judge_java(spark: SparkSession, version: str, jvm: str, refuse: Callable[[str], str | None]) -> None:
    """The one verdict on a JVM's Java (`jvm` says which): the session stopped and a ConfigError where
    `refuse` refuses it, a warning where Spark does not name it."""
    from shopguard import javaversion
    from shopguard.config import ConfigError

    reason = refuse(version)
    if reason is not None:
        spark.stop()
        raise ConfigError(f"{reason} ({jvm})")
    note = javaversion.warning(version)
    if note is not None:
        log.warning("%s (%s)", note, jvm)


@dataclass(frozen=True)
class RunInfo:
    """Identifies one run of a job in logs, in the run records and in the commit metadata of its tables."""

    job: str
    run_id: str
    started_at: datetime
    counts: dict[str, Any] = field(default_factory=dict)  # what the run read and wrote, for its end line

    @classmethod
    def start(cls, job: str) -> RunInfo:
        return cls(job=job, run_id=uuid.uuid4().hex[:16], started_at=datetime.now(UTC))

    def commit_info(self, **counts: object) -> dict[str, object]:
        return {"job": self.job, "run_id": self.run_id, **counts}

    def note(self, **counts: Any) -> None:
        """Row counts the end line and the run record report."""
        self.counts.update(counts)

    def seconds(self) -> float:
        return (datetime.now(UTC) - self.started_at).total_seconds()


class StageProgress(threading.Thread):
    """Every `interval` seconds, one line per running Spark stage: its name and tasks done, so a long stage
    is never silence."""

    def __init__(self, spark: SparkSession, interval: float) -> None:
        super().__init__(name="shopguard-progress", daemon=True)
        self.tracker = spark.sparkContext.statusTracker()
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                for stage_id in sorted(self.tracker.getActiveStageIds()):
                    info = self.tracker.getStageInfo(stage_id)
                    if info is not None:
                        log.info("stage %d (%s): %d/%d tasks done, %d running", stage_id,
                                 info.name.split(" at ")[0], info.numCompletedTasks, info.numTasks,
                                 info.numActiveTasks)  # fmt: skip
            except Exception:  # noqa: BLE001 - the session is stopping; progress is only a courtesy
                return

    def stop(self) -> None:
        self.stopped.set()


def _import_in_background(modules: Sequence[str]) -> None:
    """Import `modules` on a daemon thread. Python's per-module import locks make a later import of the same
    module wait for this one to finish, and an import that fails here fails again, with its own error,
    where the job imports the module itself."""

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported by the job's own import
                log.debug("background import of %s failed: %s", name, exc)
                return

    if modules:
        threading.Thread(target=load, name="shopguard-preload", daemon=True).start()


@contextmanager
def spark_job(
    job: str, settings: Settings, day: date | None = None, preload: Sequence[str] = ()
) -> Iterator[tuple[SparkSession, DeltaStorage, RunInfo]]:
    """Session, storage and run identity for one job run, with its start and end lines and its run record.

    A job started by spark-submit builds its session and stops it however the run ends; a job called where
    a session is already active (a notebook, an orchestrator, the end-to-end test) uses that one and leaves
    it running for its owner. `preload`: modules the job needs only after its Spark work (Keras: ~5 s),
    imported in the background while the JVM starts and the job reads its inputs."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    from shopguard.runlog import record_run
    from shopguard.storage import open_storage

    _import_in_background(preload)
    run = RunInfo.start(job)
    # Another owner's session, whichever thread made it (the active session is per thread).
    owned_elsewhere = SparkContext._active_spark_context is not None
    spark = (
        SparkSession.builder.getOrCreate()
        if owned_elsewhere
        else build_spark(
            settings.spark, f"{settings.spark.app_name}-{job}", settings.storage, settings.catalog
        )
    )
    progress = StageProgress(spark, settings.logging.progress_seconds)
    if settings.logging.progress_seconds > 0:
        progress.start()
    code, message = ExitCode.OK, None
    try:
        storage = open_storage(spark, settings.storage.backend, settings.storage.storage_options)
        log.info("%s started: run %s%s, profile %s, master %s, storage %s", job, run.run_id,
                 f", date {day}" if day else "", settings.profile, spark.sparkContext.master, storage.name)  # fmt: skip
        if settings.catalog.enabled:
            from shopguard.warehouse import check_registrations

            check_registrations(spark, settings, storage)  # before anything is written
        yield spark, storage, run
        _register(spark, settings, storage)
    except BaseException as exc:
        code, message = classify(exc)
        if code == ExitCode.MONITOR:  # a night failed by monitoring wrote every table: analysts need them
            _register(spark, settings, storage)
        raise
    finally:
        progress.stop()
        if not owned_elsewhere:
            spark.stop()
        counts = ", ".join(f"{k} {v}" for k, v in run.counts.items())
        outcome = "succeeded" if code == ExitCode.OK else f"FAILED (exit {int(code)})"
        log.info("%s %s in %.1f s%s", job, outcome, run.seconds(), f": {counts}" if counts else "")
        record_run(settings.tables.path("runs"), {
            "job": job, "run_id": run.run_id, "date": day.isoformat() if day else None,
            "started_at": run.started_at.isoformat(), "seconds": round(run.seconds(), 1),
            "exit_code": int(code), "outcome": "success" if code == ExitCode.OK else "failed",
            "message": message, "counts": run.counts, "profile": settings.profile,
        })  # fmt: skip


def _register(spark: SparkSession, settings: Settings, storage: DeltaStorage) -> None:
    if settings.catalog.enabled:
        from shopguard.warehouse import register_tables

        registered = register_tables(spark, settings, storage)
        log.info("registered in the catalog: %s", ", ".join(registered) or "nothing")


def run_job(main: Callable[[], None]) -> int:
    """Run a job's main and return its exit code (errors.ExitCode): expected failures end with one line
    that names the cause and what to do, not a traceback; the unexpected keep their traceback."""
    try:
        main()
    except SystemExit as exc:  # argparse: 0 for --help, 2 for a bad argument
        return int(exc.code or 0) if isinstance(exc.code, int) else ExitCode.USAGE
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes an exit code
        code, line = classify(exc)
        if code == ExitCode.FAILURE:
            log.exception("unexpected failure")
        log.error("exit %d (%s): %s", int(code), MEANING[code], line)
        return int(code)
    return int(ExitCode.OK)


def main_entry(main: Callable[[], None]) -> None:
    """`if __name__ == "__main__"` of every job: exit with the job's code, whatever the libraries it loaded
    do at interpreter shutdown (a native library aborting in its destructor cannot turn 0 into 134)."""
    configure_logging()
    code = run_job(main)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def pseudonym_key(settings: Settings) -> bytes | None:
    """The pseudonymisation key when privacy.pseudonymise is on (from the environment or a secrets file)."""
    if not settings.privacy.pseudonymise:
        return None
    from shopguard.privacy import load_key

    return load_key(settings.privacy.key_env, settings.privacy.key_file, settings.conf_dir)
