"""The docs cannot drift from the code: generated column lists, flag names, the Delta coordinate."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pyspark

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md"] + [REPO / "docs" / name for name in (
    "ARCHITECTURE.md", "RUNNING.md", "TUNING.md", "TRAINING.md", "DEPLOYMENT.md", "PUBLISHING.md")]
# Flags of other programs the docs show: spark-submit, python -m build, databricks bundle run.
EXTERNAL_FLAGS = {
    "--master", "--deploy-mode", "--packages", "--conf", "--py-files", "--archives",
    "--properties-file", "--jars", "--wheel", "--params", "--check",
    # unshare, in the standalone-cluster section of DEPLOYMENT.md.
    "--mount", "--class",
    # uv pip install, in DEPLOYMENT.md's packed venv.
    "--compile-bytecode",
}
# "grouprank JOB" or "jobs/JOB.py", then the rest of the command (to a closing backtick, a
# table cell's end, a shell comment, or the next command).
_COMMAND = re.compile(r"(?:\bgrouprank\s+([a-z][\w-]*)|\bjobs/(\w+)\.py)([^`|#;&\n]*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _stage_of(command: str | None, module: str | None) -> str | None:
    from jobs.stages import STAGES

    if command:
        return command if command in STAGES else None
    return next((s.name for s in STAGES.values() if s.module == module), None)


def _commands(text: str):
    """(stage, flags) of every command line in a doc, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    for match in _COMMAND.finditer(joined):
        stage = _stage_of(match.group(1), match.group(2))
        if stage is not None:
            yield stage, set(_FLAG.findall(match.group(3)))


def test_column_lists_match_the_schemas():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "schema_docs.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_flag_in_the_docs_exists():
    from jobs.stages import STAGES, flags

    known = set().union(*(flags(name) for name in STAGES)) | EXTERNAL_FLAGS
    for path in DOCS:
        found = set(_FLAG.findall(path.read_text()))
        assert found - known == set(), f"{path.name} names flags no job has"


def test_each_documented_command_uses_only_its_own_jobs_flags():
    from jobs.stages import flags

    checked = 0
    for path in DOCS:
        for stage, used in _commands(path.read_text()):
            wrong = used - flags(stage) - EXTERNAL_FLAGS
            assert not wrong, f"{path.name}: grouprank {stage} has no {sorted(wrong)}"
            checked += 1
    assert checked > 20  # the docs' commands were found


def test_the_command_check_catches_a_flag_under_the_wrong_job():
    text = "grouprank evaluate --run r --qrels q \\\n    --group-size 20\n"
    assert ("evaluate", {"--run", "--qrels", "--group-size"}) in list(_commands(text))


def test_delta_coordinate_matches_the_installed_pair():
    spark = ".".join(pyspark.__version__.split(".")[:2])
    expected = f"io.delta:delta-spark_{spark}_2.13:{importlib.metadata.version('delta-spark')}"
    for path in [*DOCS, REPO / "deploy" / "spark-gpu.conf", REPO / "tests" / "test_packaging.py"]:
        for coordinate in re.findall(r"io\.delta:delta-spark_[\w.]+:[\w.]+", path.read_text()):
            assert coordinate == expected, (path.name, coordinate)
    assert expected in (REPO / "deploy" / "spark-gpu.conf").read_text()
