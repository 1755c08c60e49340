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
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytrec_eval
from pyspark.testing import assertDataFrameEqual

from schemas import CANDIDATES
from tests.conftest import kill_process_group
from tests.test_packaging import _GUARD

# The cluster fixtures; helpers come through them (importing tests.cluster here would import it
# before pytest loads it as a plugin).
pytest_plugins = ["tests.cluster"]
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
DAY = "2026-11-27"
QUERIES, DOCS = 4, 10
_INJECTOR = f"""
import importlib.util
_spec = importlib.util.spec_from_file_location(
    "grouprank_test_faults", {str(REPO / "tests" / "faults" / "sitecustomize.py")!r})
_faults = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _faults
_spec.loader.exec_module(_faults)
"""


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
    # marks are written where the test can see them from every process. Python runs one
    # sitecustomize, so the guard's also loads the fault injector (inert without its variables).
    guard = standalone_cluster.shared / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD + _INJECTOR)
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
        kill_process_group(self.proc)


def _submit(cluster, shipped, entry: str, args: list[str], marks: Path,
            fault_file: Path | None = None) -> _Submitted:
    """spark-submit in client mode to the standalone master, from the driver's submit folder.

    Every Python process (driver and executors) runs the guard and leaves a mark in ``marks``;
    with ``fault_file`` the executors' fault injector reads its fault from that file at every
    scoring call (tests/faults/sitecustomize.py), so the driver can arm it between two jobs.
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
    marks.mkdir(exist_ok=True)
    env = cluster.env(PYTHONPATH=str(guard), GUARD_MARKS=str(marks))
    conf.update({"spark.executorEnv.PYTHONPATH": str(guard),
                 "spark.executorEnv.GUARD_MARKS": str(marks)})
    if fault_file is not None:
        conf["spark.executorEnv.GROUPRANK_TEST_FAULT_FILE"] = str(fault_file)
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


def _summaries(output: str, job: str) -> list[dict]:
    """The summaries the jobs named ``job`` printed, in order."""
    found = [json.loads(l[len("summary: "):]) for l in output.splitlines()
             if l.startswith("summary: ")]
    return [s for s in found if s["job"] == job]


# The head of the driver scripts below: each runs entry scripts one after the other in one
# application (one driver, one executor per worker), as spark-submit runs each script: as
# ``__main__``, an error exit raising.
_RUN_ENTRY = """
import json, runpy, sys

def run_entry(entry, flags):
    sys.argv = [entry, *flags]
    try:
        runpy.run_path(entry, run_name="__main__")
    except SystemExit as done:
        if done.code:
            raise
"""


def _apps_on(worker) -> set[str]:
    return {p.name for p in worker.work_dir.iterdir() if p.name.startswith("app-")}


# Every job the tests below check, in one application (one driver, one executor per worker),
# so the module pays for one spark-submit: files only the driver has and synthesis (the evaluate
# entry script reading a TREC run and qrels from the driver's /tmp, the bundled sample written
# with the demo's own function, the synthesize entry script), then the rerank entry script
# twice: undisturbed, then with the executors' fault injector armed so that the first chunk
# scored hangs; the test kills the executor running it. All import the project from the zip (the
# guard runs).
_ONE_APPLICATION = _RUN_ENTRY + """
from jobs.stages.demo import write_sample
from jobs.session import get_session
(sample, evaluate, evaluate_flags, synthesize, synthesize_flags, rerank, fault_file, fault,
 undisturbed, disturbed, rerank_flags) = sys.argv[1:]
write_sample(get_session("sample"), sample)
run_entry(evaluate, json.loads(evaluate_flags))
run_entry(synthesize, json.loads(synthesize_flags))
run_entry(rerank, ["--output", undisturbed, *json.loads(rerank_flags)])
with open(fault_file, "w") as handle:  # read by the executors at every scoring call
    handle.write(fault)
run_entry(rerank, ["--output", disturbed, *json.loads(rerank_flags)])
"""
_RUN = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 2.0, "y": 1.0}}
_QRELS = {"q1": {"b": 2, "c": 1}, "q2": {"x": 1}, "q3": {"z": 1}}


@dataclass(frozen=True)
class _Application:
    log: str
    marks: Path
    # Per worker, the applications it started an executor for during the submit.
    new_apps: list[set[str]]
    # The executor JVM killed during the second rerank run.
    killed: int
    undisturbed: str  # the output tables' paths
    disturbed: str
    metrics: str
    sample: str
    samples: str

    def after_first_rerank(self) -> tuple[str, str]:
        """The log up to and including the first rerank's summary line, and the rest."""
        offset = 0
        for line in self.log.splitlines(keepends=True):
            offset += len(line)
            if line.startswith("summary: ") and json.loads(line[9:])["job"] == "rerank":
                return self.log[:offset], self.log[offset:]
        raise AssertionError("no rerank summary in the log:\n" + self.log[-3000:])


