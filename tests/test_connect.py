"""The jobs and the notebook path as Spark Connect clients of a local Connect server
(tests/cluster.py) with Delta Lake configured on the server only.

Every client is its own process with ``SPARK_REMOTE`` set and ``JAVA_HOME`` pointing nowhere:
it cannot launch a JVM of its own, so everything it does goes through the server. The test
process keeps its classic local session (conftest's ``spark``) to write inputs and read results.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytrec_eval

from schemas import CANDIDATES

pytest_plugins = ["tests.cluster"]
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DAY = "2026-11-27"
QUERIES, DOCS = 3, 8
# Attributes that exist only on a classic session or DataFrame (a JVM in this process).
_CLASSIC_ONLY = {"sparkContext", "rdd", "_jvm", "_jsc", "_jdf", "_jsparkSession", "_sc"}
# The one place a transform may read one: Spark's default parallelism, inside a try whose
# except gives the Connect fallback.
_ALLOWED = {("session.py", "default_parallelism", "sparkContext")}
# The modules whose code runs over Connect: the stages' transforms and what they share.
_CONNECT_MODULES = [*(f"stages/{name}.py" for name in
                      ("rerank", "evaluate", "retrieve", "synthesize", "publish")),
                    "candidates.py", "embeddings.py", "score_cache.py", "tables.py", "session.py"]


def _rows() -> list[tuple]:
    return [(f"q{q}", f"query number {q}", f"q{q}-d{i}", f"text {i} about topic {q}",
             float(DOCS - i), i + 1) for q in range(QUERIES) for i in range(DOCS)]


def test_transforms_use_no_sparkcontext_rdds_or_jvm_handles():
    found = set()
    for path in (REPO / "jobs" / name for name in _CONNECT_MODULES):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                name = (node.attr if isinstance(node, ast.Attribute)
                        else node.id if isinstance(node, ast.Name) else None)
                if name in _CLASSIC_ONLY or name == "SparkContext":
                    found.add((path.name, function.name, name))
    assert found <= _ALLOWED, sorted(found - _ALLOWED)


def _client(server, args: list[str], cwd: Path, timeout: int = 1200) -> str:
    """Runs a Connect client process (``python ARGS``); returns its output, failing on exit != 0."""
    env = server.env(JAVA_HOME="/nonexistent", PATH="/usr/bin:/bin", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _cli(server, args: list[str], cwd: Path) -> dict:
    out = _client(server, ["-m", "jobs.cli", *args], cwd)
    line = next(l for l in out.splitlines() if l.startswith("summary: "))
    return json.loads(line[len("summary: "):])


@pytest.fixture(scope="module")
def candidates(spark, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("connect-inputs") / "candidates")
    spark.createDataFrame(_rows(), CANDIDATES).write.format("delta").save(path)
    return path


def test_rerank_job_over_connect(spark, connect_server, candidates, tiny_model_dir, tmp_path):
    output = str(tmp_path / "reranked")
    summary = _cli(connect_server, [
        "rerank", "--candidates", candidates, "--output", output, "--run-date", DAY,
        "--model", str(tiny_model_dir), "--group-size", "4", "--partitions", "2"], tmp_path)
    assert summary["rows_in"] == summary["rows_out"] == QUERIES * DOCS
    rows = spark.read.format("delta").load(output).select("qid", "docid", "rank").collect()
    assert sorted((r["qid"], r["docid"]) for r in rows) == sorted((r[0], r[2]) for r in _rows())
    for q in range(QUERIES):
        assert sorted(r["rank"] for r in rows if r["qid"] == f"q{q}") == list(range(1, DOCS + 1))


# The notebook path: the demo's sample (read in this client, sent as data), then the transforms
# and the writer the rerank notebook's job calls, on a Connect session.
_NOTEBOOK_PATH = """
import datetime as dt, sys
from grouprank.settings import RerankSettings
from jobs.stages import demo
from jobs.session import get_session
from jobs.tables import read_table, write_run_date_partition
from jobs.stages.rerank import check_candidates, rerank

spark = get_session("notebook")
print("session:", type(spark).__module__)
sample, output = sys.argv[1], sys.argv[2]
demo.write_sample(spark, sample)
settings = RerankSettings(model=sys.argv[3], group_size=4)
checked, report = check_candidates(read_table(spark, sample, "--candidates"), settings.on_duplicates)
day = dt.date(2026, 11, 27)
write_run_date_partition(rerank(checked, settings, day), output, day)
print("rows:", report.rows)
"""


def test_notebook_path_over_connect(spark, connect_server, tiny_model_dir, tmp_path):
    script = tmp_path / "notebook_path.py"
    script.write_text(_NOTEBOOK_PATH)
    sample, output = tmp_path / "sample", tmp_path / "reranked"
    out = _client(connect_server, [str(script), str(sample), str(output), str(tiny_model_dir)],
                  tmp_path)
    assert "session: pyspark.sql.connect.session" in out
    lines = (REPO / "grouprank" / "data" / "sample_candidates.jsonl").read_text().splitlines()
    expected = {(r["qid"], r["docid"]) for r in map(json.loads, lines)}
    table = spark.read.format("delta").load(str(output))
    assert {(r["qid"], r["docid"]) for r in table.collect()} == expected
    assert table.count() == len(expected) and f"rows: {len(expected)}" in out


def test_retrieve_then_evaluate_over_connect(spark, connect_server, tmp_path):
    documents = {f"d{i}": f"document {i} on {'apples' if i % 2 else 'pears'} and more"
                 for i in range(8)}
    queries = {"q1": "apples", "q2": "pears"}
    corpus, queries_table = str(tmp_path / "corpus"), str(tmp_path / "queries")
    spark.createDataFrame(list(documents.items()), "docid string, text string") \
        .write.format("delta").save(corpus)
    spark.createDataFrame(list(queries.items()), "qid string, query string") \
        .write.format("delta").save(queries_table)
    candidates = str(tmp_path / "candidates")
    summary = _cli(connect_server, [
        "retrieve", "--corpus", corpus, "--queries", queries_table, "--output", candidates,
        "--top-k", "3"], tmp_path)
    assert summary["rows_out"] == 6 and summary["queries_out"] == 2
    # BM25 ranks a query's matching documents first: the top 3 all contain its word.
    for row in spark.read.format("delta").load(candidates).collect():
        assert queries[row["qid"]] in documents[row["docid"]]

    # A TREC qrels file local to this client: read here and sent to the server as data.
    qrels = {"q1": {"d1": 1, "d3": 1, "d0": 0}, "q2": {"d2": 1, "d4": 1}}
    qrels_file = tmp_path / "qrels.txt"
    qrels_file.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in qrels.items()
                                  for d, g in docs.items()))
    metrics = str(tmp_path / "metrics")
    _cli(connect_server, ["evaluate", "--run", candidates, "--qrels", str(qrels_file),
                          "--output", metrics, "--run-date", DAY, "--metrics", "ndcg@10"],
         tmp_path)
    run = {}
    for row in spark.read.format("delta").load(candidates).collect():
        run.setdefault(row["qid"], {})[row["docid"]] = row["score"]
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    got = {r["qid"]: r["value"] for r in spark.read.format("delta").load(metrics).collect()}
    for qid in qrels:
        assert got[qid] == pytest.approx(expected[qid]["ndcg_cut_10"])
