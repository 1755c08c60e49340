"""The wheel (what a cluster installs) and a spark-submit run that imports only from it.

The wheel is the session's ``wheel`` fixture (tests/conftest.py), built once for these tests and
the cluster's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import grouprank
from tests.conftest import PACKAGES

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_wheel_is_versioned_and_carries_packages_templates_and_data(wheel):
    assert wheel.name == f"grouprank_spark-{grouprank.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    for path in (REPO / "grouprank" / "templates").glob("*.toml"):
        assert f"grouprank/templates/{path.name}" in names
    assert {"grouprank/data/sample_candidates.jsonl", "grouprank/data/sample_qrels.txt"} <= names
    assert "jobs/rerank.py" in names and "udfs/scoring.py" in names
    assert not any(name.startswith("tests/") for name in names)
    entry_points = zipfile.ZipFile(wheel).read(
        f"grouprank_spark-{grouprank.__version__}.dist-info/entry_points.txt").decode()
    assert "grouprank = jobs.cli:main" in entry_points


def test_wheel_carries_shipped_weights(wheel):
    weights = REPO / "grouprank" / "weights"
    if not weights.is_dir():
        pytest.skip("no grouprank/weights/ in this checkout (no model weights shipped yet)")
    expected = {
        path.relative_to(REPO).as_posix()
        for path in weights.rglob("*")
        if path.suffix in (".json", ".safetensors", ".md") and "__pycache__" not in path.parts
    }
    assert expected, f"{weights} holds no .json, .safetensors or .md files"
    assert expected <= set(zipfile.ZipFile(wheel).namelist())


# Started by Python in every process of the spark-submit run (driver, Python workers): hides the
# venv's editable install of this project, so its packages can only come from --py-files.
_GUARD = """
import os, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks
                     if not getattr(h, "__module__", "").startswith("__editable__")]
open(os.path.join(os.environ["GUARD_MARKS"], str(os.getpid())), "w").close()
"""


def test_spark_submit_runs_the_rerank_job_from_the_wheel(spark, wheel, tiny_model_dir, tmp_path):
    from schemas import CANDIDATES
    from tests.cluster import cluster_unavailable, delta_submit_args, jvm_archive_conf

    # Where the standalone cluster runs, tests/test_cluster.py submits this entry script with
    # this wheel as --py-files and this guard (the driver and every executor's Python import the
    # project from the zip only), to a real master, with the workers' /tmp private: a stricter
    # form of this test. Its own spark-submit JVM cost the suite ~23 s for nothing more.
    if cluster_unavailable() is None:
        pytest.skip("covered by tests/test_cluster.py::test_rerank_runs_on_both_workers_from_"
                    "the_wheel (the same submit to a standalone master)")

    rows = [(f"q{q}", f"query {q}", f"q{q}-d{i}", f"text {i} of query {q}", float(9 - i), i + 1)
            for q in range(2) for i in range(7)]
    candidates, output = tmp_path / "candidates", tmp_path / "reranked"
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").save(str(candidates))
    workdir, guard, marks = (tmp_path / name for name in ("submit", "guard", "marks"))
    for folder in (workdir, guard, marks):
        folder.mkdir()
    (guard / "sitecustomize.py").write_text(_GUARD)
    # The entry script runs from a folder outside the repository, as on a cluster.
    entry = workdir / "rerank.py"
    shutil.copy(REPO / "jobs" / "rerank.py", entry)
    # PySpark puts --py-files on the workers' path only for .zip/.egg/.jar names; a wheel is a zip.
    archive = shutil.copy(wheel, workdir / wheel.with_suffix(".zip").name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "SPARK_HOME")}
    env.update(PYTHONPATH=str(guard), GUARD_MARKS=str(marks), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    command = [
        str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
        # The jars downloaded once, as a cluster without Maven Central passes them (a cluster
        # with it uses --packages, docs/DEPLOYMENT.md section 4); the job adds none itself.
        *delta_submit_args({
            "spark.ui.enabled": "false", **jvm_archive_conf(),
            # Small-machine settings, as jobs/session.py applies to local sessions it builds.
            "spark.sql.shuffle.partitions": "2", "spark.databricks.delta.snapshotPartitions": "2",
        }),
        "--py-files", str(archive),
        str(entry),
        "--candidates", str(candidates), "--output", str(output), "--run-date", "2026-11-27",
        # One scoring partition: one Python worker pays the torch import, the test's main cost.
        "--model", str(tiny_model_dir), "--group-size", "3", "--partitions", "1",
    ]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list(marks.iterdir())) >= 2  # the guard ran in the driver and in the workers
    table = spark.read.format("delta").load(str(output))
    assert table.count() == len(rows)
    assert table.select("qid", "docid").distinct().count() == len(rows)
