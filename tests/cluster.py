"""A Spark standalone cluster and a Spark Connect server for the tests, each started once per
test session from the pip-installed pyspark, on loopback only, and stopped by process id.

    pytest_plugins = ["tests.cluster"]     # in a test module: the fixtures below become usable

``standalone_cluster``: a master and two workers of one core each, every worker in its own mount
namespace with a private tmpfs on ``/tmp`` (``unshare --mount``, so root only). Executors there
cannot see the driver's temporary files, as on a real cluster; whatever they must read (tables,
the model) goes under ``Cluster.shared``, a folder outside ``/tmp`` that every process sees, like
a cluster's shared storage. ``connect_server``: a Spark Connect server (local[2]) with Delta Lake
configured on the server only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

SPARK_HOME = Path(pyspark.__file__).parent
LOOPBACK = "127.0.0.1"


DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_submit_args(conf: dict[str, str]) -> list[str]:
    """spark-submit's ``--jars`` with the Delta jars ``grouprank setup`` downloaded once (as a
    cluster without Maven Central passes them, docs/DEPLOYMENT.md section 4: no submit runs Ivy,
    which cost each one seconds of resolving, docs/BENCHMARKS.md issue 18), then a ``--conf``
    for Delta's extension and catalog and for each of ``conf``."""
    from jobs.session import cached_jars

    args = ["--jars", ",".join(map(str, cached_jars()))]
    for key, value in {**DELTA_CONF, **conf}.items():
        args += ["--conf", f"{key}={value}"]
    return args


EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
_STARTUP_SECONDS = 120


@dataclass(frozen=True)
class Worker:
    pid: int
    work_dir: Path


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster: where to submit and what every process can read."""

    master_url: str
    # Storage shared by the driver and the workers (outside /tmp, which the workers do not see).
    shared: Path
    workers: tuple[Worker, ...]

    def submit_command(self, conf: dict[str, str]) -> list[str]:
        """``spark-submit`` in client mode to this master, with Delta Lake and ``conf``, as
        docs/DEPLOYMENT.md writes it; the caller adds --py-files, the script and its flags."""
        return [spark_submit(), "--master", self.master_url, "--deploy-mode", "client",
                *delta_submit_args({**jvm_archive_conf(), **conf})]

    def executors(self) -> set[int]:
        """Process ids of the executor JVMs running now (children of the workers)."""
        return {pid for worker in self.workers for pid in _children(worker.pid)
                if EXECUTOR_CLASS in _cmdline(pid)}

    def kill_executor_of(self, pid: int) -> int:
        """Kills (SIGKILL) the executor JVM that process ``pid`` runs under, with every process
        under it, as when its machine is lost; returns the executor's pid."""
        (executor,) = [p for p in _ancestors(pid) if p in self.executors()]
        for victim in [executor, *_descendants(executor)]:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return executor

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        return spark_env(**extra)


@dataclass(frozen=True)
class ConnectServer:
    url: str  # sc://127.0.0.1:PORT
    pid: int
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """An environment whose jobs are Spark Connect clients of this server."""
        return spark_env(SPARK_REMOTE=self.url, **extra)


def jvm_archive_conf(quick_jit: bool = True) -> dict[str, str]:
    """The driver's and executors' Java options to start from the JVM class archive that
    ``grouprank setup`` writes, as local sessions do (jobs/session.py); with ``quick_jit``, on
    the JIT's first tier too, for a JVM that runs one submit's jobs and exits."""
    from jobs.session import QUICK_JIT, jvm_archive_options

    options = " ".join(filter(None, [jvm_archive_options(), QUICK_JIT if quick_jit else ""]))
    if not options:
        return {}
    return {"spark.driver.extraJavaOptions": options, "spark.executor.extraJavaOptions": options}


