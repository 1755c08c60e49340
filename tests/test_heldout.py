"""The leave-one-collection-out protocol (bench/heldout_eval.py) and the rank and feedback
features it trains: no held-out query or document in its own training split, and a head
trained on a tiny table scores through the real reranking job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from schemas import CANDIDATES

# The benchmarks are scripts, not a package: import them as `python bench/X.py` would.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import heldout_eval as heldout  # noqa: E402

TOPICS = {
    "vaswani": ["radio waves in the ionosphere", "magnetic field of electrons"],
    "cacm": ["time sharing operating systems", "sorting algorithms on tapes"],
    "scifact": ["vitamin d lowers fracture risk", "smoking causes lung cancer"],
    "dl19": ["how long to boil an egg", "what is the capital of peru"],
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Tiny prepared lists for every collection and first stage, texts unique per collection."""
    folder = tmp_path_factory.mktemp("heldout")
    for name, runs in heldout.RUNS.items():
        for k, run in enumerate(runs):
            rows = []
            for q, topic in enumerate(TOPICS[name]):
                for d in range(12):
                    text = f"{name} document {d}: {topic} " + "detail " * (d % 4)
                    rows.append((f"{q}", topic, f"{name}-d{q}-{d}", text, float(12 - d + k), d + 1))
            pd.DataFrame(rows, columns=["qid", "query", "docid", "text", "score", "rank"]).to_parquet(
                folder / f"{name}-{run}.parquet")
        pd.DataFrame({"qid": ["0", "1"], "docid": [f"{name}-d0-3", f"{name}-d1-0"],
                      "relevance": [1, 1]}).to_parquet(folder / f"{name}-qrels.parquet")
    return folder


@pytest.fixture(scope="module")
def lists(work):
    return heldout.load_lists(work)


def test_the_splitter_keeps_every_held_out_query_and_document_out(lists):
    settings = heldout.syn.SynthesisSettings(pool_size=8, pool_top=2, samples_per_query=2)
    for held in heldout.RUNS:
        pairs = heldout.training_split(held)
        assert pairs and all(name != held for name, _ in pairs)
        assert {name for name, _ in pairs} == set(heldout.RUNS) - {held}
        held_texts = {t for run in heldout.RUNS[held] for t in lists[held, run].frame["text"]}
        rows = [r for pair in pairs for r in lists[pair].samples("fusion3", settings)]
        assert rows
        for row in rows:
            assert not row["qid"].startswith(f"{held}/")
            assert not held_texts & set(row["texts"]) and not held_texts & set(row["feedback_texts"])


def test_a_feedback_head_trained_on_a_tiny_table_scores_through_the_job(spark, lists, work, tmp_path):
    config = heldout.Config("tiny", teacher="fusion3", feedback_top=3, epochs=1)
    head, count, _ = heldout.train_head(lists, heldout.training_split("dl19"), config,
                                        tmp_path / "head")
    saved = json.loads((tmp_path / "head" / "grouprank.json").read_text())
    assert count > 0 and saved["rank_features"] and saved["context_top"] == 3

    frame = pd.read_parquet(work / "dl19-bm25.parquet")
    candidates = spark.createDataFrame(frame[[f.name for f in CANDIDATES.fields]], CANDIDATES)
    candidates.write.format("delta").save(str(tmp_path / "candidates"))
    job = rerank_job.RerankJob(str(tmp_path / "candidates"), str(tmp_path / "out"), "2026-12-01")
    rerank_job.run(job, RerankSettings(model=str(tmp_path / "head")))
    out = spark.read.format("delta").load(str(tmp_path / "out")).toPandas()
    assert len(out) == len(frame) and set(out.status) == {"ok"}

    # A query's 12 candidates make one group, so the job's scores are the bench's in-process
    # scores: the same ranks and the same feedback vector, computed over the whole list.
    item = lists["dl19", "bm25"]
    expected = dict(zip(item.frame["docid"], item.scores(head, 1.0) * 10))
    for docid, score in zip(out["docid"], out["model_score"]):
        assert score == pytest.approx(expected[docid], abs=1e-3)


