"""Rankings under partial failure, provenance of the reranked table, and input checks that
guard a night's results (issue 14). Real Spark and Delta; expected values written out by hand."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
import torch

from grouprank.backends.base import GroupResult
from grouprank.backends.group_encoder import GroupEncoderConfig, GroupHead, save_head
from grouprank.models import CAUSAL_LM, ModelRef, model_ref
from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from jobs.stages.rerank import check_candidates, fuse_and_rank, prepare_candidates
from schemas import CANDIDATES, GROUP_SCORES, SchemaError

DAY = dt.date(2026, 11, 27)


def _scored_rows(scores: dict[str, tuple[float | None, str]]) -> list[tuple]:
    return [("q", 0, 0, d, s, st, 0, 0, 1, 1, 1) for d, (s, st) in scores.items()]


def test_unscored_documents_rank_after_every_scored_one(spark):
    # First stage: d0 > d1 > d2 > d3. The model failed on d0 and d3 (a garbage group).
    rows = [("q", "query", f"d{i}", f"text {i}", float(10 - i), i + 1) for i in range(4)]
    prepared = prepare_candidates(spark.createDataFrame(rows, CANDIDATES))
    scored = spark.createDataFrame(
        _scored_rows({"d0": (None, "unparsed"), "d1": (3.0, "ok"), "d2": (5.0, "ok"),
                      "d3": (None, "unparsed")}),
        GROUP_SCORES,
    )
    ref = ModelRef("m", CAUSAL_LM, "m", "0123", 0.6)
    out = fuse_and_rank(prepared, scored, RerankSettings(), ref, DAY).toPandas()
    out = out.sort_values("rank").set_index("docid")
    # Scored first by fused score (the first stage by its rank prior, 1 - ln(rank)/ln(4)):
    # d2 = .6*.5 + .4*(1 - ln 3/ln 4) = .383 > d1 = .6*.3 + .4*(1 - ln 2/ln 4) = .380; then the
    # unscored in first-stage order (d0 before d3), though d0 was the first-stage top.
    assert out.index.tolist() == ["d2", "d1", "d0", "d3"]
    d1 = 0.6 * 0.3 + 0.4 * (1 - math.log(2) / math.log(4))
    d2 = 0.6 * 0.5 + 0.4 * (1 - math.log(3) / math.log(4))
    assert out.loc["d1", "score"] == pytest.approx(d1)
    assert out.loc["d2", "score"] == pytest.approx(d2)
    # An unscored document's score never exceeds the lowest scored one's.
    assert out.loc["d0", "score"] <= min(d1, d2) and out.loc["d3", "score"] <= min(d1, d2)
    assert out.loc["d0", "model_score"] != out.loc["d0", "model_score"]  # NaN: no model score
    assert list(out.loc[["d0", "d3"], "status"]) == ["unparsed", "unparsed"]


def test_the_jobs_rank_prior_is_the_librarys_ties_and_single_documents_included(spark):
    """The fusion's first-stage side exists twice, in SQL for the job and in numpy for the
    trainer and the benchmarks (``grouprank.fusion.rank_prior``): the two must agree."""
    import numpy as np

    from grouprank.fusion import rank_prior

    scores = {"ties": [3.0, 3.0, 2.0, 2.0, 2.0, 1.0, -5.0], "one": [0.7],
              "spread": [120.5, 0.001, 1e-9, 33.0, 7.25], "all-equal": [4.0, 4.0, 4.0]}
    rows = [(qid, f"{qid}-{k}", score) for qid, values in scores.items()
            for k, score in enumerate(values)]
    table = spark.createDataFrame(rows, "qid string, docid string, score double")
    got = table.withColumn("prior", rerank_job.rank_prior_column()).toPandas()
    for qid, values in scores.items():
        part = got[got.qid == qid].sort_values("docid")
        ranks = pd.Series(values).rank(ascending=False, method="min").to_numpy()
        assert part.prior.to_numpy() == pytest.approx(rank_prior(ranks, len(values)), abs=1e-12)
    ties = got[got.qid == "ties"].sort_values("docid").prior.tolist()
    assert ties[0] == ties[1] == 1.0 and ties[2] == ties[3] == ties[4] < 1.0 and ties[6] == 0.0
    assert got[got.qid == "one"].prior.tolist() == [1.0]
    assert np.allclose(got[got.qid == "all-equal"].prior, 1.0)


def test_a_document_without_a_score_row_fails_instead_of_a_null_status(spark):
    rows = [("q", "query", f"d{i}", "text", float(i), i + 1) for i in range(2)]
    prepared = prepare_candidates(spark.createDataFrame(rows, CANDIDATES))
    scored = spark.createDataFrame(_scored_rows({"d0": (4.0, "ok")}), GROUP_SCORES)
    ref = ModelRef("m", CAUSAL_LM, "m", "0123", 0.6)
    with pytest.raises(Exception, match="no score row came back.*d1"):
        fuse_and_rank(prepared, scored, RerankSettings(), ref, DAY).collect()


def test_a_short_result_fails_loudly_naming_the_group():
    from udfs.scoring import _score_chunk

    class _ShortScorer:  # a broken backend that drops a document's score
        name = "short"

        def score_groups(self, groups):
            return [GroupResult([1.0] * (len(g.texts) - 1), ["ok"] * (len(g.texts) - 1), 0, 0)
                    for g in groups]

    chunk = pd.DataFrame({"qid": ["q7"], "repeat": [0], "group": [2], "query": ["x"],
                          "docids": [["a", "b"]], "texts": [["ta", "tb"]], "scores": [[1.0, 0.5]]})
    with pytest.raises(RuntimeError, match=r"1 scores .* 2 documents of \(qid 'q7', repeat 0, group 2\)"):
        _score_chunk(_ShortScorer(), chunk)


def _head_dir(path, seed: int):
    torch.manual_seed(seed)
    save_head(GroupHead(GroupEncoderConfig(hidden=16, heads=2, layers=1)), path)
    return str(path)


def test_two_checkpoints_with_one_name_get_different_digests(tmp_path):
    one = _head_dir(tmp_path / "night1" / "sft", 1)
    two = _head_dir(tmp_path / "night2" / "sft", 2)
    a, b = model_ref(one), model_ref(two)
    assert a.name == b.name == "sft"
    assert a.digest != b.digest
    assert a.encoder.digest == b.encoder.digest  # same MiniLM under both heads
    assert model_ref(one).digest == a.digest  # stable
    s = RerankSettings(model=one)
    assert s.digest("t", a.digest) != s.digest("t", b.digest)


def test_two_query_texts_for_one_qid_fail_with_examples(spark):
    rows = [("q1", "cheap flights", "d1", "t", 1.0, 1), ("q1", "cheap flight", "d2", "t", 0.5, 2),
            ("q2", "ok", "d1", "t", 1.0, 1), ("q2", "  ", "d2", "t", 0.5, 2)]
    with pytest.raises(SchemaError, match=r"more than one query text.*'q1'.*cheap flight"):
        check_candidates(spark.createDataFrame(rows, CANDIDATES))
    # A blank text beside the real one is not a second text (it is scored as empty_query).
    check_candidates(spark.createDataFrame(rows[2:], CANDIDATES))


def test_an_empty_table_does_not_wipe_a_written_night(spark, tmp_path, tiny_model_dir):
    cand, empty = str(tmp_path / "cand"), str(tmp_path / "empty")
    rows = [("q", "query", f"d{i}", f"text {i}", float(i), i + 1) for i in range(3)]
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").save(cand)
    spark.createDataFrame([], CANDIDATES).write.format("delta").save(empty)
    out = str(tmp_path / "out")
    # Any model does: the guard is on the table. The tiny one spares the workers MiniLM's load.
    first_stage = RerankSettings(model=str(tiny_model_dir), fusion_weight=0.0)
    rerank_job.run(rerank_job.RerankJob(cand, out, "2026-11-27"), first_stage)
    with pytest.raises(ValueError, match="already holds 3 rows.*--allow-empty"):
        rerank_job.run(rerank_job.RerankJob(empty, out, "2026-11-27"), first_stage)
    assert spark.read.format("delta").load(out).count() == 3
    # Another date, or an explicit --allow-empty, may be empty.
    rerank_job.run(rerank_job.RerankJob(empty, out, "2026-11-28"), first_stage)
    rerank_job.run(rerank_job.RerankJob(empty, out, "2026-11-27", allow_empty=True), first_stage)
    assert spark.read.format("delta").load(out).count() == 0
