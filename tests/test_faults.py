"""Faults in real Spark jobs: killed workers, a job killed before its commit, concurrent dates,
and a model that emits garbage, injected by tests/faults/sitecustomize.py.

A fault that leaves the driver alive (a killed Python worker, garbage output) runs in the shared
test session, whose workers read their fault per call (the ``fault`` fixture); a job that must
be killed whole, or a second writer, is its own job process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from grouprank.settings import RerankSettings
from jobs.session import INTERPRETED_CONF
from jobs.stages import rerank as rerank_job
from jobs.stages import main as stage_main
from schemas import CANDIDATES
from tests.faults.sitecustomize import barrier

REPO = Path(__file__).resolve().parents[1]
DAY = "2026-11-27"
pytestmark = pytest.mark.slow


def _rows():
    return [
        (f"q{q}", f"query number {q}", f"q{q}-d{i}", f"text {i} of query {q}", float(30 - i), i + 1)
        for q in range(6)
        for i in range(12)
    ]


@pytest.fixture(scope="module")
def setup(spark, tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    cand = str(base / "candidates")
    spark.createDataFrame(_rows(), CANDIDATES).write.format("delta").save(cand)
    settings = RerankSettings(model=str(tiny_model_dir), group_size=5, partitions=4)
    reference = str(base / "reference")
    rerank_job.run(rerank_job.RerankJob(cand, reference, DAY), settings)
    return base, cand, settings, spark.read.format("delta").load(reference).collect()


def _job_process(cand: str, out: str, day: str, model: str, fault: str = ""):
    args = ["--candidates", cand, "--output", out, "--run-date", day, "--model", model,
            "--group-size", "5", "--partitions", "4"]
    return _process("jobs.rerank", args, fault)


def _process(module: str, args: list[str], fault: str = ""):
    """Runs ``python -m module args`` as its own job process, with the fault injector armed; its
    output goes to a file, so a test busy elsewhere never blocks it on a full pipe."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "faults"), str(REPO)])
    # local[2,4]: two cores, and a failed task is retried up to 4 times, as on a cluster. A
    # 72-row job: interpreted expressions cost less than compiling them (INTERPRETED_CONF).
    interpreted = " ".join(f"--conf {k}={v}" for k, v in INTERPRETED_CONF.items())
    env["PYSPARK_SUBMIT_ARGS"] = f"--master local[2,4] {interpreted} pyspark-shell"
    env["GROUPRANK_TEST_FAULT"] = fault
    output = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=REPO,
                            stdout=output, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.output = output
    return proc


