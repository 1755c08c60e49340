"""Each distinct text encoded once, the embedding store across runs (issue 15), and the encoder's
length-sorted batches and bf16 (issue 20). Real MiniLM, real Spark, real Delta."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyspark.sql import functions as F
from scipy.stats import kendalltau

from grouprank.backends.group_encoder import load_sentence_encoder
from grouprank.encoding import encode_texts, length_sorted_batches, padding_ratio
from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from schemas import CANDIDATES, SchemaError

DAY = "2026-11-27"
TOPICS = ["solar panels on roofs", "training a neural network", "baking sourdough bread",
          "the history of rome", "electric car batteries"]


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_encoder("minilm")


def _texts(n: int) -> list[str]:
    words = "energy model bread empire battery cell layer oven senate charge".split()
    return [f"{TOPICS[i % 5]}: " + " ".join(words[(i * 3 + k) % 10] for k in range(i % 17 + 1))
            for i in range(n)]


def test_length_sorted_batches_return_vectors_in_input_order(encoder):
    texts = _texts(23)
    batched = encode_texts(encoder, texts, "fp32", batch_size=4)
    # Each text alone (no padding, no sorting): the reference, computed without batching.
    alone = torch.cat([encode_texts(encoder, [t], "fp32") for t in texts])
    assert torch.allclose(batched, alone, atol=1e-5)
    lengths = [len(i) for i in encoder.token_ids(texts)]
    sorted_batches = length_sorted_batches(lengths, 4)
    input_batches = [list(range(i, min(i + 4, 23))) for i in range(0, 23, 4)]
    assert padding_ratio(lengths, sorted_batches) < padding_ratio(lengths, input_batches)


def test_bf16_rankings_agree_with_fp32(encoder):
    # Rankings of 40 documents by cosine to each of the 5 topics. Stated agreement: Kendall tau
    # >= 0.9 per query and at least 9 of the top 10 in common.
    docs = _texts(40)
    fp32 = encode_texts(encoder, docs + TOPICS, "fp32")
    bf16 = encode_texts(encoder, docs + TOPICS, "bf16")
    assert (fp32 - bf16).abs().max() < 0.02
    for q in range(5):
        a = (fp32[:40] @ fp32[40 + q]).numpy()
        b = (bf16[:40] @ bf16[40 + q]).numpy()
        assert kendalltau(a, b).statistic >= 0.9
        assert len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) >= 9


def _candidates(spark, path, edit: dict[str, str] | None = None):
    # 4 queries over the same 6 documents: 24 rows. d0 and d5 have the same text, so there are
    # 5 distinct document texts + 4 queries = 9 texts to embed.
    docs = {f"d{i}": f"{TOPICS[i % 5]} and more about {TOPICS[(i + 2) % 5]}" for i in range(6)}
    docs.update(edit or {})
    rows = [(f"q{q}", TOPICS[q], d, text, float(10 - i), i + 1)
            for q in range(4) for i, (d, text) in enumerate(sorted(docs.items()))]
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").mode("overwrite").save(path)
    return rows


def _ranked(spark, path):
    return (spark.read.format("delta").load(path).toPandas().sort_values(["qid", "docid"])
            .reset_index(drop=True))


def test_store_gives_the_same_results_and_encodes_only_what_changed(
    spark, tmp_path, monkeypatch, fault
):
    from delta.tables import DeltaMergeBuilder

    cand, store = str(tmp_path / "cand"), str(tmp_path / "store")
    _candidates(spark, cand)
    settings = RerankSettings(partitions=2, precision="fp32")
    plain = rerank_job.run(rerank_job.RerankJob(cand, str(tmp_path / "plain"), DAY), settings)
    assert plain["embeddings"]["texts"] == 9  # 5 distinct documents + 4 queries, not 24 + 24
    night1 = rerank_job.run(
        rerank_job.RerankJob(cand, str(tmp_path / "n1"), DAY, embedding_store=store), settings
    )
    assert night1["embeddings"] == {**night1["embeddings"], "texts": 9, "encoded": 9}
    a, b = _ranked(spark, str(tmp_path / "plain")), _ranked(spark, str(tmp_path / "n1"))
    assert a["rank"].tolist() == b["rank"].tolist()
    assert np.allclose(a.score, b.score, atol=1e-6)
    assert (a.settings_digest == b.settings_digest).all()
    # Night 2: one document's text edited. Only that text is encoded; the rest comes from the store.
    _candidates(spark, cand, edit={"d3": "a new text about electric car batteries"})
    night2 = rerank_job.run(
        rerank_job.RerankJob(cand, str(tmp_path / "n2"), DAY, embedding_store=store), settings
    )
    assert (night2["embeddings"]["encoded"], night2["embeddings"]["reused"]) == (1, 8)
    stored = spark.read.format("delta").load(store)
    assert stored.count() == 10
    assert stored.groupBy("text_digest").count().where("count > 1").count() == 0
    # A rerun adds nothing and commits nothing new to the store.
    version = _version(spark, store)
    job = rerank_job.RerankJob(cand, str(tmp_path / "n2"), DAY, embedding_store=store)
    assert rerank_job.run(job, settings)["embeddings"]["encoded"] == 0
    assert _version(spark, store) == version
    # A job that dies after encoding, at its MERGE commit, leaves the store as it was; its rerun
    # encodes the new text again and adds it once.
    _candidates(spark, cand, edit={"d3": "a new text about electric car batteries",
                                   "d0": "an edited document about sourdough"})

    def crash(self):
        raise RuntimeError("killed before commit")

    with monkeypatch.context() as patch:
        patch.setattr(DeltaMergeBuilder, "execute", crash)
        with pytest.raises(RuntimeError, match="killed before commit"):
            rerank_job.run(job, settings)
    assert _version(spark, store) == version
    assert spark.read.format("delta").load(store).count() == 10
    # A worker killed right after encoding (tests/faults/sitecustomize.py): the task's retry
    # encodes the new text again and the job adds it to the store once, not once per attempt.
    marker = tmp_path / "embedded.marker"
    fault(f"kill-embedded:{marker}")
    assert rerank_job.run(job, settings)["embeddings"]["encoded"] == 1
    fault("")
    assert marker.exists()  # the text was encoded, then its worker died
    stored = spark.read.format("delta").load(store)
    assert stored.count() == 11
    assert stored.groupBy("text_digest").count().where("count > 1").count() == 0
    assert _version(spark, store) == version + 1


def _version(spark, store: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{store}`").first()["version"]


def test_a_store_of_another_shape_fails_before_work(spark, tmp_path):
    cand, store = str(tmp_path / "cand"), str(tmp_path / "store")
    _candidates(spark, cand)
    spark.createDataFrame([("x", 1)], "text_digest string, vector int").write.format(
        "delta").save(store)
    with pytest.raises(SchemaError, match="missing column 'encoder_digest'.*'vector' has type int"):
        rerank_job.run(rerank_job.RerankJob(cand, str(tmp_path / "o"), DAY, embedding_store=store),
                       RerankSettings(partitions=2))


def test_the_store_needs_a_model_that_embeds_texts(spark, tmp_path, tiny_model_dir):
    cand = str(tmp_path / "cand")
    _candidates(spark, cand)
    job = rerank_job.RerankJob(cand, str(tmp_path / "o"), DAY, embedding_store=str(tmp_path / "s"))
    with pytest.raises(ValueError, match="--embedding-store needs a group-encoder model"):
        rerank_job.run(job, RerankSettings(model=str(tiny_model_dir)))


def test_the_jobs_feedback_vector_is_the_models(spark):
    """``attach_context`` (one grouped UDF over the whole list) gives ``feedback_vector`` (what
    the model computes in training) per query, whatever order the rows come in."""
    from grouprank.backends.group_encoder import feedback_vector
    from jobs.embeddings import attach_context

    rng = np.random.default_rng(3)
    rows, expected = [], {}
    for q in ("q1", "q2"):
        query = rng.normal(size=8).astype(np.float32)
        query /= np.linalg.norm(query)
        docs = rng.normal(size=(12, 8)).astype(np.float32)
        docs /= np.linalg.norm(docs, axis=1, keepdims=True)
        ranks = rng.permutation(12) + 1
        expected[q] = feedback_vector(query, docs, ranks, 3)
        rows += [(q, f"d{i}", int(ranks[i]), docs[i].tolist(), query.tolist()) for i in range(12)]
    frame = spark.createDataFrame(
        rows, "qid string, docid string, first_stage_rank int, vector array<float>, "
        "query_vector array<float>",
    )
    got = attach_context(frame.orderBy(F.rand(1)), 3, False).select(
        "qid", "context_vector").distinct().collect()
    assert sorted(r["qid"] for r in got) == ["q1", "q2"]
    for row in got:
        assert np.allclose(row["context_vector"], expected[row["qid"]], atol=1e-5)


def test_the_jobs_first_stage_agreement_is_the_models(spark):
    """``attach_context`` gives ``first_stage_agreement`` (numpy) per query, and null for a
    query too short to have one."""
    from grouprank.backends.group_encoder import first_stage_agreement
    from jobs.embeddings import attach_context

    rng = np.random.default_rng(4)
    rows, expected = [], {}
    for q, size in (("q1", 12), ("q2", 9), ("short", 2)):
        query = rng.normal(size=8).astype(np.float32)
        docs = rng.normal(size=(size, 8)).astype(np.float32)
        ranks = rng.permutation(size) + 1
        # The job's docids sort as the positions do, so cosine ties break the same way.
        expected[q] = first_stage_agreement(ranks, docs @ query)
        rows += [(q, f"d{i:02d}", int(ranks[i]), docs[i].tolist(), query.tolist())
                 for i in range(size)]
    frame = spark.createDataFrame(
        rows, "qid string, docid string, first_stage_rank int, vector array<float>, "
        "query_vector array<float>",
    )
    got = {r["qid"]: r["first_stage_agreement"] for r in
           attach_context(frame.orderBy(F.rand(2)), 0, True).select(
               "qid", "first_stage_agreement").distinct().collect()}
    assert got["short"] is None and np.isnan(expected["short"])
    assert got["q1"] == pytest.approx(expected["q1"], abs=1e-9)
    assert got["q2"] == pytest.approx(expected["q2"], abs=1e-9) and got["q1"] != got["q2"]


def _late_head(path) -> str:
    from grouprank.backends.group_encoder import GroupEncoderConfig, GroupHead, save_head

    torch.manual_seed(0)
    save_head(GroupHead(GroupEncoderConfig(hidden=32, heads=4, late_interaction=True)).eval(),
              path)
    return str(path)


def _pairs(spark, store: str) -> dict[tuple[str, str], float]:
    rows = spark.read.format("delta").load(store + "_maxsim").collect()
    return {(r.query_digest, r.text_digest): r.maxsim for r in rows}


def test_a_maxsim_head_gets_each_pair_from_the_pass_that_pools_its_text(spark, tmp_path):
    """A head that reads MaxSim: the embedding stage gives every (query, text) pair its MaxSim
    from the encoder pass that pools the text (no second pass in the scorer), the MaxSim table
    beside the store keeps the pairs, and a later night computes only the pairs it lacks: a new
    text's, and an old text's with a new query (that text encoded again, for that query only)."""
    from grouprank.encoding import loaded_encoder, text_digest
    from grouprank.late_interaction import maxsim_scores
    from grouprank.models import model_ref
    from jobs.embeddings import distinct_texts, refresh_store
    from jobs.stages.rerank import _scoreable, group_candidates, prepare_candidates

    cand, store = str(tmp_path / "cand"), str(tmp_path / "store")
    rows = _candidates(spark, cand)
    settings = RerankSettings(model=_late_head(tmp_path / "late"), partitions=2,
                              precision="fp32")
    ref = model_ref(settings.model)
    encoder = loaded_encoder("minilm")

    def night() -> tuple[object, object]:
        scoreable = _scoreable(prepare_candidates(spark.read.format("delta").load(cand)))
        texts = distinct_texts(scoreable, late=True)
        vectors, report = refresh_store(spark, store, texts, settings, ref, 2)
        groups = group_candidates(prepare_candidates(spark.read.format("delta").load(cand)),
                                  settings, ref, 2, vectors).toPandas()
        return report, groups

    def check(groups, rows) -> None:
        texts = {(q, d): t for q, _, d, t, *_ in rows}
        queries = {q: text for q, text, *_ in rows}
        for group in groups.itertuples():
            assert all(v is not None for v in group.lates)  # the scorer computes none itself
            want = maxsim_scores(encoder, queries[group.qid],
                                 [texts[group.qid, d] for d in group.docids], "fp32")
            assert list(group.lates) == pytest.approx(want, abs=1e-4)

    # Night 1 through the job (the head's scores with the MaxSims given: test_group_encoder).
    stored = rerank_job.run(
        rerank_job.RerankJob(cand, str(tmp_path / "n1"), DAY, embedding_store=store), settings)
    assert stored["embeddings"]["encoded"] == 9 and stored["status_counts"] == {"ok": 24}
    assert len(_pairs(spark, store)) == 20  # 4 queries x 5 distinct document texts
    # Night 2: d3 edited, and a fifth query over the same documents.
    rows = _candidates(spark, cand, edit={"d3": "a new text about electric car batteries"})
    extra = [("q4", "ovens for bread", d, t, 1.0, 1) for d, t in
             sorted({r[2]: r[3] for r in rows if r[0] == "q0" and r[2] != "d3"}.items())]
    spark.createDataFrame(extra, CANDIDATES).write.format("delta").mode("append").save(cand)
    before = _pairs(spark, store)
    report, groups = night()
    assert (report.texts, report.encoded) == (10, 2)  # the new text and the new query
    after = _pairs(spark, store)
    new = set(after) - set(before)
    # The new text with each of 4 queries, and q4 with its 5 documents' 4 distinct old texts
    # (d0 and d5 share one) and nothing else.
    assert len(new) == 4 + 4 and after.items() >= before.items()
    assert sum(1 for q, _ in new if q == text_digest("ovens for bread")) == 4
    check(groups, rows + extra)
