"""The path users run: the whole pipeline on a real Spark standalone cluster (a master and two workers,
separate JVMs with their own Python workers) through ./submit.sh and the `standalone` profile, registering
every table in a shared Hive metastore; then analysts' documented queries over Spark's Thrift JDBC server."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DAY, ROOT, class_sources, submit
from deltalake import DeltaTable

from shopguard.cluster import start, stop
from shopguard.config import load_settings
from shopguard.warehouse import WarehouseError, beeline, metastore_down, metastore_up, serve, stop_server

pytestmark = pytest.mark.e2e
YESTERDAY = str(dt.date.fromisoformat(DAY) - dt.timedelta(days=1))
METASTORE = "jdbc:derby://127.0.0.1:11527/metastore;create=true"
THRIFT_PORT = 10199


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """generate, then the nightly run over two days (features, the first model trained, scores), on the
    cluster with the catalog on: two applications, as an operator schedules them. The nightly run reads
    its inputs by the names generate registered them under in the shared metastore."""
    work = tmp_path_factory.mktemp("production")
    catalog = ["--set", "catalog.enabled=true", "--set", f"catalog.metastore_url={METASTORE}",
               "--set", f"catalog.warehouse_dir={work}/warehouse",
               "--set", f"catalog.thrift_port={THRIFT_PORT}"]  # fmt: skip
    settings = load_settings(overrides=[catalog[i + 1] for i in range(0, len(catalog), 2)])
    metastore_up(settings.catalog, settings.storage, work / "metastore")
    cluster = start(work / "cluster", workers=2, cores=1, memory="2g", port=17077, web_port=18080)
    tables = work / "tables"
    # Each executor logs where its classes came from (test_the_executors_map_sparks_classes_from_the_archive...)
    # and compiles with C1 alone: on these 1-core executors and 400 users, C2's compiler threads took the core
    # from the tasks (measured: generate + nightly 125 s with C1 alone, 167-181 s without).
    executors = f"-Xlog:class+load=info:file={work}/executor-%p.classes -XX:TieredStopAtLevel=1"
    common = ["--profile", "standalone", "--set", f"spark.master={cluster.master_url}",
              "--set", f"tables.root={tables}", "--set", "generate.users=400", "--set", "model.epochs=3",
              "--set", f"spark.conf.spark.executor.extraJavaOptions={executors}", *catalog]  # fmt: skip
    try:
        nightly = ["--from", YESTERDAY, "--to", DAY,  # the first night trains the first model
                   "--set", "nightly.train=never", "--set", "nightly.evaluate=false",
                   "--set", "tables.clicks=catalog:shopguard.clicks",
                   "--set", "tables.transactions=catalog:shopguard.transactions"]  # fmt: skip
        for job, args in (("generate", ["--end-date", DAY]), ("nightly", nightly)):  # fmt: skip
            result = submit(job, *args, *common, timeout=900)
            assert result.returncode == 0, f"{job}: {result.stderr[-4000:]}"
            # spark-submit passes the Python process's stderr, shopguard's log, on its stdout
            assert "executors run Java " in result.stdout, f"{job}: its executors' Java was not checked"
        yield tables, common, cluster, settings, work
    finally:
        stop(cluster)
        metastore_down(work / "metastore")


def test_the_pipeline_runs_on_a_standalone_cluster_and_scores_as_local_mode_does(production):
    tables, common, cluster, _, _ = production
    # The same data and model scored in local mode, on this machine alone.
    local = submit("score", "--date", DAY, *common, "--master", "local[2]", "--set", "tables.scores=scores_local",
                   "--set", "catalog.enabled=false")  # fmt: skip
    assert local.returncode == 0, local.stderr[-4000:]
    day = [("score_date", "=", DAY)]
    on_cluster = (
        DeltaTable(str(tables / "scores")).to_pandas(partitions=day).set_index("user_id").sort_index()
    )
    in_local_mode = DeltaTable(str(tables / "scores_local")).to_pandas().set_index("user_id").sort_index()
    assert len(on_cluster) > 300 and list(on_cluster.index) == list(in_local_mode.index)
    assert np.allclose(on_cluster.score, in_local_mode.score, rtol=1e-5)
    assert (on_cluster.action == in_local_mode.action).all()
    assert (on_cluster.reasons.map(list) == in_local_mode.reasons.map(list)).all()

    # Every job ran its tasks in executors both workers launched. (When an executor exits before its
    # application has unregistered, the master launches a replacement, killed at once: ids beyond 0 and 1.)
    launched = re.findall(r"Asked to launch executor (\S+) for (shopguard-\w+)", cluster.worker_logs())
    per_worker = {
        log.name: set(
            re.findall(r"Asked to launch executor \S+ for (shopguard-\w+)", log.read_text(errors="replace"))
        )
        for log in sorted(Path(cluster.work_dir).glob("worker-*.log"))
    }
    assert len(per_worker) == 2, per_worker
    assert all(apps >= {"shopguard-generate", "shopguard-nightly"} for apps in per_worker.values()), (
        per_worker
    )
    lines = [f"worker: launched executor {e} for {app}" for e, app in launched]
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "cluster-executors.txt").write_text("\n".join(lines))
    print("\n".join(lines))


def test_every_row_read_on_the_cluster_is_counted_once(production):
    """Counts in = used + quarantined + duplicates, each counted where it is. With accumulators two
    executors building one cached partition both counted it (1,036 orders read, 1,282 used)."""
    tables, *_ = production
    quarantine = DeltaTable(str(tables / "quarantine")).to_pandas()
    nights = {}
    for commit in DeltaTable(str(tables / "features")).history():
        info = json.loads(commit["userMetadata"])
        nights[info["snapshot_date"]] = info["counts"]
    assert sorted(nights) == [YESTERDAY, DAY]
    for day, counts in nights.items():
        for source, c in counts.items():
            assert min(c.values()) >= 0 and c["read"] == c["used"] + c["quarantined"] + c["duplicates"], c
            on_day = quarantine[
                (quarantine.snapshot_date.astype(str) == day) & (quarantine.source_table == source)
            ]
            assert c["quarantined"] == len(on_day)
    # both nights read every generated row (the look-back covers them all): the same rows, the same counts
    assert nights[YESTERDAY]["clicks"]["read"] == nights[DAY]["clicks"]["read"]
    assert {t: {k: v for k, v in c.items() if k != "on_date"} for t, c in nights[YESTERDAY].items()} == {
        t: {k: v for k, v in c.items() if k != "on_date"} for t, c in nights[DAY].items()
    }


def test_the_executors_map_sparks_classes_from_the_archive_setup_built(production):
    """Executors on the machine where setup ran start from the driver's class archive (shopguard.driverjvm)."""
    *_, work = production
    logs = sorted(work.glob("executor-*.classes"))
    archive = "shared objects file (top)"
    # an executor killed while it starts (the master's replacement as an application ends) loads none
    executor = "org.apache.spark.executor.Executor"
    sources = {log.name: loaded for log in logs if executor in (loaded := class_sources(log))}
    assert len(sources) >= 4, [log.name for log in logs]  # two executors for each of the two applications
    for name, loaded in sources.items():
        assert loaded[executor] == archive, name
    # SQL's classes load with an executor's first SQL task: an executor that registered late may have run none
    row = "org.apache.spark.sql.catalyst.InternalRow"
    rows = {name: loaded[row] for name, loaded in sources.items() if row in loaded}
    assert rows and set(rows.values()) == {archive}, rows


