"""A real Spark standalone cluster on this machine, from pyspark's own files: one master and N workers on
127.0.0.1, each worker with its own cores and memory, stopped by process id. For people trying the cluster
path (`./submit.sh cluster-up`, then `--profile standalone`) and for the tests.

    python -m shopguard.cluster up [--workers 2 --cores 1 --memory 2g --port 7077]
    python -m shopguard.cluster down
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from shopguard.config import CHECKOUT

STATE_DIR = CHECKOUT / "build" / "cluster"


class ClusterError(RuntimeError):
    """The standalone cluster did not come up as asked."""


@dataclass(frozen=True)
class LocalCluster:
    master_url: str
    web_url: str
    pids: tuple[int, ...]
    work_dir: str

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(Path(self.work_dir).glob("worker-*.log"))
        )


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip


def _wait_for(log: Path, text: str, count: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        if process.poll() is not None:
            raise ClusterError(f"{log.name}: the process exited ({process.returncode}); see {log}")
        time.sleep(0.3)
    raise ClusterError(f"no {text!r} in {log} after {timeout:.0f} s")


def start(
    work_dir: Path = STATE_DIR, workers: int = 2, cores: int = 1, memory: str = "2g", port: int = 7077,
    web_port: int = 8080, timeout: float = 120.0,
) -> LocalCluster:  # fmt: skip
    """Master, then workers; returns once every worker has registered with the master."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}  # fmt: skip
    env.pop("SPARK_CONF_DIR", None)  # Spark's own INFO logging: its lines say when master and workers are up
    master_log = work_dir / "master.log"
    master = _spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                     "--webui-port", str(web_port)], master_log, env)  # fmt: skip
    processes = [master]
    try:
        _wait_for(master_log, "I have been elected leader", 1, master, timeout)
        url = f"spark://127.0.0.1:{port}"
        for i in range(workers):
            processes.append(_spawn(
                ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
                 "--memory", memory, "--work-dir", str(work_dir / f"worker-{i}"), "--webui-port",
                 str(web_port + 1 + i), url],
                work_dir / f"worker-{i}.log", env,
            ))  # fmt: skip
        _wait_for(master_log, "Registering worker", workers, master, timeout)
    except BaseException:
        _kill([p.pid for p in processes])
        raise
    cluster = LocalCluster(
        url, f"http://127.0.0.1:{web_port}", tuple(p.pid for p in processes), str(work_dir)
    )
    (work_dir / "cluster.json").write_text(json.dumps(asdict(cluster)))
    return cluster


def _kill(pids: list[int] | tuple[int, ...]) -> None:
    for pid in reversed(pids):  # workers first, then the master
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 20
    for pid in pids:
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    """Whether the process still runs. A child of this process that has exited stays a zombie (and answers
    signal 0) until it is reaped: reap it here, or stopping a cluster started in-process waits the whole
    grace period for processes that are already gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:  # not our child: someone else reaps it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def stop(cluster: LocalCluster | None = None, work_dir: Path = STATE_DIR) -> None:
    """Stop the cluster's processes by id (from `cluster.json` when no cluster is given)."""
    state = work_dir / "cluster.json"
    if cluster is None:
        if not state.exists():
            return
        cluster = LocalCluster(**{**json.loads(state.read_text())})
    _kill(cluster.pids)
    if state.exists() and json.loads(state.read_text())["pids"] == list(cluster.pids):
        state.unlink()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="submit.sh cluster-up|cluster-down", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores per worker")
    parser.add_argument("--memory", default="2g", help="memory per worker")
    parser.add_argument("--port", type=int, default=7077)
    args = parser.parse_args(argv)
    if args.command == "down":
        stop()
        print("standalone cluster stopped")
        return 0
    if (STATE_DIR / "cluster.json").exists():
        print(f"a cluster is already up ({STATE_DIR / 'cluster.json'}); ./submit.sh cluster-down first")
        return 2
    cluster = start(workers=args.workers, cores=args.cores, memory=args.memory, port=args.port)
    print(f"standalone cluster up: {cluster.master_url} (web UI {cluster.web_url}), {args.workers} workers x "
          f"{args.cores} core(s), {args.memory}; processes {list(cluster.pids)}\n"
          f"run jobs with: ./submit.sh <job> --profile standalone ...")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
