"""Shared fixtures: one local SparkSession with Delta, and a tiny random Llama on disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


FAULTS = Path(__file__).resolve().parent / "faults"
REPO = Path(__file__).resolve().parents[1]
# The packages the wheel carries (pyproject's packages.find).
PACKAGES = ("grouprank", "jobs", "udfs", "schemas")
# The job processes the tests start each run one short job, so their JVMs stay on the JIT's
# first tier (jobs/session.py quick_jit_options); the shared session below does not.
os.environ.setdefault("GROUPRANK_QUICK_JIT", "1")


def kill_process_group(proc: subprocess.Popen) -> None:
    """Kills (SIGKILL) a process started with ``start_new_session=True`` and everything in its
    process group (a job's driver JVM and its Python workers), and reaps it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone, with its group
        pass
    proc.wait()


@pytest.fixture(scope="session")
def fault_file(tmp_path_factory) -> Path:
    """The file the shared session's Python workers read their injected fault from, per call
    (tests/faults/sitecustomize.py); empty means no fault."""
    path = tmp_path_factory.mktemp("fault") / "fault"
    path.write_text("")
    return path


@pytest.fixture(scope="session")
def spark(tmp_path_factory, fault_file):
    """A local[2,4] SparkSession with Delta Lake (the jars from the jar cache that
    ``grouprank setup`` fills).

    Two cores, and a failed task is retried up to 4 times as on a cluster, so the fault tests
    can kill a Python worker inside this session. Its workers carry the fault injector, inert
    until a test arms it with the ``fault`` fixture.
    """
    os.environ.setdefault("GROUPRANK_CACHE", str(Path.home() / ".cache" / "grouprank"))
    from jobs.session import TINY_TABLE_CONF, get_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    conf = {
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.ui.enabled": "false",
        # The tables here are a few rows (jobs/session.py TINY_TABLE_CONF): expressions
        # interpreted, not compiled; one shuffle partition (scoring sets its own, --partitions);
        # no adaptive execution, which split a warm 24-row rerank into 48 Spark jobs (22 without)
        # and cost the rerank, score-cache and correctness tests 10% (docs/BENCHMARKS.md). The
        # job processes, the cluster and Connect keep code generation and adaptive execution,
        # so compiled and adaptive plans are still run end to end.
        **TINY_TABLE_CONF,
        "spark.executorEnv.PYTHONPATH": str(FAULTS),
        "spark.executorEnv.GROUPRANK_TEST_FAULT_FILE": str(fault_file),
    }
    # It runs hundreds of jobs: on C1 alone the publish tests took 1.5x as long.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GROUPRANK_QUICK_JIT", "0")
        session = get_session("grouprank-tests", master="local[2,4]", conf=conf)
    session.sparkContext.setLogLevel("ERROR")
    stop = threading.Event()
    keeper = threading.Thread(target=_keep_python_workers, args=(session, stop), daemon=True)
    keeper.start()
    yield session
    stop.set()
    keeper.join(timeout=60)
    session.stop()


# Spark stops every idle Python worker once none has been used for a minute (PythonWorkerFactory),
# so a test after a minute without Python UDFs (a subprocess job, training in this process) paid
# for new workers importing torch and loading their models again. A trivial Python UDF every 20 s
# keeps the workers, and their model caches, for the whole run, as a long-lived executor keeps
# its own; it scores nothing, so the fault injector never sees it.
_KEEP_ALIVE_SECONDS = 20


def _keep_python_workers(session, stop: threading.Event) -> None:
    while not stop.wait(_KEEP_ALIVE_SECONDS):
        try:
            session.range(1).mapInPandas(lambda batches: batches, "id long").collect()
        except Exception:  # a session being stopped, or a test's killed worker: try again later
            pass


@pytest.fixture
def fault(spark, fault_file):
    """Arms a fault in the shared session's Python workers (``fault("garbage:0.5")``, the forms
    are in tests/faults/sitecustomize.py) until the test ends."""
    yield fault_file.write_text
    fault_file.write_text("")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-initialised Llama + tokenizer saved as safetensors."""
    from tests.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built once per run for the packaging and cluster tests with
    ``python -m build --wheel --no-isolation`` from a copy of the packaged sources, so it neither
    writes ``build/`` into the working tree nor needs PyPI."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=source, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip with the reason when this machine does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real IR collections not found at {SHARED_DATA} (only on the dev machines)")
    return SHARED_DATA