def test_the_shipped_default_prefers_a_relevant_document_over_a_lexical_decoy():
    """The decoy repeats the query's words (train, system, immune, vaccines, how do) and leads
    the first stage by far; the relevant document shares almost none of them."""
    from grouprank.backends import GroupInput
    from grouprank.models import load_scorer

    texts = (
        "Train the system: how do you stay immune to office politics? Our vaccines against "
        "burnout are weekly coffee chats.",
        "A bakery on the corner sells sourdough bread and croissants every morning.",
        "Immunization shows the body's defences a harmless piece of a pathogen, so white blood "
        "cells learn to recognise it and respond quickly to a later infection.",
        "Tide tables list the times of high and low water for each harbour.",
    )
    group = GroupInput("how do vaccines train the immune system", texts,
                       first_stage=(14.0, 3.0, 6.5, 2.0), first_stage_rank=(1, 3, 2, 4))
    (result,) = load_scorer(RerankSettings()).score_groups([group])
    assert result.statuses == ["ok"] * 4
    relevant, decoy = result.scores[2], result.scores[0]
    assert relevant > decoy, result.scores


def test_the_fusion_rule_is_chosen_without_the_held_out_judgments(lists, work, tmp_path):
    import shutil

    config = heldout.Config("tiny", teacher="fusion3", feedback_top=3, epochs=1)
    checkpoints = tmp_path / "checkpoints"
    for held in heldout.RUNS:
        heldout.train_head(lists, heldout.training_split(held), config, checkpoints / held / "tiny")
    before = heldout.fusion_table(work, "tiny", checkpoints)
    # Other judgments for DL19 (every document of query 0 relevant): its own figures move, its
    # choices do not (they come from the other collections' lists).
    other = tmp_path / "work"
    shutil.copytree(work, other)
    frame = pd.read_parquet(work / "dl19-bm25.parquet")
    pd.DataFrame({"qid": "0", "docid": frame[frame.qid == "0"].docid, "relevance": 1}).to_parquet(
        other / "dl19-qrels.parquet")
    after = heldout.fusion_table(other, "tiny", checkpoints)
    assert after["chosen"]["dl19"] == before["chosen"]["dl19"]
    assert after["lists"]["dl19/bm25"]["fixed"] != before["lists"]["dl19/bm25"]["fixed"]
    row = before["lists"]["dl19/splade"]
    assert row["rule_weight"] == pytest.approx(heldout.agreement_weight(
        row["agreement"], before["chosen"]["dl19"]["head_reliability"]))
    # The chosen rule (of either form) is one the step tried, and its weight is the rule's.
    chosen = before["chosen"]["dl19"]
    assert chosen["labels"]["rule"] in (chosen["labels"]["reliability"],
                                        chosen["labels"]["logistic"])
    rule = heldout.fusion_rules()[chosen["labels"]["rule"]]
    assert rule.describe() == chosen["rule"]
    assert row["chosen_weight"] == pytest.approx(rule.weight(row["agreement"]))
    assert row["held_out_chosen"] == row["rule"][chosen["labels"]["rule"]]
    assert heldout.FusionRule(**{k.removeprefix("fusion_"): v for k, v in
                                 heldout.rule_config(chosen["rule"]).items()}) == rule
    # --repeats: the head's scores averaged over reshuffled groupings, then fused.
    item, head = lists["dl19", "bm25"], heldout.load_head(checkpoints / "dl19" / "tiny")
    once = [item.scores(head, 1.0, seed) for seed in (4, 5)]
    assert np.abs(once[0] - once[1]).max() > 1e-9  # the groupings differ (a tiny head's
    prior = heldout.first_stage_prior(item.frame).values  # scores barely move with them)
    assert np.allclose(item.scores(head, 0.7, 4, repeats=2),
                       0.7 * (once[0] + once[1]) / 2 + 0.3 * prior, rtol=0, atol=1e-12)
