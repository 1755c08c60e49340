"""The docs cannot drift from the code: generated column lists, flag names, the Delta coordinate."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pyspark

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "docs" / name
        for name in ("ARCHITECTURE.md", "DEPLOYMENT.md", "TUNING.md", "TRAINING.md")]
# Flags of other programs the docs show: spark-submit, python -m build, databricks bundle run.
EXTERNAL_FLAGS = {
    "--master", "--deploy-mode", "--packages", "--conf", "--py-files", "--archives",
    "--properties-file", "--jars", "--wheel", "--params", "--check",
    # unshare, in the standalone-cluster section of DEPLOYMENT.md.
    "--mount", "--class",
}


def _job_flags() -> set[str]:
    from grouprank.settings import RerankSettings
    from grouprank.synthesis import SynthesisSettings
    from jobs.evaluate import EvaluateJob
    from jobs.ingest import IngestJob
    from jobs.publish import PublishJob
    from jobs.rerank import RerankJob
    from jobs.retrieve import RetrieveJob
    from jobs.synthesize import SynthesizeJob
    from jobs.train_rl import RLInit
    from jobs.train_sft import SFTBase
    from jobs.training import RLOptions, TrainJob

    flags = {"--config", "--run-date", "--workdir", "--top", "--help"}  # pipeline, demo, argparse
    for config in (RerankJob, RerankSettings, RetrieveJob, EvaluateJob, IngestJob, SynthesizeJob,
                   SynthesisSettings, PublishJob, SFTBase, RLInit, TrainJob, RLOptions):
        for field in dataclasses.fields(config):
            flag = "--" + field.name.replace("_", "-")
            flags |= {flag, "--no-" + flag[2:]}
    return flags


def test_column_lists_match_the_schemas():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "schema_docs.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_flag_in_the_docs_exists():
    known = _job_flags() | EXTERNAL_FLAGS
    for path in DOCS:
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", path.read_text()))
        assert flags - known == set(), f"{path.name} names flags no job has"


def test_delta_coordinate_matches_the_installed_pair():
    spark = ".".join(pyspark.__version__.split(".")[:2])
    expected = f"io.delta:delta-spark_{spark}_2.13:{importlib.metadata.version('delta-spark')}"
    for path in [*DOCS, REPO / "deploy" / "spark-gpu.conf", REPO / "tests" / "test_packaging.py"]:
        for coordinate in re.findall(r"io\.delta:delta-spark_[\w.]+:[\w.]+", path.read_text()):
            assert coordinate == expected, (path.name, coordinate)
    assert expected in (REPO / "deploy" / "spark-gpu.conf").read_text()
