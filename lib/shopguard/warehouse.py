"""The warehouse: every table the jobs write registered in one catalog database (`catalog.database`) of a Hive
metastore that several processes share, and Spark's Thrift JDBC/ODBC server over it for analysts (beeline,
DBeaver, Superset, any Hive/Spark JDBC client).

Spark's embedded Derby metastore admits one process at a time, but the jobs and the server must share the
catalog, so the metastore database is reached over the network: Derby's own network server (the engine
ships in pyspark; the server and client jars are fetched by setup) that `./submit.sh warehouse up` and the
tests start on 127.0.0.1, or the platform's metastore (`catalog.metastore_url`, `catalog.metastore_driver`).
Spark's built-in Hive 2.3 client creates the metastore schema on first use.

    python -m shopguard.warehouse up       # Derby network server (the metastore) + Thrift server
    python -m shopguard.warehouse down
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from shopguard.config import CHECKOUT, CatalogSettings, ConfigError, Settings, StorageSettings

log = logging.getLogger(__name__)

STATE_DIR = CHECKOUT / "build" / "warehouse"
# Every table the jobs write, and the inputs, under their shopguard names.


class WarehouseError(RuntimeError):
    """The metastore or the Thrift server did not come up as asked."""


def driver_jars(storage: StorageSettings) -> list[Path]:
    """The metastore database's JDBC client (Derby's, fetched by setup)."""
    from shopguard.deltajars import jar_folder

    folder = jar_folder(storage)
    return sorted(folder.glob("*derbyclient*.jar")) if folder else []


def metastore_conf(catalog: CatalogSettings, storage: StorageSettings) -> dict[str, str]:
    """Spark settings for the shared Hive metastore; {} when the catalog is off."""
    if not catalog.enabled:
        return {}
    jars = driver_jars(storage)
    conf = {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(Path(catalog.warehouse_dir).resolve()),
        "spark.hadoop.javax.jdo.option.ConnectionURL": catalog.metastore_url,
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": catalog.metastore_driver,
        "spark.hadoop.javax.jdo.option.ConnectionUserName": catalog.metastore_user,
        "spark.hadoop.javax.jdo.option.ConnectionPassword": os.environ.get(
            catalog.metastore_password_env, ""
        ),
        "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
        "spark.hadoop.hive.metastore.schema.verification": "false",
    }
    # A local metastore checks no password, but Derby's client refuses an empty one.
    conf["spark.hadoop.javax.jdo.option.ConnectionUserName"] = catalog.metastore_user
    conf["spark.hadoop.javax.jdo.option.ConnectionPassword"] = (
        os.environ.get(catalog.metastore_password_env) or "-"
    )
    if jars:  # the metastore client loads the driver from the JVM's own class path
        conf["spark.driver.extraClassPath"] = ":".join(str(j) for j in jars)
    return conf


class CatalogConflictError(ConfigError):
    """A table of `catalog.database` is registered at another location than the one this job uses."""


def register_tables(spark, settings: Settings, storage) -> list[str]:  # noqa: ANN001 - Spark types at the edge
    """CREATE TABLE <database>.<table> USING DELTA LOCATION for every table that exists and is not registered
    yet. One registered elsewhere since the job's start (`check_registrations`) is left as it is, with an
    error in the log: the data is written, but analysts still read the other location."""
    catalog = settings.catalog
    if not catalog.enabled:
        return []
    if storage.name != "delta-spark":
        log.warning("catalog.enabled needs the delta-spark backend (Spark SQL reads Delta through its jars)")
        return []
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{catalog.database}`")
    paths, found = _entries(spark, settings, storage)
    for line in _conflicts(catalog.database, paths, found):
        log.error("not registered: %s", line)
    registered = []
    for name, path in paths.items():
        if name in found:
            if _same_place(found[name], path):
                registered.append(f"{catalog.database}.{name}")
        elif storage.exists(path):
            spark.sql(
                f"CREATE TABLE IF NOT EXISTS `{catalog.database}`.`{name}` USING DELTA LOCATION '{path}'"
            )
            registered.append(f"{catalog.database}.{name}")
    return registered


def check_registrations(spark, settings: Settings, storage) -> None:  # noqa: ANN001 - Spark types at the edge
    """CatalogConflictError, before the job writes anything, where a table it would register is already
    registered in `catalog.database` at another location (another deployment sharing the database, or
    tables.root moved): registration never replaces an entry, so analysts would go on reading the old one
    while the job said it had registered the table."""
    if not settings.catalog.enabled or storage.name != "delta-spark":
        return
    conflicts = _conflicts(settings.catalog.database, *_entries(spark, settings, storage))
    if conflicts:
        raise CatalogConflictError(
            f"{'; '.join(conflicts)}: point the entry at this job's table (ALTER TABLE ... SET LOCATION, or "
            "DROP TABLE, which leaves its files), or give this deployment a database of its own "
            "(catalog.database)"
        )


def _entries(spark, settings: Settings, storage) -> tuple[dict[str, str], dict[str, str | None]]:  # noqa: ANN001
    """(table -> where this job has it, table -> where `catalog.database` has it registered)."""
    from shopguard.catalog import REGISTERED, Tables

    tables = Tables(storage, settings.tables)
    paths = {name: tables.path(name) for name in REGISTERED}
    return paths, registered_locations(spark, settings.catalog.database, REGISTERED)


def registered_locations(spark, database: str, names: Sequence[str]) -> dict[str, str | None]:  # noqa: ANN001
    """Table name -> location of those of `names` registered in `database` (None: a view). One call to the
    metastore: SHOW TABLE EXTENDED reads the catalog's entries, not the tables' Delta logs (measured: 10
    tables in 0.1-0.16 s, against 0.85-1.07 s for a DESCRIBE of each)."""
    if not spark.catalog.databaseExists(database):
        return {}
    rows = spark.sql(f"SHOW TABLE EXTENDED IN `{database}` LIKE '{'|'.join(names)}'").collect()
    return {
        row.tableName: next(
            (
                line.removeprefix("Location: ")
                for line in row.information.splitlines()
                if line.startswith("Location: ")
            ),
            None,
        )
        for row in rows
        if not row.isTemporary
    }


def _conflicts(database: str, paths: dict[str, str], found: dict[str, str | None]) -> list[str]:
    return [
        f"{database}.{name} is registered at {found[name] or '(a view)'}, not at {path}"
        for name, path in paths.items()
        if name in found and not _same_place(found[name], path)
    ]


def _same_place(registered: str | None, path: str) -> bool:
    """Whether the catalog's location (Hadoop's form: file:/tmp/t) and a configured path name one place."""

    def plain(location: str) -> str:
        parsed = urlparse(location)
        if parsed.scheme in ("", "file"):
            return os.path.normpath(os.path.abspath(parsed.path))
        return location.rstrip("/")

    return registered is not None and plain(registered) == plain(path)


# --------------------------------------------------------------------------- a local metastore database


def derby_jars(storage: StorageSettings) -> list[Path]:
    """Derby's engine (shipped in pyspark) and its network server (fetched by setup)."""
    from shopguard.cluster import spark_home
    from shopguard.deltajars import jar_folder

    folder = jar_folder(storage)
    fetched = sorted(folder.glob("*derbynet*.jar")) if folder else []
    if not fetched:
        raise WarehouseError("Derby's network server jar is missing: run ./submit.sh setup")
    return [*sorted((spark_home() / "jars").glob("derby*.jar")), *fetched]


