"""Delta Lake's jars for the Spark that pyspark ships: fetched once by `./submit.sh setup`, through Spark's own
Ivy from Maven Central (conf/spark/ivysettings.xml), into a git-ignored folder that every job then puts on
Spark's classpath (`spark.jars`), with Delta's SQL extension and catalog.

    python -m shopguard.deltajars        # what setup runs; prints the jars, or the registry's refusal

Only the two jars Delta's Spark connector needs are kept (delta-spark, delta-storage): the rest of what the
POM drags in (Hadoop, Parquet, Jackson, log4j) is already in pyspark, at the versions Spark was built with.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from shopguard.config import CHECKOUT, StorageSettings, checkout_path

IVY_SETTINGS = CHECKOUT / "conf" / "spark" / "ivysettings.xml"
SCALA = "2.13"
DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # shopguard enforces its own vacuum floor (storage.VACUUM_FLOOR_HOURS, 24 h) instead of Delta's 168 h.
    "spark.databricks.delta.retentionDurationCheck.enabled": "false",
    # and VACUUM's RETAIN clause is maintenance.retention_hours: Delta 4 ignores it by default (this internal
    # switch) for the table's delta.deletedFileRetentionDuration (7 days), and only logs a warning.
    "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
}


# Derby's network server and client for the shared Hive metastore (shopguard.warehouse), at the version of
# the Derby engine pyspark ships, fetched the same way.
DERBY = ("org.apache.derby:derbynet:10.16.1.1", "org.apache.derby:derbyclient:10.16.1.1")


def artifacts(version: str) -> list[str]:
    """Maven coordinates of Delta's connector for the installed Spark (named per Spark minor version), and
    of the metastore database's server and client."""
    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return [
        f"io.delta:delta-spark_{spark_minor}_{SCALA}:{version}",
        f"io.delta:delta-storage:{version}",
        *DERBY,
    ]


def jar_folder(settings: StorageSettings) -> Path | None:
    return checkout_path(settings.delta_jars)


def jars(settings: StorageSettings) -> list[Path]:
    """The fetched Delta jars, or [] when there are none (then `auto` storage falls back to delta-rs)."""
    folder = jar_folder(settings)
    if folder is None or settings.backend == "delta-rs" or not folder.is_dir():
        return []
    return sorted(folder.glob("io.delta_*.jar"))


def delta_conf(settings: StorageSettings) -> dict[str, str]:
    """Spark settings that put the fetched Delta jars on the classpath, with Delta's SQL extension."""
    found = jars(settings)
    if not found:
        return {}
    return {"spark.jars": ",".join(str(j) for j in found), **DELTA_SQL_CONF}


def fetch(settings: StorageSettings) -> list[Path]:
    """Resolve the jars with Spark's Ivy (a throwaway local session) and keep the two Delta needs."""
    from pyspark.sql import SparkSession

    folder = jar_folder(settings)
    if folder is None:
        return []
    with tempfile.TemporaryDirectory() as ivy_home:
        spark = (
            SparkSession.builder.master("local[1]")
            .appName("shopguard-setup-delta-jars")
            .config("spark.jars.packages", ",".join(artifacts(settings.delta_version)))
            .config("spark.jars.ivy", ivy_home)
            .config("spark.jars.ivySettings", str(IVY_SETTINGS))
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        spark.stop()
        names = [c.split(":")[1] for c in artifacts(settings.delta_version)]
        resolved = [p for p in Path(ivy_home, "jars").glob("*.jar") if any(f"_{n}-" in p.name for n in names)]
        if len(resolved) != len(names):
            raise RuntimeError(f"Ivy resolved {sorted(p.name for p in resolved)}, expected {names}")
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for jar in resolved:
            shutil.copy2(jar, folder / jar.name)
    return jars(settings)


if __name__ == "__main__":
    from shopguard.config import load_settings

    storage = load_settings().storage
    present = jars(storage)
    folder = jar_folder(storage)
    derby = folder is not None and any(folder.glob("*derbynet*.jar"))
    if present and derby and all(storage.delta_version in p.name for p in present):
        print("Delta jars: " + ", ".join(p.name for p in present) + " (already fetched)")
        sys.exit(0)
    try:
        fetched = fetch(storage)
    except Exception as exc:  # noqa: BLE001 - setup reports the refusal and goes on with delta-rs
        print(f"could not fetch Delta's jars {artifacts(storage.delta_version)}: {exc}", file=sys.stderr)
        sys.exit(3)
    print("Delta jars: " + ", ".join(p.name for p in fetched))
