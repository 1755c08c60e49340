"""The evaluate job: hand-computed values, denominators, exclusions, idempotent reruns,
comparison, malformed input, and per-query parity with pytrec_eval on a real BRIGHT run."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import pytrec_eval
from pyspark.sql import functions as F
from pyspark.testing import assertSchemaEqual

from grouprank.formats import FormatError, read_trec_qrels, read_trec_run
from grouprank.metrics import MetricError, parse_metrics
from jobs import cli
from jobs.stages import run as run_stage
from jobs.stages import evaluate
from jobs.stages.evaluate import check_qrels, check_run, evaluate_run
from schemas.metrics import METRICS
from schemas.validation import SchemaError

DAY = "2026-11-27"
MESSY = "pytorch_torch_tensor_functions/Memory Management_2_0.txt"


@pytest.fixture
def files(tmp_path):
    # q1: scores tie between 'a' and 'b' -> trec_eval order b (docid desc), a, then MESSY.
    # q2: one relevant document, retrieved at rank 2. q3: judged but not in the run.
    # q9: retrieved but never judged (ignored).
    (tmp_path / "run.txt").write_text(
        "q1 Q0 a 1 2.0 t\nq1 Q0 b 2 2.0 t\n"
        f"q1 Q0 {MESSY} 3 1.0 t\n"
        "q2 Q0 x 1 5.0 t\nq2 Q0 y 2 4.0 t\nq9 Q0 z 1 1.0 t\n"
    )
    (tmp_path / "qrels.txt").write_text(
        "q1 0 a 2\nq1 0 b 0\n"
        f"q1 0 {MESSY} 1\n"
        "q1 0 c 1\nq2 0 y 1\nq3 0 k 1\n"
    )
    return tmp_path


def _job(files, **kwargs) -> evaluate.EvaluateJob:
    base = dict(run=str(files / "run.txt"), qrels=str(files / "qrels.txt"),
                output=str(files / "metrics"), run_date=DAY, name="tiny",
                metrics="ndcg@3,recall@2,mrr@10")
    return evaluate.EvaluateJob(**{**base, **kwargs})


def _values(spark, files, name="tiny") -> dict[tuple[str, str], tuple[float, int]]:
    rows = spark.read.format("delta").load(str(files / "metrics")).where(F.col("name") == name)
    return {(r["qid"], r["metric"]): (r["value"], r["num_queries"]) for r in rows.collect()}


def test_hand_computed_values_and_denominators(spark, files):
    evaluate.run(_job(files))
    got = _values(spark, files)
    # q1 in trec_eval order: b (0), a (2), MESSY (1); judged gains 2, 1, 1, 0.
    ndcg_q1 = (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3) + 1 / 2)
    ndcg_q2 = (1 / math.log2(3)) / 1
    expected = {
        ("q1", "nDCG@3"): ndcg_q1, ("q2", "nDCG@3"): ndcg_q2, ("q3", "nDCG@3"): 0.0,
        ("q1", "Recall@2"): 1 / 3, ("q2", "Recall@2"): 1.0, ("q3", "Recall@2"): 0.0,
        ("q1", "MRR@10"): 1 / 2, ("q2", "MRR@10"): 1 / 2, ("q3", "MRR@10"): 0.0,
        ("all", "nDCG@3"): (ndcg_q1 + ndcg_q2) / 3, ("all", "Recall@2"): (1 / 3 + 1) / 3,
        ("all", "MRR@10"): 1 / 3,
    }
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key][0] == pytest.approx(value, abs=1e-12), key
        assert got[key][1] == (3 if key[0] == "all" else 1)
    # Only queries in the run: q3 is not averaged.
    evaluate.run(_job(files, name="tiny-run", denominator="run"))
    run_only = _values(spark, files, "tiny-run")
    assert run_only[("all", "nDCG@3")] == (pytest.approx((ndcg_q1 + ndcg_q2) / 2), 2)
    assert ("q3", "nDCG@3") not in run_only


def test_output_schema_rerun_is_idempotent_and_comparison(spark, files, capsys):
    evaluate.run(_job(files))
    evaluate.run(_job(files, name="other", metrics="mrr@10"))
    # Through the registry, which prints the headline as the command line does.
    summary = run_stage("evaluate", _job(files, baseline="other", metrics="mrr@10", test="t-test"))
    table = spark.read.format("delta").load(str(files / "metrics"))
    assertSchemaEqual(table.schema, METRICS, ignoreNullable=True)
    counts = {r["name"]: r["count"] for r in table.groupBy("name").count().collect()}
    # The third run replaced 'tiny' (now one metric: 3 queries + 'all'); 'other' is untouched.
    assert counts == {"tiny": 4, "other": 4}
    assert table.select("run_date").distinct().first()[0] == dt.date(2026, 11, 27)
    (comparison,) = summary["comparisons"]
    assert (comparison["wins"], comparison["ties"], comparison["losses"]) == (0, 3, 0)
    assert comparison["p_value"] == 1.0
    assert "vs other" in capsys.readouterr().out


def test_excluded_ids_are_removed_before_scoring(spark, files, tmp_path):
    queries = tmp_path / "queries"
    spark.createDataFrame(
        [("q1", "?", ["b"]), ("q2", "?", [])],
        "qid string, query string, excluded_ids array<string>",
    ).write.format("delta").save(str(queries))
    evaluate.run(_job(files, name="excl", queries=str(queries), metrics="mrr@10"))
    # Without 'b', q1's first document is 'a' (relevant): 1 instead of 1/2.
    assert _values(spark, files, "excl")[("q1", "MRR@10")][0] == 1.0


def test_bad_input_fails_before_writing(spark, files):
    with pytest.raises(MetricError, match="ndgc"):
        evaluate.run(_job(files, metrics="ndgc@10"))
    with pytest.raises(ValueError, match="--run-date"):
        evaluate.run(_job(files, run_date="27/11/2026"))
    with pytest.raises(ValueError, match="--name"):
        evaluate.run(_job(files, name="x' OR '1'='1"))
    (files / "bad.txt").write_text("q1 Q0 a 1 2.0 t\nq1 Q0 b two 1.0 t\n")
    with pytest.raises(FormatError, match=r"bad.txt:2: expected"):
        evaluate.run(_job(files, run=str(files / "bad.txt")))
    (files / "dupe.txt").write_text("q1 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n")
    with pytest.raises(SchemaError, match=r"1 repeated \(qid, docid\)"):
        evaluate.run(_job(files, run=str(files / "dupe.txt")))
    assert not (files / "metrics").exists()


def test_cli_reads_the_run_date_of_a_reranked_table(spark, files, capsys):
    candidates = files / "reranked"
    # Two nights of the same query: only --run-date's rows are scored (y first on that night).
    spark.createDataFrame(
        [("q2", "x", 5.0, dt.date(2026, 11, 27)), ("q2", "y", 4.0, dt.date(2026, 11, 27)),
         ("q2", "x", 1.0, dt.date(2026, 11, 26)), ("q2", "y", 4.0, dt.date(2026, 11, 26))],
        "qid string, docid string, score double, run_date date",
    ).write.format("delta").save(str(candidates))
    code = cli.main(["evaluate", "--run", str(candidates), "--qrels", str(files / "qrels.txt"),
                     "--output", str(files / "metrics"), "--run-date", DAY,
                     "--metrics", "mrr@10", "--denominator", "run"])
    assert code == 0
    assert "MRR@10       0.5000" in capsys.readouterr().out
    assert cli.main(["evaluate", "--run", str(candidates), "--qrels", "x", "--output", "y",
                     "--run-date", DAY, "--metrics", "nope"]) == 2


def test_parity_with_pytrec_eval_on_a_real_bright_run(spark, shared_data):
    bright = shared_data / "bright"
    run_path = bright / "runs_reasonir_top100" / "theoremqa_theorems.reasonir_gpt4cot_top100.txt"
    qrels_path = bright / "qrels" / "qrels.bright-theoremqa-theorems.txt"
    run_pd, qrels_pd = read_trec_run(run_path), read_trec_qrels(qrels_path)
    metrics = parse_metrics("ndcg@10,recall@10,recall@100,map,ndcg")
    table = evaluate_run(
        check_run(spark.createDataFrame(run_pd[["qid", "docid", "score"]])),
        check_qrels(spark.createDataFrame(qrels_pd).withColumn("relevance", F.col("relevance")
                                                                .cast("int"))),
        metrics, dt.date(2026, 11, 27), "reasonir", "run",
    )
    got = {(r["qid"], r["metric"]): r["value"] for r in table.collect()}
    qrels, run = {}, {}
    for qid, docid, rel in qrels_pd.itertuples(index=False):
        qrels.setdefault(qid, {})[docid] = int(rel)
    for qid, docid, _, score, _ in run_pd.itertuples(index=False):
        run.setdefault(qid, {})[docid] = float(score)
    keys = {"nDCG@10": "ndcg_cut_10", "Recall@10": "recall_10", "Recall@100": "recall_100",
            "MAP": "map", "nDCG": "ndcg"}
    expected = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "recall.10,100", "map", "ndcg"}).evaluate(run)
    assert len(expected) > 50
    for qid, values in expected.items():
        for metric, key in keys.items():
            assert got[(qid, metric)] == pytest.approx(values[key], abs=1e-9), (qid, metric)
    for metric, key in keys.items():
        mean = sum(v[key] for v in expected.values()) / len(expected)
        assert got[("all", metric)] == pytest.approx(mean, abs=1e-9)


def test_calibration_rows_per_score_bin_and_ece(spark, files):
    reranked = str(files / "scored")
    # Judged: q1 (a: 2, b: 0, c: 1; d unjudged) and q2 (x: 1, y: 0). q9 is not judged: left out.
    spark.createDataFrame(
        [("q1", "a", 9.5, 9.5), ("q1", "b", 8.2, 8.2), ("q1", "c", 3.0, 3.0), ("q1", "d", 2.5, 2.5),
         ("q2", "x", 9.0, 9.0), ("q2", "y", 1.0, 1.0), ("q9", "z", 5.0, 5.0),
         ("q2", "w", 0.5, None)],
        "qid string, docid string, score double, model_score double",
    ).write.format("delta").save(reranked)
    (files / "qrels2.txt").write_text("q1 0 a 2\nq1 0 b 0\nq1 0 c 1\nq2 0 x 1\nq2 0 y 0\n")
    summary = evaluate.run(_job(files, run=reranked, qrels=str(files / "qrels2.txt"),
                                name="calibrated", metrics="mrr@10", calibration_bins=2))
    got = _values(spark, files, "calibrated")
    # Bin 0 (scores 0-5): c (rel), d, y -> 1/3 relevant, mean confidence (.30 + .25 + .10) / 3.
    # Bin 1 (5-10): a (rel), b, x (rel) -> 2/3, mean confidence (.95 + .82 + .90) / 3.
    ece = (3 * abs(1 / 3 - 0.65 / 3) + 3 * abs(2 / 3 - 2.67 / 3)) / 6
    assert got[("all", "Calibration@bin0")] == (pytest.approx(1 / 3), 2)
    assert got[("all", "Calibration@bin1")] == (pytest.approx(2 / 3), 2)
    assert got[("all", "Documents@bin0")][0] == got[("all", "Documents@bin1")][0] == 3.0
    assert got[("all", "ECE")][0] == pytest.approx(ece)
    assert summary["calibration"]["ECE"] == pytest.approx(ece)
    with pytest.raises(ValueError, match="--calibration-bins needs a run with a model_score"):
        evaluate.run(_job(files, name="nocal", calibration_bins=2))
