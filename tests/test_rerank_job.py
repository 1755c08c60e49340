"""The reranking job in a real local Spark with real Delta tables and a tiny random Llama."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from grouprank.models import fusion_weight_for
from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from jobs.stages import main as stage_main
from jobs.configs import RerankJob
from jobs.stages.rerank import UnparsedOutputError
from jobs.stages.rerank import build_groups, check_candidates, rerank
from schemas import CANDIDATES, RERANKED, SchemaError

DAY = dt.date(2026, 11, 27)


def candidates_frame(spark, rows):
    return spark.createDataFrame(rows, CANDIDATES)


def make_rows(qid: str, n: int, query: str = "what is bm25") -> list[tuple]:
    return [
        (qid, query, f"{qid}-d{i:03d}", f"document {i} about topic {i % 7}", float(n - i) * 1.5, i + 1)
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def settings(tiny_model_dir):
    return RerankSettings(model=str(tiny_model_dir), partitions=2)


# ---- grouping ----------------------------------------------------------------------------


def _groups(spark, settings, rows):
    groups = build_groups(candidates_frame(spark, rows), settings).toPandas()
    return groups.sort_values(["qid", "repeat", "group"]).reset_index(drop=True)


def test_groups_are_balanced_disjoint_complete(spark, settings):
    rows = make_rows("a", 45) + make_rows("b", 1) + make_rows("c", 20) + make_rows("d", 21)
    s = RerankSettings(model=settings.model, repeats=2, group_size=20)
    groups = _groups(spark, s, rows)
    sizes = groups.assign(n=groups.docids.map(len)).groupby(["qid", "repeat"]).n.apply(sorted)
    assert sizes[("a", 0)] == [15, 15, 15] and sizes[("a", 1)] == [15, 15, 15]
    assert sizes[("b", 0)] == [1]
    assert sizes[("c", 0)] == [20]
    assert sizes[("d", 0)] == [10, 11]
    for (qid, repeat), part in groups.groupby(["qid", "repeat"]):
        members = [d for docids in part.docids for d in docids]
        assert len(members) == len(set(members))  # disjoint
        assert set(members) == {r[2] for r in rows if r[0] == qid}  # complete
    for docids, texts in zip(groups.docids, groups.texts):  # texts travel with their ids
        assert [t.split()[1] for t in texts] == [str(int(d.split("-d")[1])) for d in docids]


def test_groups_are_reproducible_and_seeded(spark, settings):
    rows = make_rows("a", 45)
    one = _groups(spark, RerankSettings(model=settings.model, seed=7), rows)
    two = _groups(spark, RerankSettings(model=settings.model, seed=7), list(reversed(rows)))
    other = _groups(spark, RerankSettings(model=settings.model, seed=8), rows)
    assert one.docids.map(list).tolist() == two.docids.map(list).tolist()
    assert one.docids.map(list).tolist() != other.docids.map(list).tolist()
    repeats = _groups(spark, RerankSettings(model=settings.model, seed=7, repeats=2), rows)
    first, second = (repeats[repeats.repeat == r].docids.map(set).tolist() for r in (0, 1))
    assert first != second  # each repeat reshuffles


# ---- scoring, fusion, ranking ---------------------------------------------------------------


@pytest.fixture(scope="module")
def reranked(spark, settings):
    rows = make_rows("a", 30) + make_rows("b", 1) + make_rows("c", 5, query="tied scores")
    # Query c: every first-stage score equal (all rank 1, so the first stage gives each 1).
    rows = [r if r[0] != "c" else (*r[:4], 3.0, r[5]) for r in rows]
    s = RerankSettings(model=settings.model, partitions=2, repeats=2, group_size=8)
    checked, _ = check_candidates(candidates_frame(spark, rows), s.on_duplicates)
    out = rerank(checked, s, DAY).toPandas()
    return rows, s, out


def test_one_row_per_candidate_with_schema(spark, reranked):
    rows, _, out = reranked
    assert len(out) == len(rows)
    assert sorted(zip(out.qid, out.docid)) == sorted((r[0], r[2]) for r in rows)
    assert list(out.columns) == RERANKED.fieldNames()
    assert set(out.status) == {"ok"}
    assert (out.run_date == DAY).all()
    assert out.settings_digest.nunique() == 1 and out.model.nunique() == 1


def test_fusion_matches_hand_computation(reranked):
    rows, s, out = reranked
    first = pd.DataFrame(rows, columns=CANDIDATES.fieldNames()).set_index(["qid", "docid"])
    for (qid, docid), row in out.set_index(["qid", "docid"]).iterrows():
        scores = first.loc[qid].score
        # The first stage by its rank: 1 - ln(rank)/ln(n), tied scores sharing the best rank.
        rank = 1 + int((scores > first.loc[(qid, docid)].score).sum())
        norm = 1.0 if len(scores) == 1 else 1 - math.log(rank) / math.log(len(scores))
        assert row.model_score == pytest.approx(sum(row.repeat_scores) / 2)
        w = fusion_weight_for(s)
        assert w == 0.6  # an LLM's default
        expected = w * row.model_score / 10 + (1 - w) * norm
        assert row.score == pytest.approx(expected, abs=1e-12)
        assert row.first_stage_score == first.loc[(qid, docid)].score
        assert len(row.repeat_scores) == len(row.repeat_groups) == 2


def test_the_fusion_reads_the_first_stage_by_rank_not_by_its_scale(spark, reranked):
    # The same candidates with their scores as calibrated probabilities (same order, another
    # distribution): the tiny LLM does not read the scores, so every final score is the same.
    rows, s, out = reranked
    squashed = [(*r[:4], 1 / (1 + math.exp(-r[4] / 7)), r[5]) for r in rows]
    checked, _ = check_candidates(candidates_frame(spark, squashed), s.on_duplicates)
    again = rerank(checked, s, DAY).toPandas().set_index(["qid", "docid"]).sort_index()
    out = out.set_index(["qid", "docid"]).sort_index()
    assert again["rank"].tolist() == out["rank"].tolist()
    assert np.allclose(again.score, out.score, atol=1e-12)


def test_ranks_are_a_deterministic_permutation(reranked):
    _, _, out = reranked
    for qid, part in out.groupby("qid"):
        part = part.sort_values("rank")
        assert part["rank"].tolist() == list(range(1, len(part) + 1))
        keys = list(zip(-part.score, part.first_stage_rank, part.docid))
        assert keys == sorted(keys)


def test_model_scores_are_pooled_across_groups(reranked):
    _, _, out = reranked
    a = out[out.qid == "a"]
    assert a.model_score.between(0, 10).all()
    assert a.model_score.nunique() > 5
    assert {len(set(g)) for g in [a.repeat_groups.map(lambda x: x[0])]} == {4}


# ---- the job with Delta ---------------------------------------------------------------------


def _write_candidates(spark, tmp_path, rows, name="candidates"):
    path = str(tmp_path / name)
    candidates_frame(spark, rows).write.format("delta").mode("overwrite").save(path)
    return path


def _job(candidates, output, day="2026-11-27"):
    return RerankJob(candidates=candidates, output=output, run_date=day)


def test_rerun_is_idempotent_and_dates_accumulate(spark, settings, tmp_path):
    rows = make_rows("a", 12) + make_rows("b", 3)
    cand = _write_candidates(spark, tmp_path, rows)
    out = str(tmp_path / "reranked")
    summary = rerank_job.run(_job(cand, out), settings)
    first = spark.read.format("delta").load(out)
    first_rows = first.collect()
    # A different fusion weight reuses the loaded model: a worker that already scored does not
    # load again (loads are cumulative per Python worker, so compare worker by worker).
    rerun = RerankSettings(**{**settings.__dict__, "fusion_weight": 0.5})
    seen = dict(summary["scoring"]["model_loads_by_worker"])
    for run_settings in (rerun, settings):
        again = rerank_job.run(_job(cand, out), run_settings)
        loads = again["scoring"]["model_loads_by_worker"]
        both = loads.keys() & seen.keys()
        assert {pid: loads[pid] for pid in both} == {pid: seen[pid] for pid in both}
        seen.update(loads)
    assert again["scoring"]["groups"] == 2 and again["scoring"]["prompt_tokens"] > 0
    again = spark.read.format("delta").load(out)
    assert again.count() == len(rows)
    assertDataFrameEqual(again, spark.createDataFrame(first_rows, again.schema))
    rerank_job.run(_job(cand, out, "2026-11-28"), settings)
    both = spark.read.format("delta").load(out)
    counts = {r["run_date"]: r["count"] for r in both.groupBy("run_date").count().collect()}
    assert counts == {dt.date(2026, 11, 27): len(rows), dt.date(2026, 11, 28): len(rows)}


def test_empty_query_and_text_rows_are_kept_with_status(spark, settings, tmp_path):
    rows = make_rows("a", 6)
    rows[1] = (*rows[1][:3], "   ", *rows[1][4:])
    rows[2] = (*rows[2][:3], None, *rows[2][4:])
    rows += [("e", None, "e-d1", "text", 1.0, 1), ("e", "", "e-d2", "text", 2.0, 2)]
    cand = _write_candidates(spark, tmp_path, rows)
    out = str(tmp_path / "out")
    summary = rerank_job.run(_job(cand, out), settings)
    table = spark.read.format("delta").load(out).toPandas().set_index("docid")
    assert len(table) == len(rows) == summary["rows_out"]
    assert table.loc["a-d001", "status"] == table.loc["a-d002", "status"] == "empty_text"
    assert table.loc["e-d1", "status"] == table.loc["e-d2", "status"] == "empty_query"
    assert (table.loc[["a-d001", "a-d002", "e-d1"], "model_score"] == 0.0).all()
    assert summary["status_counts"] == {"empty_query": 2, "empty_text": 2, "ok": 4}
    # Only the scoreable rows of query a went to the model, in one group of 4.
    assert table.loc["a-d000", "repeat_groups"].tolist() == [0]


def test_duplicates_fail_with_examples_or_keep_best(spark, settings, tmp_path):
    rows = make_rows("a", 4)
    rows.append(("a", "what is bm25", "a-d001", "copy with a better score", 99.0, 9))
    df = candidates_frame(spark, rows)
    with pytest.raises(SchemaError, match=r"duplicate \(qid, docid\).*'a', 'a-d001', 2"):
        check_candidates(df, settings.on_duplicates)
    kept, report = check_candidates(df, "keep-best")
    assert report.duplicates_removed == 1
    best = kept.where("docid = 'a-d001'").collect()
    assert len(best) == 1 and best[0]["score"] == 99.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda df: df.drop("text"), "missing column 'text'"),
        (lambda df: df.drop("qid").drop("score"), "missing column 'qid'.*missing column 'score'"),
        (lambda df: df.withColumn("score", F.col("score").cast("string")), "'score' has type string"),
        (lambda df: df.withColumn("docid", F.lit(3)), "'docid' has type int"),
    ],
)
def test_schema_errors_name_each_column(spark, settings, mutate, message):
    df = mutate(candidates_frame(spark, make_rows("a", 3)))
    with pytest.raises(SchemaError, match=message):
        check_candidates(df, settings.on_duplicates)


def test_integer_scores_and_missing_rank_are_accepted(spark, settings):
    df = candidates_frame(spark, make_rows("a", 3)).drop("rank")
    df = df.withColumn("score", F.col("score").cast("int"))
    checked, report = check_candidates(df, settings.on_duplicates)
    assert report.rows == 3 and dict(checked.dtypes)["score"] == "double"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_scores_are_rejected(spark, settings, bad):
    rows = make_rows("a", 3)
    rows[0] = (*rows[0][:4], bad, 1)
    with pytest.raises(SchemaError, match="null, NaN or infinite.*a-d000"):
        check_candidates(candidates_frame(spark, rows), settings.on_duplicates)


def test_empty_table_writes_an_empty_partition(spark, settings, tmp_path, caplog):
    cand = _write_candidates(spark, tmp_path, [])
    out = str(tmp_path / "out")
    summary = rerank_job.run(_job(cand, out), settings)
    assert summary["rows_out"] == 0
    assert spark.read.format("delta").load(out).count() == 0
    assert "is empty" in caplog.text
    # An empty night runs no model stage: no fusion weight set, no group scored.
    assert summary["fusion"] == {} and summary["scoring"]["groups"] == 0
    assert spark.read.format("delta").load(out).columns == RERANKED.fieldNames()


def test_unparsed_groups_fall_back_to_first_stage_order(spark, tiny_model_dir, tmp_path):
    # A random model never writes the answer format: every group is unparsed in reason mode.
    s = RerankSettings(model=str(tiny_model_dir), mode="reason", max_new_tokens=4, partitions=2)
    rows = make_rows("a", 5)
    cand = _write_candidates(spark, tmp_path, rows)
    out = str(tmp_path / "out")
    summary = rerank_job.run(_job(cand, out), s)
    table = spark.read.format("delta").load(out).toPandas().sort_values("rank")
    assert summary["unscored"] == 5 and summary["status_counts"] == {"unparsed": 5}
    assert table.model_score.isna().all()
    assert table.docid.tolist() == [r[2] for r in rows]  # first-stage order
    strict = RerankSettings(**{**s.__dict__, "max_unparsed_fraction": 0.5})
    other = str(tmp_path / "strict")
    with pytest.raises(UnparsedOutputError, match="no usable model score"):
        rerank_job.run(_job(cand, other), strict)
    assert not (tmp_path / "strict").exists()


def test_cli_reports_bad_input_before_work(spark, tmp_path, capsys, tiny_model_dir):
    cand = str(tmp_path / "c")
    candidates_frame(spark, make_rows("a", 2)).drop("query").write.format("delta").save(cand)
    code = stage_main("rerank", 
        ["--candidates", cand, "--output", str(tmp_path / "o"), "--run-date", "2026-11-27",
         "--model", str(tiny_model_dir)]
    )
    assert code == 2
    assert "missing column 'query'" in capsys.readouterr().err
    assert stage_main("rerank", 
        ["--candidates", cand, "--output", str(tmp_path / "o"), "--run-date", "27/11/2026"]
    ) == 2
    assert "--run-date" in capsys.readouterr().err
    assert stage_main("rerank", 
        ["--candidates", cand, "--output", "x; DROP TABLE y", "--run-date", "2026-11-27"]
    ) == 2
    assert "neither a path" in capsys.readouterr().err
