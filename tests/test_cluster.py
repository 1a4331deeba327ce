"""The whole pipeline on a real Spark standalone cluster (a master and two workers, separate JVMs with their
own Python workers), through ./submit.sh and the `standalone` profile, as a data engineer runs it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import DAY, submit
from deltalake import DeltaTable

from shopguard.cluster import start, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = start(tmp_path_factory.mktemp("cluster"), workers=2, cores=1, memory="2g", port=17077,
                    web_port=18080)  # fmt: skip
    yield running
    stop(running)


def test_the_pipeline_runs_on_a_standalone_cluster_and_scores_as_local_mode_does(cluster, tmp_path):
    settings = ["--profile", "standalone", "--set", f"spark.master={cluster.master_url}",
                "--set", f"tables.root={tmp_path}", "--set", "generate.users=400", "--set", "model.epochs=3"]  # fmt: skip
    for job, args in (("generate", ["--end-date", DAY]), ("features", ["--date", DAY]),
                      ("train", ["--date", DAY]), ("score", ["--date", DAY])):  # fmt: skip
        result = submit(job, *args, *settings, timeout=900)
        assert result.returncode == 0, f"{job}: {result.stderr[-4000:]}"

    # The same data and model scored in local mode, on this machine alone.
    local = submit(
        "score", "--date", DAY, *settings, "--master", "local[2]", "--set", "tables.scores=scores_local"
    )
    assert local.returncode == 0, local.stderr[-4000:]
    on_cluster = DeltaTable(str(tmp_path / "scores")).to_pandas().set_index("user_id").sort_index()
    in_local_mode = DeltaTable(str(tmp_path / "scores_local")).to_pandas().set_index("user_id").sort_index()
    assert len(on_cluster) > 300 and list(on_cluster.index) == list(in_local_mode.index)
    assert np.allclose(on_cluster.score, in_local_mode.score, rtol=1e-5)
    assert (on_cluster.action == in_local_mode.action).all()
    assert (on_cluster.reasons.map(list) == in_local_mode.reasons.map(list)).all()

    # Every job ran its tasks in executors the two workers launched.
    launched = re.findall(r"Asked to launch executor (\S+) for (shopguard-\w+)", cluster.worker_logs())
    assert {app for _, app in launched} >= {"shopguard-generate", "shopguard-features", "shopguard-score"}
    assert len({executor.split("/")[0] for executor, _ in launched}) >= 4  # one application per job
    print("\n".join(f"worker: launched executor {e} for {app}" for e, app in launched))


def test_cluster_deploy_mode_is_refused_with_the_reason():
    result = submit("score", "--date", DAY, "--profile", "standalone",
                    "--set", "spark.conf.spark.submit.deployMode=cluster", timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "deployMode cluster is not supported" in result.stderr
