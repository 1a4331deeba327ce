"""The edge of every job: command-line arguments, settings, logging and the one place a SparkSession is built.

Transforms never import this module; jobs call it first and hand plain values to the transforms.

`python -m shopguard.runtime submit-args [job args]` prints the spark-submit options (master, --conf) that
the merged configuration asks for; submit.sh uses it so that settings the JVM needs at launch (driver
memory) come from conf/ too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from shopguard.config import DEFAULT_CONF_DIR, ConfigError, Settings, SparkSettings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from shopguard.storage import DeltaStorage

log = logging.getLogger("shopguard")

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


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from None


def job_arg_parser(description: str, *, needs_date: bool = False) -> argparse.ArgumentParser:
    """Arguments every job takes; a job adds its own to the parser this returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--profile",
        default=os.environ.get("SHOPGUARD_PROFILE", "local"),
        help="conf/profiles/<profile>.yml to use (default: local, or $SHOPGUARD_PROFILE)",
    )
    parser.add_argument(
        "--conf-dir",
        default=os.environ.get("SHOPGUARD_CONF_DIR") or str(DEFAULT_CONF_DIR),
        help="the configuration folder (default: the repository's conf/, or $SHOPGUARD_CONF_DIR)",
    )
    parser.add_argument("--conf-file", action="append", default=[], help="extra YAML merged over conf/")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a setting: --set model.epochs=5, --set spark.conf.spark.sql.shuffle.partitions=8",
    )
    parser.add_argument("--master", help="Spark master (overrides spark.master)")
    if needs_date:
        parser.add_argument(
            "--date", type=parse_date, required=True, help="snapshot date, YYYY-MM-DD (UTC day, inclusive)"
        )
    return parser


def settings_from_args(args: argparse.Namespace, **flags: object) -> Settings:
    """Settings from conf/ and the command line; `flags` maps section__key to a job flag (None: not given)."""
    overrides = list(args.overrides)
    if getattr(args, "master", None):
        overrides.append(f"spark.master={args.master}")
    overrides += [f"{key.replace('__', '.')}={value}" for key, value in flags.items() if value is not None]
    return load_settings(
        profile=args.profile, conf_files=args.conf_file, overrides=overrides, conf_dir=args.conf_dir
    )


def configure_logging(level: str | int = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("py4j", "absl", "tensorflow", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def spark_conf(settings: SparkSettings) -> dict[str, str]:
    return {**settings.conf, **REQUIRED_SPARK_CONF}


def build_spark(settings: SparkSettings, app_name: str | None = None):
    """The one place shopguard builds a SparkSession."""
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter, the one that has pandas, pyarrow and Keras.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    builder = SparkSession.builder.appName(app_name or settings.app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit, which set the master
        builder = builder.master(settings.master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@dataclass(frozen=True)
class RunInfo:
    """Identifies one run of a job in logs and in the commit metadata of the tables it writes."""

    job: str
    run_id: str
    started_at: datetime

    @classmethod
    def start(cls, job: str) -> RunInfo:
        return cls(job=job, run_id=uuid.uuid4().hex[:16], started_at=datetime.now(UTC))

    def commit_info(self, **counts: object) -> dict[str, object]:
        return {"job": self.job, "run_id": self.run_id, **counts}


@contextmanager
def spark_job(job: str, settings: Settings) -> Iterator[tuple[SparkSession, DeltaStorage, RunInfo]]:
    """Session, storage and run identity for one job run.

    A job started by spark-submit builds its session and stops it however the run ends; a job called where
    a session is already active (a notebook, an orchestrator, the end-to-end test) uses that one and leaves
    it running for its owner."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    from shopguard.storage import open_storage

    run = RunInfo.start(job)
    # Another owner's session, whichever thread made it (the active session is per thread).
    owned_elsewhere = SparkContext._active_spark_context is not None
    spark = (
        SparkSession.builder.getOrCreate()
        if owned_elsewhere
        else build_spark(settings.spark, f"{settings.spark.app_name}-{job}")
    )
    try:
        storage = open_storage(spark, settings.storage.backend, settings.storage.storage_options)
        log.info(
            "%s run %s: profile %s, master %s, storage %s",
            job,
            run.run_id,
            settings.profile,
            spark.sparkContext.master,
            storage.name,
        )
        yield spark, storage, run
    finally:
        if not owned_elsewhere:
            spark.stop()


def exit_on_error(main: Callable[[], None]) -> None:
    """Run a job's main; expected failures end with one clear line and exit status 2, not a traceback."""
    from shopguard.privacy import PseudonymKeyError
    from shopguard.registry import ModelIntegrityError, ModelNotFoundError
    from shopguard.scoring import ModelMismatchError
    from shopguard.storage import StorageError
    from shopguard.validation import SchemaError

    configure_logging()
    try:
        main()
    except (
        ConfigError,
        SchemaError,
        StorageError,
        ModelMismatchError,
        ModelNotFoundError,
        ModelIntegrityError,
        PseudonymKeyError,
        JobError,
    ) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        sys.exit(2)


def pseudonym_key(settings: Settings) -> bytes | None:
    """The pseudonymisation key when privacy.pseudonymise is on (from the environment or a secrets file)."""
    if not settings.privacy.pseudonymise:
        return None
    from shopguard.privacy import load_key

    return load_key(settings.privacy.key_env, settings.privacy.key_file, settings.conf_dir)


class JobError(RuntimeError):
    """A job cannot do what it was asked with the data it found (e.g. no features for that date)."""


def submit_args(argv: Sequence[str]) -> list[str]:
    """spark-submit options for a job invoked with `argv` (job-specific arguments are ignored)."""
    parser = job_arg_parser("spark-submit options")
    args, _ = parser.parse_known_args(argv)
    settings = settings_from_args(args)
    options = ["--master", settings.spark.master, "--name", settings.spark.app_name]
    for key, value in spark_conf(settings.spark).items():
        options += ["--conf", f"{key}={value}"]
    return options


def _main(argv: Sequence[str]) -> int:
    if not argv or argv[0] != "submit-args":
        print("usage: python -m shopguard.runtime submit-args [job arguments]", file=sys.stderr)
        return 2
    try:
        print("\n".join(submit_args(argv[1:])))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