def metastore_up(
    catalog: CatalogSettings, storage: StorageSettings, state_dir: Path, timeout: float = 60
) -> None:
    """Start Derby's network server for catalog.metastore_url (jdbc:derby://host:port/...): the metastore
    database every job and the Thrift server reach at once."""
    url = urlparse(catalog.metastore_url.removeprefix("jdbc:").split(";")[0])
    if url.scheme != "derby":
        raise WarehouseError(
            f"catalog.local_metastore starts a Derby server; {catalog.metastore_url} is not one"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "metastore.log"
    classpath = ":".join(str(j) for j in derby_jars(storage))
    with open(log_file, "wb") as out:
        server = subprocess.Popen(
            ["java", f"-Dderby.system.home={state_dir}", "-cp", classpath,
             "org.apache.derby.drda.NetworkServerControl", "start", "-h", url.hostname or "127.0.0.1",
             "-p", str(url.port or 1527)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    (state_dir / "metastore.pid").write_text(str(server.pid))
    _wait_for_line(log_file, "ready to accept connections", server, timeout)


def metastore_down(state_dir: Path) -> None:
    _stop(state_dir / "metastore.pid")


def _wait_for_line(log_file: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_file.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise WarehouseError(f"{log_file.stem} exited ({process.returncode}); see {log_file}")
        time.sleep(0.5)
    raise WarehouseError(f"no {text!r} in {log_file} after {timeout:.0f} s")


def _stop(pid_file: Path) -> None:
    import signal

    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
        pid_file.unlink()


# --------------------------------------------------------------------------- the Thrift server


def thrift_command(settings: Settings) -> list[str]:
    """spark-submit line of Spark's Thrift JDBC/ODBC server with the Delta jars and the shared catalog."""
    from shopguard.runtime import spark_conf

    # Not the jobs' driver options: the server logs at INFO (its start line), and its class path differs
    conf = spark_conf(settings.spark, settings.storage, settings.catalog, driver_jvm=False)
    conf.pop("spark.submit.deployMode", None)
    # The server's JDBC sessions resolve Delta's catalog through the JVM's own class path, not spark.jars.
    jars = [j for j in conf.get("spark.jars", "").split(",") if j]
    extra = [p for p in conf.get("spark.driver.extraClassPath", "").split(":") if p]
    conf["spark.driver.extraClassPath"] = ":".join([*extra, *jars])
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
               "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
               "--name", "shopguard-warehouse", "--conf", "spark.driver.host=127.0.0.1"]  # fmt: skip
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += ["--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
                "--hiveconf", f"hive.server2.thrift.port={settings.catalog.thrift_port}", "spark-internal"]  # fmt: skip
    return command


def serve(settings: Settings, state_dir: Path, timeout: float = 240.0) -> subprocess.Popen[bytes]:
    """Start the Thrift server in the background; returns once it accepts connections."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "thriftserver.log"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_CONF_DIR", None)  # Spark's INFO log says when the server is up
    with open(log_file, "wb") as out:
        server = subprocess.Popen(thrift_command(settings), stdout=out, stderr=subprocess.STDOUT, env=env,
                                  cwd=state_dir, start_new_session=True)  # fmt: skip
    (state_dir / "thriftserver.pid").write_text(str(server.pid))
    try:
        _wait_for_line(log_file, "HiveThriftServer2 started", server, timeout)
    except WarehouseError:
        stop_server(state_dir)
        raise
    return server


def stop_server(state_dir: Path) -> None:
    _stop(state_dir / "thriftserver.pid")


# What `beeline` selects after each statement, as column name and value: tsv2 output has no separator
# between one statement's rows and the next's, so these two lines mark where each result ends.
_END_OF_RESULT = "shopguard_end_of_result"


def beeline(port: int, *statements: str, timeout: float = 180.0) -> list[list[list[str]]]:
    """Run statements over JDBC with pyspark's own beeline, all in one beeline process (a JVM each costs
    seconds): per statement, its rows as lists of strings, header first. Each statement is one SQL
    statement, its trailing semicolon optional, without `--` comments: beeline's `-e` silently drops
    whatever follows one (measured), which the count of results here turns into a WarehouseError."""
    from shopguard.cluster import spark_home

    marker = f"SELECT '{_END_OF_RESULT}' AS {_END_OF_RESULT}"
    script = " ".join(f"{s.strip().rstrip(';')}; {marker};" for s in statements)
    result = subprocess.run(
        [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}", "--silent=true",
         "--showHeader=true", "--outputformat=tsv2", "-e", script],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "SPARK_HOME": str(spark_home())},
    )  # fmt: skip
    if result.returncode != 0 or "Error:" in result.stderr:
        raise WarehouseError(f"beeline failed ({result.returncode}): {result.stderr[-2000:]}")
    # tsv2: tab-separated, unquoted (arrays print as JSON, with commas inside); beeline prints its prompt
    # ("0: jdbc:hive2://...> ") in front of the first header
    lines = [
        re.sub(r"^\d+: jdbc:hive2://\S+> ", "", line) for line in result.stdout.splitlines() if line.strip()
    ]
    results: list[list[list[str]]] = [[]]
    rows = iter(lines)
    for line in rows:
        if line == _END_OF_RESULT:  # the marker's header; its value follows
            next(rows, None)
            results.append([])
        else:
            results[-1].append(line.split("\t"))
    if len(results) != len(statements) + 1 or results[-1]:
        raise WarehouseError(f"beeline printed {len(results) - 1} results for {len(statements)} statements")
    return results[:-1]


def main(argv: list[str]) -> int:
    from shopguard.config import load_settings

    command = argv[0] if argv else "help"
    settings = load_settings(os.environ.get("SHOPGUARD_PROFILE", "local"), overrides=["catalog.enabled=true"])
    if command == "up":
        if settings.catalog.local_metastore:
            metastore_up(settings.catalog, settings.storage, STATE_DIR / "metastore")
        serve(settings, STATE_DIR)
        print(f"warehouse up: jdbc:hive2://127.0.0.1:{settings.catalog.thrift_port} (database "
              f"{settings.catalog.database}); jobs register their tables with --set catalog.enabled=true")  # fmt: skip
        return 0
    if command == "down":
        stop_server(STATE_DIR)
        metastore_down(STATE_DIR / "metastore")
        print("warehouse down")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
