"""The jobs on a Spark standalone cluster (tests/cluster.py): spark-submit with the wheel shipped
as docs/DEPLOYMENT.md documents, a lost executor, and files local to the driver.

The workers run in their own mount namespace with a private /tmp: the driver's temporary files
(the test's tmp_path, the submit folder with the wheel) are invisible to the executors, as on a
real cluster. Tables and the model live under ``Cluster.shared``, the cluster's shared storage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytrec_eval
from pyspark.testing import assertDataFrameEqual

from schemas import CANDIDATES
from tests.test_packaging import _GUARD

# The cluster fixtures; helpers come through them (importing tests.cluster here would import it
# before pytest loads it as a plugin).
pytest_plugins = ["tests.cluster"]
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
DAY = "2026-11-27"
QUERIES, DOCS = 4, 10


def _rows() -> list[tuple]:
    return [(f"q{q}", f"query number {q}", f"q{q}-d{i}", f"text {i} of query {q}",
             float(DOCS - i), i + 1) for q in range(QUERIES) for i in range(DOCS)]


@pytest.fixture(scope="module")
def shipped(standalone_cluster, wheel, tmp_path_factory):
    """The submit folder on the driver (its /tmp, unseen by the workers): the entry scripts and
    the wheel as a .zip for --py-files, as docs/DEPLOYMENT.md section 2 ships them."""
    folder = tmp_path_factory.mktemp("submit")
    for job in ("rerank", "evaluate", "synthesize"):
        shutil.copy(REPO / "jobs" / f"{job}.py", folder / f"{job}.py")
    archive = Path(shutil.copy(wheel, folder / wheel.with_suffix(".zip").name))
    # The guard hides the venv's editable install, so the code can only come from the zip; its
    # marks are written where the test can see them from every process.
    guard = standalone_cluster.shared / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD)
    return folder, archive, guard


@pytest.fixture(scope="module")
def inputs(spark, standalone_cluster, tiny_model_dir):
    """The candidates table and the tiny model on the cluster's shared storage."""
    shared = standalone_cluster.shared
    model = shared / "model"
    shutil.copytree(tiny_model_dir, model)
    candidates = str(shared / "candidates")
    spark.createDataFrame(_rows(), CANDIDATES).write.format("delta").save(candidates)
    return candidates, str(model)