JAVA_CHECK = """
import sys
from shopguard.config import ConfigError, load_settings
from shopguard.runtime import build_spark, check_executors_java, configure_logging
configure_logging()
settings = load_settings("standalone", overrides=["spark.master=" + sys.argv[1]])
spark = build_spark(settings.spark, "shopguard-java-check", storage=settings.storage)  # the real rule: runs
try:
    check_executors_java(spark, refuse=lambda version: f"Java {version}: refused by the test's rule")
except ConfigError as refused:
    print(refused)
    sys.exit(2)
"""


def test_a_java_the_rule_refuses_on_the_executors_stops_the_job_naming_them(production):
    """The executors write the files, so their Java is checked as the driver's is (shopguard.javaversion).
    No refused JVM is installed here: the session passes the real rule, then a rule that refuses the
    executors' own version must stop it, naming their JVM and host."""
    _, _, cluster, _, _ = production
    result = subprocess.run(
        [sys.executable, "-c", JAVA_CHECK, cluster.master_url], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-4000:]
    checked = re.search(r"executors run Java (\S+): (\S+) on (\S+)", result.stderr)
    assert checked, result.stderr[-4000:]
    version, home, host = checked.groups()
    assert result.stdout.strip() == (
        f"Java {version}: refused by the test's rule (the executors' JVM: {home} on {host})"
    )


