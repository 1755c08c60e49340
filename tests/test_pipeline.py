"""The nightly pipeline command: stages in order, idempotent per run date, summary stored."""

from __future__ import annotations

import pytest

from jobs.stages import pipeline

from jobs.stages import main as stage_main
from schemas import CANDIDATES


@pytest.fixture
def config(spark, tiny_model_dir, tmp_path):
    rows = [("q1", "query one", f"d{i}", f"text {i}", float(10 - i), i + 1) for i in range(6)]
    cand = str(tmp_path / "candidates")
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").save(cand)
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d3 1\nq1 0 d5 2\n")
    path = tmp_path / "nightly.yaml"
    path.write_text(
        f"""
run_date: 2026-11-27
summary: {tmp_path / "runs"}
rerank:
  candidates: {cand}
  output: {tmp_path / "reranked"}
  model: {tiny_model_dir}
  group_size: 3
evaluate:
  qrels: {qrels}
  output: {tmp_path / "metrics"}
  name: nightly
  metrics: ndcg@10
"""
    )
    return path, tmp_path


def test_pipeline_runs_stages_and_reruns_without_duplicates(spark, config):
    path, base = config
    first = pipeline.run_config(str(path))
    assert [r["stage"] for r in first] == ["rerank", "evaluate"]
    assert {r["status"] for r in first} == {"ok"}
    pipeline.run_config(str(path))  # the same night again
    reranked = spark.read.format("delta").load(str(base / "reranked"))
    assert reranked.count() == 6
    metrics = spark.read.format("delta").load(str(base / "metrics"))
    assert metrics.where("qid = 'all'").count() == 1
    runs = spark.read.format("delta").load(str(base / "runs")).toPandas()
    assert sorted(runs.stage) == ["evaluate", "rerank"] and set(runs.status) == {"ok"}
    # Another night lands beside it.
    pipeline.run_config(str(path), run_date="2026-11-28")
    assert spark.read.format("delta").load(str(base / "reranked")).count() == 12


def test_bad_config_fails_before_any_stage(config, capsys):
    path, base = config
    path.write_text(path.read_text().replace("group_size: 3", "group_sise: 3"))
    assert stage_main("pipeline", ["--config", str(path)]) == 2
    assert "unknown keys ['group_sise']" in capsys.readouterr().err
    assert not (base / "reranked").exists()
