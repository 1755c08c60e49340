"""The synthesis job in real Spark with real Delta, the MiniLM encoder and first-stage teachers.

No qrels table exists anywhere in these tests: synthesis must not need one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from pyspark.testing import assertDataFrameEqual

from grouprank.parsing import parse_answer
from grouprank.synthesis import SynthesisSettings, parse_group_sizes
from jobs.stages import synthesize as synth_job
from jobs.stages import main as stage_main
from schemas import CANDIDATES
from schemas.samples import SAMPLES

TOPICS = ["solar panels and electricity", "baking sourdough bread", "training for a marathon"]


def _rows():
    rows = []
    for q, (qid, n) in enumerate([("s1", 60), ("s2", 20), ("s3", 3)]):
        topic = TOPICS[q]
        for i in range(n):
            text = f"notes on {TOPICS[(q + i) % 3]} number {i}" if i % 4 else f"all about {topic}"
            rows.append((qid, f"how does {topic} work", f"{qid}-{i}", text, 100.0 - i, i + 1))
    return rows


@pytest.fixture(scope="module")
def run_synthesis(spark, tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    cand = str(base / "candidates")
    spark.createDataFrame(_rows(), CANDIDATES).write.format("delta").save(cand)
    out = str(base / "samples")
    settings = SynthesisSettings(pool_size=30, pool_top=5, pool_depth=50, group_sizes="5,10",
                                 samples_per_query=3, rl_fraction=0.5, seed=3)
    job = synth_job.SynthesizeJob(
        candidates=cand, output=out, run_date="2026-11-27", chat_model=str(tiny_model_dir),
        partitions=2,
    )
    summary = synth_job.run(job, settings)
    return job, settings, summary, out


def test_samples_table(spark, run_synthesis):
    job, settings, summary, out = run_synthesis
    samples = spark.read.format("delta").load(out)
    assert samples.columns == SAMPLES.fieldNames()
    rows = samples.toPandas()
    # s3 has only 3 candidates: smaller than every size, so it yields no sample (and is counted).
    assert set(rows.qid) == {"s1", "s2"} and summary["pools"] == 2
    assert len(rows) == 6 and rows.sample_id.is_unique
    assert set(rows.group_size) <= set(parse_group_sizes(settings.group_sizes))
    assert (rows.groupby("qid").split.nunique() == 1).all()
    assert (rows.run_date == dt.date(2026, 11, 27)).all()
    for row in rows.itertuples():
        n = row.group_size
        assert len(row.docids) == len(row.texts) == len(row.target_scores) == n
        assert sorted(row.target_ranks) == list(range(1, n + 1))
        assert parse_answer(row.completion, n).scores == [float(round(s)) for s in row.target_scores]
        assert row.query in row.prompt and f"[{n}]. " in row.prompt
        assert row.teacher_unscored == 0


def test_teacher_ranks_match_an_independent_computation(spark, run_synthesis):
    from sentence_transformers import SentenceTransformer

    from grouprank.retrieval import encoder_dir

    _, _, _, out = run_synthesis
    rows = spark.read.format("delta").load(out).toPandas()
    # sentence-transformers itself, not the job's encoder (grouprank.lean_encoder's): independent.
    encoder = SentenceTransformer(str(encoder_dir()), device="cpu")
    row = rows[rows.qid == "s2"].iloc[0]  # s2 has 20 candidates: its pool is all of them
    texts = {f"s2-{i}": t for (q, _, d, t, _, i) in [(r[0], 0, r[2], r[3], 0, int(r[2].split("-")[1])) for r in _rows()] if q == "s2"}
    pool = [f"s2-{i}" for i in range(20)]
    q = encoder.encode([row.query], normalize_embeddings=True)[0]
    cos = encoder.encode([texts[d] for d in pool], normalize_embeddings=True) @ q
    order = sorted(range(20), key=lambda i: (-max(0.0, cos[i]), i))
    expected_rank = {pool[i]: r + 1 for r, i in enumerate(order)}
    assert list(row.pointwise_ranks) == [expected_rank[d] for d in row.docids]
    # first-stage teacher: the rank in the pool is the first-stage rank
    assert list(row.listwise_ranks) == [int(d.split("-")[1]) + 1 for d in row.docids]
    # the targets follow the fused ranking
    fused = -0.5 * np.log(row.pointwise_ranks) - 0.5 * np.log(row.listwise_ranks)
    best = int(np.argmax(fused))
    assert row.target_ranks[best] == 1


def test_rerun_is_idempotent(spark, run_synthesis):
    job, settings, _, out = run_synthesis
    before = spark.read.format("delta").load(out).collect()
    synth_job.run(job, settings)
    after = spark.read.format("delta").load(out)
    assert after.count() == len(before)
    assertDataFrameEqual(after, spark.createDataFrame(before, after.schema))


def test_bad_teacher_fails_before_work(tmp_path, capsys):
    code = stage_main("synthesize", ["--candidates", str(tmp_path), "--output", str(tmp_path / "o"),
                           "--run-date", "2026-11-27", "--pointwise-teacher", "gpt"])
    assert code == 2 and "teacher 'gpt'" in capsys.readouterr().err


def test_embedding_store_gives_the_same_samples_and_encodes_each_text_once(
    spark, run_synthesis, tmp_path
):
    """With --embedding-store the encoder teacher reads its vectors from rerank's store: the same
    samples as without it (in fp32: bf16 vectors depend on their batch), and a second night
    encodes nothing."""
    job, settings, _, _ = run_synthesis
    store, out = str(tmp_path / "store"), str(tmp_path / "plain")
    synth_job.run(dataclasses.replace(job, output=out, precision="fp32"), settings)
    stored = dataclasses.replace(job, output=str(tmp_path / "samples"), embedding_store=store,
                                 precision="fp32")
    first = synth_job.run(stored, settings)
    # Every text down to pool_depth (50) of each query, and the 3 queries, once each.
    kept = [r for r in _rows() if int(r[2].split("-")[1]) < settings.pool_depth]
    texts = {r[3] for r in kept} | {r[1] for r in kept}
    assert first["embeddings"] == {"texts": len(texts), "encoded": len(texts), "reused": 0,
                                   "store": store, "precision": "fp32"}
    columns = ["sample_id", "docids", "pointwise_ranks", "listwise_ranks", "target_ranks"]
    plain = spark.read.format("delta").load(out).toPandas().sort_values("sample_id")
    with_store = spark.read.format("delta").load(stored.output).toPandas().sort_values("sample_id")
    for column in columns:
        assert [np.asarray(v).tolist() for v in plain[column]] == [
            np.asarray(v).tolist() for v in with_store[column]], column
    assert np.allclose(np.concatenate(plain.target_scores.to_list()),
                       np.concatenate(with_store.target_scores.to_list()), atol=1e-5)
    again = synth_job.run(stored, settings)
    assert (again["embeddings"]["encoded"], again["embeddings"]["reused"]) == (0, len(texts))


def test_embedding_store_needs_an_encoder_teacher(tmp_path, capsys):
    code = stage_main("synthesize", [
        "--candidates", str(tmp_path), "--output", str(tmp_path / "o"), "--run-date",
        "2026-11-27", "--pointwise-teacher", "first-stage",
        "--embedding-store", str(tmp_path / "s"),
    ])
    assert code == 2 and "--embedding-store needs an encoder teacher" in capsys.readouterr().err