def spark_env(**extra: str) -> dict[str, str]:
    """This environment for a Spark process: the venv's Python everywhere, loopback only, and no
    leftover submit arguments or Connect settings from the test process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_HOME", "SPARK_REMOTE",
                        "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")}
    env.update(SPARK_LOCAL_IP=LOOPBACK, PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_NO_DAEMONIZE="1", **extra)
    # The master and workers (spark-class) start from the class archive too, on C1.
    archive = jvm_archive_conf().get("spark.driver.extraJavaOptions")
    if archive:
        env["SPARK_DAEMON_JAVA_OPTS"] = archive
    return env


def spark_submit() -> str:
    return str(Path(sys.executable).parent / "spark-submit")


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        pid = _ppid(pid)
        if pid is None:
            break
        chain.append(pid)
    return chain


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [p for p in pids if _ppid(p) == pid]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    handle = log.open("ab")
    try:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                cwd=log.parent, start_new_session=True)
    finally:
        handle.close()


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen) -> re.Match:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise RuntimeError(f"{log.name}: no {pattern!r} (exit {proc.poll()}):\n"
                       + log.read_text(errors="replace")[-3000:])


def _stop(proc: subprocess.Popen) -> None:
    """Stops a process we started and every process under it, by pid: TERM, then KILL."""
    family = [*_descendants(proc.pid), proc.pid]
    for pid in reversed(family):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _spark_class(main: str, *args: str) -> list[str]:
    return [str(SPARK_HOME / "bin" / "spark-class"), main, *args]


def _private_tmp(command: list[str]) -> list[str]:
    """``command`` in a new mount namespace whose /tmp is an empty tmpfs of its own. The shell
    execs, so the process id is the command's."""
    script = 'mount -t tmpfs -o size=2g grouprank-private-tmp /tmp && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


def cluster_unavailable() -> str | None:
    """Why ``standalone_cluster`` cannot start on this machine, or None when it can."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "the workers' private /tmp needs root and unshare (util-linux)"
    return None


@pytest.fixture(scope="session")
def standalone_cluster() -> Iterator[Cluster]:
    """A standalone master and two 1-core workers, each worker with a private /tmp."""
    reason = cluster_unavailable()
    if reason:
        pytest.skip(reason)
    shared = Path(tempfile.mkdtemp(prefix="grouprank-cluster-", dir="/var/tmp"))
    env = spark_env(SPARK_LOG_DIR=str(shared / "logs"))
    procs: list[subprocess.Popen] = []
    try:
        # Spark's own variables (as in conf/spark-env.sh), which docs/DEPLOYMENT.md shows.
        port = _free_port()
        master_log = shared / "master.log"
        procs.append(_start(_spark_class("org.apache.spark.deploy.master.Master"), master_log, {
            **env, "SPARK_MASTER_HOST": LOOPBACK, "SPARK_MASTER_PORT": str(port),
            "SPARK_MASTER_WEBUI_PORT": str(_free_port())}))
        _wait_for(master_log, r"I have been elected leader", procs[0])
        url = f"spark://{LOOPBACK}:{port}"
        workers = []
        for n in (1, 2):
            work_dir = shared / f"worker{n}"
            (work_dir / "local").mkdir(parents=True)
            log = shared / f"worker{n}.log"
            procs.append(_start(_private_tmp(_spark_class(
                "org.apache.spark.deploy.worker.Worker", url)), log, {
                **env, "SPARK_WORKER_CORES": "1", "SPARK_WORKER_MEMORY": "2g",
                "SPARK_WORKER_DIR": str(work_dir), "SPARK_WORKER_WEBUI_PORT": str(_free_port()),
                # Both workers say host 127.0.0.1, so an executor reads the other's shuffle
                # files straight from disk (spark.shuffle.readHostLocalDisk), as on one machine:
                # their local dirs must be visible to each other, not in the private /tmp.
                "SPARK_LOCAL_DIRS": str(work_dir / "local")}))
            workers.append((procs[-1], work_dir, log))
        for proc, work_dir, log in workers:
            _wait_for(log, r"Successfully registered with master", proc)
        yield Cluster(url, shared, tuple(Worker(p.pid, d) for p, d, _ in workers))
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory) -> Iterator[ConnectServer]:
    """A Spark Connect server, local[2], with Delta Lake configured on the server only: its
    extension and catalog as server conf, its jars from the jar cache (``delta_submit_args``)."""
    from jobs.session import INTERPRETED_CONF

    base = tmp_path_factory.mktemp("connect-server")
    port = _free_port()
    connect_jar = next((SPARK_HOME / "jars").glob("spark-connect_*.jar"))
    conf = {
        "spark.connect.grpc.binding.address": LOOPBACK,
        "spark.connect.grpc.binding.port": str(port),
        "spark.sql.warehouse.dir": str(base / "warehouse"),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": "2g",
        # The server runs every Connect test's jobs: the full JIT pays back there.
        **jvm_archive_conf(quick_jit=False),
        # Their tables are a few rows: interpreting costs less than compiling each plan.
        **INTERPRETED_CONF,
    }
    command = [spark_submit(), "--master", "local[2]",
               "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
               *delta_submit_args(conf), str(connect_jar)]
    log = base / "server.log"
    # The server's Python workers import the project from the venv (its editable install).
    proc = _start(command, log, spark_env())
    try:
        _wait_for(log, r"Spark Connect server started", proc)
        yield ConnectServer(f"sc://{LOOPBACK}:{port}", proc.pid, log)
    finally:
        _stop(proc)