@dataclass(frozen=True)
class _Submitted:
    """A spark-submit running in the background, its output going to ``log``."""

    proc: subprocess.Popen
    # The driver's stdout and stderr. A file, not a pipe: spark-submit logs at INFO, and a pipe
    # nobody reads while the test waits fills after 64 KiB and blocks the driver's DAG scheduler
    # in its next log write (the executor-loss job hung so in its first action).
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """Kills the job's whole process group (driver JVM and its Python), and reaps it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # already gone, with its group
            pass
        self.proc.wait()


def _submit(cluster, shipped, entry: str, args: list[str], marks: Path | None = None,
            fault: str = "") -> _Submitted:
    """spark-submit in client mode to the standalone master, from the driver's submit folder.

    With ``marks`` every Python process (driver and executors) runs the guard and leaves a mark
    there; with ``fault`` the executors' Python runs tests/faults instead (the project then comes
    from the zip or the venv alike).
    """
    folder, archive, guard = shipped
    conf = {
        "spark.ui.enabled": "false",
        "spark.executor.memory": "1g",
        "spark.sql.shuffle.partitions": "2",
        "spark.databricks.delta.snapshotPartitions": "2",
        # A killed executor is replaced and its tasks retried (4 attempts, Spark's default).
        "spark.task.maxFailures": "4",
    }
    env = cluster.env()
    if marks is not None:
        marks.mkdir(exist_ok=True)
        env.update(PYTHONPATH=str(guard), GUARD_MARKS=str(marks))
        conf.update({"spark.executorEnv.PYTHONPATH": str(guard),
                     "spark.executorEnv.GUARD_MARKS": str(marks)})
    if fault:
        conf.update({"spark.executorEnv.PYTHONPATH": str(REPO / "tests" / "faults"),
                     "spark.executorEnv.GROUPRANK_TEST_FAULT": fault})
    command = [*cluster.submit_command(conf), "--py-files", str(archive), str(folder / entry),
               *args]
    handle, name = tempfile.mkstemp(prefix=f"{Path(entry).stem}-", suffix=".log", dir=folder)
    try:
        proc = subprocess.Popen(command, cwd=folder, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(handle)
    return _Submitted(proc, Path(name))


def _finish(job: _Submitted, timeout: int = 1200) -> str:
    """Waits for the job; returns its output, failing the test on a timeout or an error exit."""
    try:
        job.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.kill()
        pytest.fail(f"spark-submit ran past {timeout} s:\n{job.output()[-3000:]}")
    except BaseException:  # an interrupted test run leaves no job behind
        job.kill()
        raise
    out = job.output()
    errors = [line for line in out.splitlines() if "Error" in line or "Exception" in line]
    assert job.proc.returncode == 0, "\n".join(errors[:15]) + "\n...\n" + out[-2000:]
    return out


def _summary(output: str) -> dict:
    line = next(l for l in output.splitlines() if l.startswith("summary: "))
    return json.loads(line[len("summary: "):])


def _rerank_args(candidates: str, output: str, model: str) -> list[str]:
    return ["--candidates", candidates, "--output", output, "--run-date", DAY, "--model", model,
            "--group-size", "5", "--partitions", "4"]


def _apps_on(worker) -> set[str]:
    return {p.name for p in worker.work_dir.iterdir() if p.name.startswith("app-")}


@pytest.fixture(scope="module")
def reranked(spark, standalone_cluster, shipped, inputs, tmp_path_factory):
    """The rerank job, submitted once undisturbed; its table is the executor-loss reference."""
    candidates, model = inputs
    before = [_apps_on(w) for w in standalone_cluster.workers]
    output = str(standalone_cluster.shared / "reranked")
    marks = standalone_cluster.shared / "rerank-marks"
    log = _finish(_submit(standalone_cluster, shipped, "rerank.py",
                          _rerank_args(candidates, output, model), marks=marks))
    new_apps = [_apps_on(w) - b for w, b in zip(standalone_cluster.workers, before)]
    return spark.read.format("delta").load(output), _summary(log), marks, new_apps


def test_rerank_runs_on_both_workers_from_the_wheel(reranked):
    table, summary, marks, new_apps = reranked
    # Each worker started an executor for the job, and the guard ran in the driver and in the
    # executors' Python workers: the project came from the shipped zip.
    assert all(len(apps) == 1 for apps in new_apps), new_apps
    assert len(list(marks.iterdir())) >= 3
    assert summary["rows_in"] == summary["rows_out"] == QUERIES * DOCS
    rows = table.select("qid", "docid", "rank").collect()
    assert sorted((r["qid"], r["docid"]) for r in rows) == sorted((r[0], r[2]) for r in _rows())
    for q in range(QUERIES):
        assert sorted(r["rank"] for r in rows if r["qid"] == f"q{q}") == list(range(1, DOCS + 1))


# Opt-in for their time, not their reliability: each is one more spark-submit (the executor-loss
# job 189 s, synthesize 145 s, measured 2026-12-01 on the 2-core machine under a load of ~5). The
# executor-loss job used to hang in its first action: the test read the driver's output pipe only
# after the kill, and 64 KiB of spark-submit's INFO log filled it and blocked the DAG scheduler in
# a log write (jstack); the output now goes to a file. Run them with
# GROUPRANK_CLUSTER_FAULTS=1 .venv/bin/python -m pytest tests/test_cluster.py
_BY_HAND = pytest.mark.skipif(
    not os.environ.get("GROUPRANK_CLUSTER_FAULTS"),
    reason="opt-in (GROUPRANK_CLUSTER_FAULTS=1): one more spark-submit each, see the comment",
)


@_BY_HAND
def test_a_killed_executor_is_replaced_and_the_table_equals_an_undisturbed_run(
    spark, standalone_cluster, shipped, inputs, reranked
):
    candidates, model = inputs
    reference = reranked[0]
    workers = standalone_cluster.workers
    before = [_apps_on(w) for w in workers]
    marker = standalone_cluster.shared / "hang.marker"
    output = str(standalone_cluster.shared / "reranked-executor-lost")
    job = _submit(standalone_cluster, shipped, "rerank.py",
                  _rerank_args(candidates, output, model), fault=f"hang-once:{marker}")
    deadline = time.monotonic() + 900
    while job.proc.poll() is None and time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            break
        time.sleep(0.3)
    if not (marker.exists() and marker.read_text().strip()):
        job.kill()
        pytest.fail("no scoring task ever started:\n" + job.output()[-3000:])
    # The executor JVM running the hung scoring task dies, with its Python workers.
    executor = standalone_cluster.kill_executor_of(int(marker.read_text()))
    log = _finish(job)
    assert executor not in standalone_cluster.executors()
    # The scoring task it ran was lost with it and run again elsewhere, and the master started
    # a third executor (work folders 0, 1 and 2 of the job's application) in its place.
    assert "ExecutorLostFailure" in log
    (app,) = set().union(*(_apps_on(w) - b for w, b in zip(workers, before)))
    folders = [w.work_dir / app for w in workers if (w.work_dir / app).is_dir()]
    assert sorted(e.name for f in folders for e in f.iterdir()) == ["0", "1", "2"], folders
    summary = _summary(log)
    assert summary["rows_in"] == summary["rows_out"] == QUERIES * DOCS
    table = spark.read.format("delta").load(output)
    assert table.select("qid", "docid").distinct().count() == table.count() == QUERIES * DOCS
    assertDataFrameEqual(table, reference)


# Files only the driver has, both scenarios in one submit (one driver and one executor per
# worker, not two): the evaluate entry script, run as spark-submit runs it, reading a TREC run and
# qrels from the driver's /tmp, then the bundled sample written with the demo's own function. Both
# import the project from the zip (the guard runs).
_DRIVER_FILES = """
import runpy, sys
from jobs.demo import write_sample
from jobs.session import get_session
sample, evaluate, *flags = sys.argv[1:]
write_sample(get_session("sample"), sample)
sys.argv = [evaluate, *flags]
try:
    runpy.run_path(evaluate, run_name="__main__")