def _kill(proc) -> None:
    """Kills a job process and everything in its process group, and reaps it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone, with its group
        pass
    proc.wait()


def _finish(proc, timeout=600) -> tuple[int, str]:
    proc.wait(timeout=timeout)
    proc.output.seek(0)
    return proc.returncode, proc.output.read()


def test_killed_worker_is_retried_and_the_table_is_unchanged(spark, setup, fault):
    base, cand, settings, reference = setup
    marker, out = base / "killed.marker", str(base / "killed")
    fault(f"kill-once:{marker}")
    rerank_job.run(rerank_job.RerankJob(cand, out, DAY), settings)
    assert marker.exists()  # the fault really fired
    table = spark.read.format("delta").load(out)
    assertDataFrameEqual(table, spark.createDataFrame(reference, table.schema))


def test_job_killed_before_commit_leaves_the_table_untouched(spark, setup):
    base, cand, settings, reference = setup
    out = str(base / "interrupted")
    marker = base / "stall.marker"
    # The job stalls in its scoring, before its write, the first moment it touches the output
    # table; so it starts first and its JVM comes up while this session writes the earlier night.
    proc = _job_process(cand, out, DAY, settings.model, f"stall:{marker}")
    try:
        # An earlier night's partition that must survive.
        rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-26"), settings)
        before = spark.read.format("delta").load(out).collect()
        # A guard against a hang, not a timing: a loaded 2-core machine took over 300 s.
        deadline = time.time() + 900
        while not marker.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert marker.exists(), "the job never reached the scoring UDF"
        time.sleep(2)
    finally:
        _kill(proc)
    after = spark.read.format("delta").load(out)
    assertDataFrameEqual(after, spark.createDataFrame(before, after.schema))
    # Rerunning the night gives exactly the undisturbed result.
    rerank_job.run(rerank_job.RerankJob(cand, out, DAY), settings)
    night = spark.read.format("delta").load(out).where(f"run_date = DATE'{DAY}'")
    assertDataFrameEqual(night, spark.createDataFrame(reference, night.schema))


def test_two_dates_written_at_once_both_land(spark, setup, monkeypatch):
    base, cand, settings, _ = setup
    out = str(base / "concurrent")
    # Two writers in two JVMs, this session and a job process, each waiting before its Delta
    # write until the other is there too: both commit against the same table version. The job
    # process starts first, so its JVM comes up while this session writes the first night; it
    # reads the output table only in its write, after the barrier, when that night is there.
    meeting = f"{base / 'barrier'}:2"
    proc = _job_process(cand, out, "2026-11-21", settings.model, f"barrier:{meeting}")
    write = rerank_job.write_run_date_partition

    def write_with_the_other(*args, **kwargs):
        barrier(meeting, stop=lambda: proc.poll() is not None)
        write(*args, **kwargs)

    try:
        rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-20"), settings)  # table exists
        monkeypatch.setattr(rerank_job, "write_run_date_partition", write_with_the_other)
        rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-22"), settings)
        code, log = _finish(proc)
    finally:
        _kill(proc)  # a failure above leaves no job process behind
    assert code == 0, log[-3000:]
    table = spark.read.format("delta").load(out)
    counts = {str(r["run_date"]): r["count"] for r in table.groupBy("run_date").count().collect()}
    assert counts == {"2026-11-20": 72, "2026-11-21": 72, "2026-11-22": 72}
    assert table.select("run_date", "qid", "docid").distinct().count() == 216


def test_garbage_model_output_is_marked_counted_and_falls_back(spark, setup, fault):
    base, cand, settings, _ = setup
    out = str(base / "garbage")
    fault("garbage:0.5")
    summary = rerank_job.run(rerank_job.RerankJob(cand, out, DAY), settings)
    table = spark.read.format("delta").load(out).toPandas()
    assert len(table) == summary["rows_out"] == 72
    bad = table[table.model_score.isna()]
    assert 0 < len(bad) < 72
    assert set(bad.status) <= {"unparsed", "out_of_range", "missing_score"}
    assert summary["unscored"] == len(bad)
    # Unscored documents keep their first-stage order among themselves.
    for _, part in bad.groupby("qid"):
        part = part.sort_values("rank")
        assert part.first_stage_rank.is_monotonic_increasing


def test_killed_synthesis_worker_is_retried_and_the_samples_are_unchanged(
    spark, setup, tiny_model_dir, fault
):
    base, cand, _, _ = setup
    marker = base / "synthesis-killed.marker"
    # First-stage teachers keep the test fast; the worker dies in the teacher step either way.

    def args(out: str) -> list[str]:
        return ["--candidates", cand, "--output", out, "--run-date", DAY,
                "--pointwise-teacher", "first-stage", "--listwise-teacher", "first-stage",
                "--chat-model", str(tiny_model_dir), "--pool-size", "10", "--pool-top", "3",
                "--pool-depth", "12", "--group-sizes", "4,6", "--samples-per-query", "2",
                "--partitions", "4"]

    reference = str(base / "samples-reference")
    assert stage_main("synthesize", args(reference)) == 0
    out = str(base / "samples-killed")
    fault(f"kill-once:{marker}")
    assert stage_main("synthesize", args(out)) == 0
    assert marker.exists()  # the fault really fired
    table = spark.read.format("delta").load(out)
    assert table.count() == 12  # 6 queries x 2 samples, none lost or doubled by the retry
    assertDataFrameEqual(table, spark.read.format("delta").load(reference))
