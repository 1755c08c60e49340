"""Every notebook runs locally (no dbutils) on the bundled sample in the test SparkSession."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow


def test_notebooks_are_databricks_source_files():
    for path in NOTEBOOKS.glob("*.py"):
        text = path.read_text()
        assert text.startswith("# Databricks notebook source\n"), path
        assert "# COMMAND ----------" in text and "# MAGIC %md" in text, path


def test_rerank_then_evaluate_then_synthesize(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("rerank", "evaluate", "synthesize"):
        runpy.run_path(str(NOTEBOOKS / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "first_stage_rank" in out and "nDCG@10" in out and "completion" in out
    assert (tmp_path / "out/notebooks/reranked/_delta_log").is_dir()
    assert spark.read.format("delta").load(str(tmp_path / "out/notebooks/samples")).count() > 0
