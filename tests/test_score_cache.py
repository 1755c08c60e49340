"""The group score cache for LLM backbones (issue 15, item 3): same results with and without it,
only changed groups reach the model, and the cache stays consistent through reruns, a crash at
its commit and a wrong table. A tiny random Llama, real Spark, real Delta."""

from __future__ import annotations

import numpy as np
import pytest

from grouprank.settings import RerankSettings
from jobs.configs import RerankJob
from jobs.stages import rerank as rerank_job
from schemas import CANDIDATES, SchemaError

DAY = "2026-11-27"


def _candidates(spark, path: str, edit: dict[tuple[str, str], str] | None = None) -> None:
    # 3 queries x 6 documents, groups of 3: 6 groups per repeat.
    rows = []
    for q in range(3):
        for i in range(6):
            text = (edit or {}).get((f"q{q}", f"d{i}"), f"document {i} about topic {q}")
            rows.append((f"q{q}", f"query about topic {q}", f"d{i}", text, float(10 - i), i + 1))
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").mode("overwrite").save(path)


def _ranked(spark, path: str):
    return (spark.read.format("delta").load(path).toPandas().sort_values(["qid", "docid"])
            .reset_index(drop=True))


def _version(spark, table: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{table}`").first()["version"]


def test_cache_gives_the_same_results_and_scores_only_changed_groups(
    spark, tmp_path, tiny_model_dir, monkeypatch
):
    from delta.tables import DeltaMergeBuilder

    cand, cache = str(tmp_path / "cand"), str(tmp_path / "cache")
    _candidates(spark, cand)
    settings = RerankSettings(model=str(tiny_model_dir), group_size=3, partitions=2)
    plain = rerank_job.run(RerankJob(cand, str(tmp_path / "plain"), DAY), settings)
    assert plain["score_cache"] == {}
    night1 = rerank_job.run(RerankJob(cand, str(tmp_path / "n1"), DAY, score_cache=cache),
                            settings)
    assert {k: night1["score_cache"][k] for k in ("groups", "scored", "reused")} == {
        "groups": 6, "scored": 6, "reused": 0}
    a, b = _ranked(spark, str(tmp_path / "plain")), _ranked(spark, str(tmp_path / "n1"))
    assert a["rank"].tolist() == b["rank"].tolist()
    assert np.allclose(a.model_score, b.model_score, atol=1e-6)
    assert (a.settings_digest.to_numpy() == b.settings_digest.to_numpy()).all()
    assert spark.read.format("delta").load(cache).count() == 6

    # The same night again: every group from the cache, the same table, nothing committed.
    version = _version(spark, cache)
    again = rerank_job.run(RerankJob(cand, str(tmp_path / "n1b"), DAY, score_cache=cache),
                           settings)
    assert (again["score_cache"]["scored"], again["score_cache"]["reused"]) == (0, 6)
    assert again["scoring"]["prompt_tokens"] == 0 and again["scoring"]["python_workers"] == 0
    c = _ranked(spark, str(tmp_path / "n1b"))
    assert c["rank"].tolist() == b["rank"].tolist()
    assert np.allclose(c.model_score, b.model_score, atol=1e-6)
    assert _version(spark, cache) == version

    # Another fusion weight changes no model call: still every group from the cache.
    fused = RerankSettings(model=str(tiny_model_dir), group_size=3, partitions=2,
                           fusion_weight=0.3)
    other = rerank_job.run(RerankJob(cand, str(tmp_path / "w"), DAY, score_cache=cache), fused)
    assert other["score_cache"]["scored"] == 0

    # Night 2: one document of q1 edited. Only its group goes to the model.
    _candidates(spark, cand, edit={("q1", "d2"): "an edited document about topic 1"})
    night2 = rerank_job.run(RerankJob(cand, str(tmp_path / "n2"), DAY, score_cache=cache),
                            settings)
    assert (night2["score_cache"]["scored"], night2["score_cache"]["reused"]) == (1, 5)
    fresh = rerank_job.run(RerankJob(cand, str(tmp_path / "n2plain"), DAY), settings)
    assert fresh["score_cache"] == {}
    d, e = _ranked(spark, str(tmp_path / "n2")), _ranked(spark, str(tmp_path / "n2plain"))
    assert d["rank"].tolist() == e["rank"].tolist()
    assert np.allclose(d.model_score, e.model_score, atol=1e-6)
    stored = spark.read.format("delta").load(cache)
    assert stored.count() == 7
    assert stored.groupBy("scoring_digest", "query_digest", "group_digest").count().where(
        "count > 1").count() == 0

    # A job that dies at the cache's MERGE commit leaves it as it was; the rerun adds once.
    _candidates(spark, cand, edit={("q1", "d2"): "an edited document about topic 1",
                                   ("q2", "d0"): "another edited document"})
    version = _version(spark, cache)

    def crash(self):
        raise RuntimeError("killed before commit")

    job = RerankJob(cand, str(tmp_path / "n3"), DAY, score_cache=cache)
    with monkeypatch.context() as patch:
        patch.setattr(DeltaMergeBuilder, "execute", crash)
        with pytest.raises(RuntimeError, match="killed before commit"):
            rerank_job.run(job, settings)
    assert _version(spark, cache) == version
    assert rerank_job.run(job, settings)["score_cache"]["scored"] == 1
    assert spark.read.format("delta").load(cache).count() == 8


def test_a_cache_of_another_shape_fails_before_work(spark, tmp_path, tiny_model_dir):
    cand, cache = str(tmp_path / "cand"), str(tmp_path / "cache")
    _candidates(spark, cand)
    spark.createDataFrame([("x", 1)], "query_digest string, scores int").write.format(
        "delta").save(cache)
    with pytest.raises(SchemaError, match="missing column 'scoring_digest'.*'scores' has type int"):
        rerank_job.run(RerankJob(cand, str(tmp_path / "o"), DAY, score_cache=cache),
                       RerankSettings(model=str(tiny_model_dir), group_size=3))
    assert not (tmp_path / "o").exists()


def test_the_cache_is_for_llm_models(spark, tmp_path):
    cand = str(tmp_path / "cand")
    job = RerankJob(cand, str(tmp_path / "o"), DAY, score_cache=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="--score-cache is for LLM models"):
        rerank_job.check(job, RerankSettings())
