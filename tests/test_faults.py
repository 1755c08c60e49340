"""Faults in real Spark jobs: killed workers, a job killed before its commit, concurrent dates,
and a model that emits garbage, injected by tests/faults/sitecustomize.py.

A fault that leaves the driver alive (a killed Python worker, garbage output) runs in the shared
test session, whose workers read their fault per call (the ``fault`` fixture); a job that must
be killed whole, or a second writer, runs in a job process of its own, which takes the module's
jobs one after another (``job_runner``).
"""

from __future__ import annotations

import json
import os
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
from tests.conftest import kill_process_group
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


# A job process that runs rerank jobs one after another, as a long-lived driver does (a
# notebook, a pipeline): each job's flags and fault come as a numbered file in its inbox, and its
# exit code goes back beside it. The two scenarios that need a second driver share its JVM and
# Python workers: starting one cost ~15 s of the suite's 2 cores.
_RUNNER = """
import json, os, sys, time
from jobs.stages import main as stage_main

inbox, fault_file = sys.argv[1], os.environ["GROUPRANK_TEST_FAULT_FILE"]
number = 0
while True:
    job = os.path.join(inbox, f"{number}.json")
    while not os.path.exists(job):
        time.sleep(0.2)
    with open(job) as handle:
        spec = json.load(handle)
    with open(fault_file, "w") as handle:  # read by the driver and the workers at every call
        handle.write(spec["fault"])
    code = stage_main("rerank", spec["args"])
    with open(job + ".tmp", "w") as handle:
        handle.write(str(code))
    os.replace(job + ".tmp", os.path.join(inbox, f"{number}.done"))
    number += 1
"""


class _JobRunner:
    """The job process above, with the fault injector on its path (tests/faults)."""

    def __init__(self, folder: Path) -> None:
        self.inbox, self.jobs = folder / "inbox", 0
        self.inbox.mkdir(parents=True)
        script = folder / "runner.py"
        script.write_text(_RUNNER)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "faults"), str(REPO)])
        # local[2,4]: two cores, and a failed task is retried up to 4 times, as on a cluster.
        # Its jobs are 72 rows: interpreted expressions cost less than compiling them.
        interpreted = " ".join(f"--conf {k}={v}" for k, v in INTERPRETED_CONF.items())
        env["PYSPARK_SUBMIT_ARGS"] = f"--master local[2,4] {interpreted} pyspark-shell"
        env["GROUPRANK_TEST_FAULT_FILE"] = str(folder / "fault")
        env.pop("GROUPRANK_TEST_FAULT", None)
        # Its output goes to a file, so a test busy elsewhere never blocks it on a full pipe.
        self.output = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.inbox)], env=env,
                                     cwd=REPO, stdout=self.output, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)

    def submit(self, cand: str, out: str, day: str, model: str, fault: str = "") -> int:
        """Queues a rerank job with ``fault`` armed while it runs; returns its number."""
        args = ["--candidates", cand, "--output", out, "--run-date", day, "--model", model,
                "--group-size", "5", "--partitions", "4"]
        number, self.jobs = self.jobs, self.jobs + 1
        job = self.inbox / f"{number}.json"
        job.with_suffix(".tmp").write_text(json.dumps({"args": args, "fault": fault}))
        job.with_suffix(".tmp").replace(job)
        return number

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, number: int, timeout: float = 600) -> tuple[int, str]:
        """The job's exit code and the process's output so far; a dead process fails the test."""
        done, deadline = self.inbox / f"{number}.done", time.monotonic() + timeout
        while not done.exists() and self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.output.seek(0)
        log = self.output.read()
        assert done.exists(), f"job {number} did not finish (exit {self.proc.poll()}):\n{log[-3000:]}"
        return int(done.read_text()), log

    def kill(self) -> None:
        """Kills the job process and everything in its process group, and reaps it."""
        kill_process_group(self.proc)


@pytest.fixture(scope="module")
def job_runner(tmp_path_factory):
    """Gives the module's job process, starting a new one when a test killed the last."""
    runners: list[_JobRunner] = []

    def live() -> _JobRunner:
        if not runners or not runners[-1].alive():
            runners.append(_JobRunner(tmp_path_factory.mktemp("job-runner")))
        return runners[-1]

    yield live
    for runner in runners:
        runner.kill()


def test_killed_worker_is_retried_and_the_table_is_unchanged(spark, setup, fault):
    base, cand, settings, reference = setup
    marker, out = base / "killed.marker", str(base / "killed")
    fault(f"kill-once:{marker}")
    rerank_job.run(rerank_job.RerankJob(cand, out, DAY), settings)
    assert marker.exists()  # the fault really fired
    table = spark.read.format("delta").load(out)
    assertDataFrameEqual(table, spark.createDataFrame(reference, table.schema))


def test_two_dates_written_at_once_both_land(spark, setup, job_runner, monkeypatch):
    base, cand, settings, _ = setup
    out = str(base / "concurrent")
    # Two writers in two JVMs, this session and the job process, each waiting before its Delta
    # write until the other is there too: both commit against the same table version. The job
    # is queued first, so the process's JVM comes up while this session writes the first night;
    # it reads the output table only in its write, after the barrier, when that night is there.
    meeting = f"{base / 'barrier'}:2"
    runner = job_runner()
    job = runner.submit(cand, out, "2026-11-21", settings.model, f"barrier:{meeting}")
    write = rerank_job.write_run_date_partition

    def write_with_the_other(*args, **kwargs):
        barrier(meeting, stop=lambda: not runner.alive())
        write(*args, **kwargs)

    rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-20"), settings)  # table exists
    monkeypatch.setattr(rerank_job, "write_run_date_partition", write_with_the_other)
    rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-22"), settings)
    code, log = runner.wait(job)
    assert code == 0, log[-3000:]
    table = spark.read.format("delta").load(out)
    counts = {str(r["run_date"]): r["count"] for r in table.groupBy("run_date").count().collect()}
    assert counts == {"2026-11-20": 72, "2026-11-21": 72, "2026-11-22": 72}
    assert table.select("run_date", "qid", "docid").distinct().count() == 216


def test_job_killed_before_commit_leaves_the_table_untouched(spark, setup, job_runner):
    base, cand, settings, reference = setup
    out = str(base / "interrupted")
    marker = base / "stall.marker"
    # The job stalls in its scoring, before its write, the first moment it touches the output
    # table; so it is queued first and runs while this session writes the earlier night.
    runner = job_runner()
    runner.submit(cand, out, DAY, settings.model, f"stall:{marker}")
    try:
        # An earlier night's partition that must survive.
        rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-26"), settings)
        before = spark.read.format("delta").load(out).collect()
        # A guard against a hang, not a timing: a loaded 2-core machine took over 300 s.
        deadline = time.time() + 900
        while not marker.exists() and time.time() < deadline and runner.alive():
            time.sleep(0.5)
        assert marker.exists(), "the job never reached the scoring UDF"
        time.sleep(2)
    finally:
        runner.kill()
    after = spark.read.format("delta").load(out)
    assertDataFrameEqual(after, spark.createDataFrame(before, after.schema))
    # Rerunning the night gives exactly the undisturbed result.
    rerank_job.run(rerank_job.RerankJob(cand, out, DAY), settings)
    night = spark.read.format("delta").load(out).where(f"run_date = DATE'{DAY}'")
    assertDataFrameEqual(night, spark.createDataFrame(reference, night.schema))


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
