"""Every notebook runs locally (no dbutils), on the bundled sample or a tiny samples table."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import test_train_jobs

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow
# The tiny samples Delta table (12 sft and 8 rl samples) of the training jobs' tests.
samples_table = test_train_jobs.samples_table


def test_notebooks_are_databricks_source_files():
    for path in NOTEBOOKS.glob("*.py"):
        text = path.read_text()
        assert text.startswith("# Databricks notebook source\n"), path
        assert "# COMMAND ----------" in text and "# MAGIC %md" in text, path


def test_rerank_then_evaluate_then_synthesize(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("rerank", "evaluate", "publish", "synthesize"):
        runpy.run_path(str(NOTEBOOKS / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "first_stage_rank" in out and "nDCG@10" in out and "completion" in out
    assert (tmp_path / "out/notebooks/reranked/_delta_log").is_dir()
    assert (tmp_path / "out/notebooks/reliability.png").read_bytes().startswith(b"\x89PNG")
    assert "gate churn" in out and (tmp_path / "out/notebooks/serving/_delta_log").is_dir()
    assert spark.read.format("delta").load(str(tmp_path / "out/notebooks/samples")).count() > 0


class FakeWidgets:
    """Databricks' ``dbutils.widgets``: a widget keeps the value it was given (a job parameter or
    an edit) and the first declaration's default otherwise; declaring it again changes nothing."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)
        self.declared: list[str] = []

    def text(self, name: str, default: str) -> None:
        self.declared.append(name)
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


def test_walkthrough_retrieves_reranks_evaluates_and_plots(spark, tiny_model_dir, tmp_path,
                                                          monkeypatch, capsys):
    from jobs import notebook
    from jobs.stages import flags

    monkeypatch.chdir(tmp_path)
    widgets = FakeWidgets({"model": str(tiny_model_dir), "group_size": "5",
                           "metrics": "ndcg@10,recall@10"})
    monkeypatch.setattr(notebook, "_dbutils", lambda: SimpleNamespace(widgets=widgets))
    runpy.run_path(str(NOTEBOOKS / "walkthrough.py"), run_name="__main__")
    out = capsys.readouterr().out

    # Every widget is a flag of one of the three jobs, except the work directory.
    names = {flag[2:].replace("-", "_")
             for stage in ("retrieve", "rerank", "evaluate") for flag in flags(stage)}
    assert set(widgets.declared) - names == {"workdir"}
    base = tmp_path / "out" / "walkthrough"
    candidates = spark.read.format("delta").load(str(base / "candidates"))
    reranked = spark.read.format("delta").load(str(base / "reranked"))
    assert candidates.count() == reranked.count() > 0
    assert set(reranked.toPandas().model) == {tiny_model_dir.name}
    means = spark.read.format("delta").load(str(base / "metrics")).where("qid = 'all'").toPandas()
    assert sorted(zip(means.name, means.metric)) == [
        ("first_stage", "Recall@10"), ("first_stage", "nDCG@10"), ("reranked", "Recall@10"),
        ("reranked", "nDCG@10")]
    assert "vs first_stage" in out and "figure saved to" in out
    assert (base / "metrics.png").read_bytes().startswith(b"\x89PNG")


def test_train_runs_sft_then_rl_and_shows_both_curves(spark, samples_table, tmp_path,
                                                      tmp_path_factory, monkeypatch, capsys):
    from grouprank.backends.group_encoder import is_group_encoder_dir
    from jobs import notebook
    from jobs.stages import flags

    monkeypatch.setenv("GROUPRANK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.chdir(tmp_path)
    widgets = FakeWidgets({"stage": "both", "samples": samples_table, "output": "model",
                           "batch_size": "4", "epochs": "1", "rollouts": "4"})
    monkeypatch.setattr(notebook, "_dbutils", lambda: SimpleNamespace(widgets=widgets))
    runpy.run_path(str(NOTEBOOKS / "train.py"), run_name="__main__")
    out = capsys.readouterr().out

    # Every widget is a flag of one of the two jobs, except the stage.
    names = {flag[2:].replace("-", "_")
             for stage in ("train-sft", "train-rl") for flag in flags(stage)}
    assert set(widgets.declared) - names == {"stage"}
    # 12 sft and 8 rl samples, 4 per step, one epoch.
    for stage, steps, value in (("sft", 3, "loss"), ("rl", 2, "reward")):
        checkpoint = tmp_path / "model" / stage
        assert is_group_encoder_dir(checkpoint)
        summary = json.loads((checkpoint / "training_summary.json").read_text())
        assert summary["stage"] == stage
        assert [point["step"] for point in summary["curve"]] == list(range(1, steps + 1))
        assert f"|step|{value}|" in out.replace(" ", "")
        assert (tmp_path / "model" / f"{stage}-curve.png").read_bytes().startswith(b"\x89PNG")
    assert summary["source"] == str((tmp_path / "model/sft").resolve()) and summary["config"]["rollouts"] == 4