def test_cluster_deploy_mode_is_refused_with_the_reason():
    result = submit("score", "--date", DAY, "--profile", "standalone",
                    "--set", "spark.conf.spark.submit.deployMode=cluster", timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "deployMode cluster is not supported" in result.stderr


def documented_queries() -> dict[str, str]:
    doc = (ROOT / "docs" / "warehouse.md").read_text()
    return dict(re.findall(r"```sql\n-- query: ([\w-]+)\n(.*?)```", doc, re.S))


def test_analysts_documented_queries_answer_over_the_thrift_server(production):
    tables, _, _, settings, work = production
    scores = DeltaTable(str(tables / "scores")).to_pandas()
    quarantine = DeltaTable(str(tables / "quarantine")).to_pandas()
    both_days = scores.groupby("user_id").filter(lambda g: len(g) == 2)
    user = sorted(both_days.user_id)[0]
    queries = documented_queries()
    assert set(queries) == {"blocked-today", "alerts-per-type-per-day", "user-history", "rose-most",
                            "quarantine-per-day"}  # fmt: skip

    serve(settings, work / "thrift")
    try:
        # one beeline for every statement, as an analyst's script runs them
        statements = [sql.replace("u00000042", user) for sql in queries.values()]
        tables_listed, *answered = beeline(THRIFT_PORT, "SHOW TABLES IN shopguard", *statements)
        answers = dict(zip(queries, answered, strict=True))
        # beeline's -e runs nothing after a -- comment and still exits 0: refused, never answered short
        with pytest.raises(WarehouseError, match="printed 0 results for 2 statements"):
            beeline(THRIFT_PORT, "SELECT 1 AS a -- a note", "SELECT 2 AS b")
    finally:
        stop_server(work / "thrift")

    assert {row[1] for row in tables_listed[1:]} >= {"clicks", "transactions", "labels", "features", "scores",
                                                     "quarantine"}  # fmt: skip
    # beeline's header may qualify a column with its table (scores.user_id): keep the column's name
    frames = {
        n: pd.DataFrame(rows[1:], columns=[c.split(".")[-1] for c in rows[0]]) for n, rows in answers.items()
    }
    counts = {name: len(frame) for name, frame in frames.items()}
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "warehouse-queries.json").write_text(json.dumps(counts))  # for people: rows per query
    print(counts)
    today = scores[scores.score_date.astype(str) == DAY]
    assert set(frames["blocked-today"].user_id) == set(today[today.action == "block"].user_id)
    assert frames["alerts-per-type-per-day"].alerts.astype(int).sum() == (scores.action != "pass").sum()
    assert list(frames["user-history"].score_date) == [YESTERDAY, DAY]
    rises = (
        both_days.pivot(index="user_id", columns="score_date", values="score_percentile")
        .diff(axis=1)
        .iloc[:, -1]
    )
    assert len(frames["rose-most"]) == min(20, len(rises))
    assert float(frames["rose-most"].rise.iloc[0]) == pytest.approx(rises.max())
    assert frames["quarantine-per-day"].quarantined.astype(int).sum() == len(quarantine) > 0