except SystemExit as done:
    if done.code:
        raise
"""
_RUN = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 2.0, "y": 1.0}}
_QRELS = {"q1": {"b": 2, "c": 1}, "q2": {"x": 1}, "q3": {"z": 1}}


@pytest.fixture(scope="module")
def driver_files(spark, standalone_cluster, shipped, tmp_path_factory):
    """Submits ``_DRIVER_FILES`` once; returns the metrics table's and the sample's paths."""
    # Files in the driver's /tmp: an executor opening them would fail (its /tmp is empty).
    local = tmp_path_factory.mktemp("driver-only")
    run_file, qrels_file = local / "run.txt", local / "qrels.txt"
    run_file.write_text("".join(
        f"{q} Q0 {d} {r} {s} t\n" for q, docs in _RUN.items()
        for r, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), 1)))
    qrels_file.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in _QRELS.items()
                                  for d, g in docs.items()))
    folder = shipped[0]
    (folder / "driver_files.py").write_text(_DRIVER_FILES)
    metrics = str(standalone_cluster.shared / "metrics")
    sample = str(standalone_cluster.shared / "sample")
    _finish(_submit(standalone_cluster, shipped, "driver_files.py", [
        sample, str(folder / "evaluate.py"),
        "--run", str(run_file), "--qrels", str(qrels_file), "--output", metrics,
        "--run-date", DAY, "--name", "tiny", "--metrics", "ndcg@10"],
        marks=standalone_cluster.shared / "driver-files-marks"))
    return metrics, sample


def test_evaluate_reads_trec_files_that_only_the_driver_has(spark, driver_files):
    metrics, _ = driver_files
    got = {r["qid"]: r["value"] for r in spark.read.format("delta").load(metrics).collect()}
    expected = pytrec_eval.RelevanceEvaluator(_QRELS, {"ndcg_cut_10"}).evaluate(_RUN)
    for qid in _RUN:
        assert got[qid] == pytest.approx(expected[qid]["ndcg_cut_10"])
    # Denominator qrels: q3 is judged but not in the run, so it counts as 0.
    assert got["all"] == pytest.approx(sum(v["ndcg_cut_10"] for v in expected.values()) / 3)


@_BY_HAND
def test_synthesize_writes_its_samples_on_the_cluster(spark, standalone_cluster, shipped,
                                                      inputs):
    candidates, model = inputs
    output = str(standalone_cluster.shared / "samples")
    log = _finish(_submit(standalone_cluster, shipped, "synthesize.py", [
        "--candidates", candidates, "--output", output, "--run-date", DAY,
        "--pointwise-teacher", "first-stage", "--listwise-teacher", "first-stage",
        "--chat-model", model, "--pool-size", "8", "--pool-top", "3", "--pool-depth", "10",
        "--group-sizes", "4,6", "--samples-per-query", "2", "--partitions", "2"]))
    assert _summary(log)["pools"] == QUERIES
    table = spark.read.format("delta").load(output)
    assert table.count() == table.select("sample_id").distinct().count() == QUERIES * 2
    assert {r["qid"] for r in table.select("qid").collect()} == {f"q{q}" for q in range(QUERIES)}


def test_the_demo_sample_is_read_on_the_driver(spark, driver_files):
    _, sample = driver_files
    lines = (REPO / "grouprank" / "data" / "sample_candidates.jsonl").read_text().splitlines()
    expected = {(r["qid"], r["docid"]) for r in map(json.loads, lines)}
    table = spark.read.format("delta").load(sample)
    assert {(r["qid"], r["docid"]) for r in table.collect()} == expected
    assert table.count() == len(lines)