@pytest.fixture(scope="module")
def application(standalone_cluster, shipped, inputs, tmp_path_factory):
    """One submit of ``_ONE_APPLICATION``; the executor running the second rerank's first
    scoring task is killed (SIGKILL, with its Python workers, as when its machine is lost)
    while it scores."""
    cluster, (candidates, model) = standalone_cluster, inputs
    # Files in the driver's /tmp: an executor opening them would fail (its /tmp is empty).
    local = tmp_path_factory.mktemp("driver-only")
    run_file, qrels_file = local / "run.txt", local / "qrels.txt"
    run_file.write_text("".join(
        f"{q} Q0 {d} {r} {s} t\n" for q, docs in _RUN.items()
        for r, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), 1)))
    qrels_file.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in _QRELS.items()
                                  for d, g in docs.items()))
    folder = shipped[0]
    (folder / "one_application.py").write_text(_ONE_APPLICATION)
    metrics, sample, samples, undisturbed, disturbed = (
        str(cluster.shared / name)
        for name in ("metrics", "sample", "samples", "reranked", "reranked-executor-lost"))
    evaluate = ["--run", str(run_file), "--qrels", str(qrels_file), "--output", metrics,
                "--run-date", DAY, "--name", "tiny", "--metrics", "ndcg@10"]
    synthesize = [
        "--candidates", candidates, "--output", samples, "--run-date", DAY,
        "--pointwise-teacher", "first-stage", "--listwise-teacher", "first-stage",
        "--chat-model", model, "--pool-size", "8", "--pool-top", "3", "--pool-depth", "10",
        "--group-sizes", "4,6", "--samples-per-query", "2", "--partitions", "2"]
    rerank = ["--candidates", candidates, "--run-date", DAY, "--model", model,
              "--group-size", "5", "--partitions", "4"]
    fault_file, marker = cluster.shared / "fault", cluster.shared / "hang.marker"
    fault_file.write_text("")
    before = [_apps_on(w) for w in cluster.workers]
    marks = cluster.shared / "marks"
    job = _submit(cluster, shipped, "one_application.py", [
        sample, str(folder / "evaluate.py"), json.dumps(evaluate),
        str(folder / "synthesize.py"), json.dumps(synthesize),
        str(folder / "rerank.py"), str(fault_file), f"hang-once:{marker}", undisturbed,
        disturbed, json.dumps(rerank)], marks=marks, fault_file=fault_file)
    deadline = time.monotonic() + 1200
    try:
        while job.proc.poll() is None and time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                break
            time.sleep(0.3)
    except BaseException:  # an interrupted test run leaves no job behind
        job.kill()
        raise
    if not (marker.exists() and marker.read_text().strip()):
        job.kill()
        pytest.fail("the second rerank never started scoring:\n" + job.output()[-3000:])
    killed = cluster.kill_executor_of(int(marker.read_text()))
    log = _finish(job)
    new_apps = [_apps_on(w) - b for w, b in zip(cluster.workers, before)]
    return _Application(log, marks, new_apps, killed, undisturbed, disturbed, metrics, sample,
                        samples)


def test_rerank_runs_on_both_workers_from_the_wheel(spark, application):
    # Each worker started an executor for the application, and the guard ran in the driver and
    # in the executors' Python workers: the project came from the shipped zip.
    assert all(len(apps) == 1 for apps in application.new_apps), application.new_apps
    assert len(list(application.marks.iterdir())) >= 3
    summary = _summaries(application.log, "rerank")[0]
    assert summary["rows_in"] == summary["rows_out"] == QUERIES * DOCS
    rows = spark.read.format("delta").load(application.undisturbed).select("qid", "docid", "rank")
    rows = rows.collect()
    assert sorted((r["qid"], r["docid"]) for r in rows) == sorted((r[0], r[2]) for r in _rows())
    for q in range(QUERIES):
        assert sorted(r["rank"] for r in rows if r["qid"] == f"q{q}") == list(range(1, DOCS + 1))


def test_a_killed_executor_is_replaced_and_the_table_equals_an_undisturbed_run(
    spark, standalone_cluster, application
):
    assert application.killed not in standalone_cluster.executors()
    # No executor was lost in the first run; in the second the scoring task running on the
    # killed one was lost and run again, and the master started a third executor (work folders
    # 0, 1 and 2 of the application) in its place.
    first, second = application.after_first_rerank()
    assert "ExecutorLostFailure" not in first and "ExecutorLostFailure" in second
    (app,) = set().union(*application.new_apps)
    folders = [w.work_dir / app for w in standalone_cluster.workers
               if (w.work_dir / app).is_dir()]
    assert sorted(e.name for f in folders for e in f.iterdir()) == ["0", "1", "2"], folders
    summary = _summaries(application.log, "rerank")[1]
    assert summary["rows_in"] == summary["rows_out"] == QUERIES * DOCS
    table = spark.read.format("delta").load(application.disturbed)
    assert table.select("qid", "docid").distinct().count() == table.count() == QUERIES * DOCS
    assertDataFrameEqual(table, spark.read.format("delta").load(application.undisturbed))


def test_evaluate_reads_trec_files_that_only_the_driver_has(spark, application):
    metrics = application.metrics
    got = {r["qid"]: r["value"] for r in spark.read.format("delta").load(metrics).collect()}
    expected = pytrec_eval.RelevanceEvaluator(_QRELS, {"ndcg_cut_10"}).evaluate(_RUN)
    for qid in _RUN:
        assert got[qid] == pytest.approx(expected[qid]["ndcg_cut_10"])
    # Denominator qrels: q3 is judged but not in the run, so it counts as 0.
    assert got["all"] == pytest.approx(sum(v["ndcg_cut_10"] for v in expected.values()) / 3)


def test_synthesize_writes_its_samples_on_the_cluster(spark, application):
    samples, log = application.samples, application.log
    (summary,) = _summaries(log, "synthesize")
    assert summary["pools"] == QUERIES
    table = spark.read.format("delta").load(samples)
    assert table.count() == table.select("sample_id").distinct().count() == QUERIES * 2
    assert {r["qid"] for r in table.select("qid").collect()} == {f"q{q}" for q in range(QUERIES)}


def test_the_demo_sample_is_read_on_the_driver(spark, application):
    sample = application.sample
    lines = (REPO / "grouprank" / "data" / "sample_candidates.jsonl").read_text().splitlines()
    expected = {(r["qid"], r["docid"]) for r in map(json.loads, lines)}
    table = spark.read.format("delta").load(sample)
    assert {(r["qid"], r["docid"]) for r in table.collect()} == expected
    assert table.count() == len(lines)
