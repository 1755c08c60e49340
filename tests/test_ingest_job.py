"""The ingest job: fixture folders in the published layouts -> three Delta tables."""

from __future__ import annotations

import json

import pytest
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from grouprank.formats import FormatError
from jobs import cli
from jobs.stages import ingest
from schemas.corpus import CORPUS
from schemas.qrels import QRELS
from schemas.queries import QUERIES

MESSY = "pytorch_torch_tensor_functions/Memory Management_2_0.txt"


def _bright(root):
    (root / "documents").mkdir(parents=True)
    (root / "examples").mkdir()
    docs = [{"id": MESSY, "content": "memory"}, {"id": "b/1.txt", "content": "bee"}]
    examples = [
        {"query": "how?", "reasoning": "r", "id": "0", "excluded_ids": ["b/1.txt"],
         "gold_ids_long": ["N/A"], "gold_ids": [MESSY], "gold_answer": "N/A"},
        {"query": "why?", "reasoning": "r", "id": "1", "excluded_ids": ["N/A"],
         "gold_ids_long": ["N/A"], "gold_ids": ["b/1.txt"], "gold_answer": "N/A"},
    ]
    for folder, rows in (("documents", docs), ("examples", examples)):
        (root / folder / "pony.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_bright_ingest_writes_three_tables(spark, tmp_path):
    out = tmp_path / "out"
    summary = ingest.run(ingest.IngestJob(format="bright", source=str(_bright(tmp_path / "src")),
                                          output=str(out), subset="pony"))
    assert (summary["documents"], summary["queries"], summary["judgements"]) == (2, 2, 2)
    corpus = spark.read.format("delta").load(str(out / "corpus"))
    queries = spark.read.format("delta").load(str(out / "queries"))
    qrels = spark.read.format("delta").load(str(out / "qrels"))
    for table, schema in ((corpus, CORPUS), (queries, QUERIES), (qrels, QRELS)):
        assertSchemaEqual(table.schema, schema, ignoreNullable=True)
    assertDataFrameEqual(corpus, spark.createDataFrame(
        [(MESSY, "memory", None), ("b/1.txt", "bee", None)], CORPUS))
    assert sorted((r["qid"], r["query"], list(r["excluded_ids"])) for r in queries.collect()) == [
        ("0", "how?", ["b/1.txt"]), ("1", "why?", [])]
    assert sorted(map(tuple, qrels.collect())) == [("0", MESSY, 1), ("1", "b/1.txt", 1)]


def test_trec_ingest_through_the_cli_and_malformed_input_writes_nothing(spark, tmp_path, capsys):
    src = tmp_path / "trec"
    src.mkdir()
    (src / "docs.trec").write_text("<DOC>\n<DOCNO>d1</DOCNO>\nsome text\n</DOC>\n")
    (src / "topics.trec").write_text("<top>\n<num>1</num><title>a query</title>\n</top>\n")
    (src / "qrels").write_text("1 0 d1 1\n")
    out = tmp_path / "out"
    assert cli.main(["ingest", "--format", "trec", "--source", str(src), "--output", str(out)]) == 0
    assert "ingested 1 documents, 1 queries and 1 judgements" in capsys.readouterr().out
    queries = spark.read.format("delta").load(str(out / "queries"))
    assert [(r["qid"], r["query"], list(r["excluded_ids"])) for r in queries.collect()] == [
        ("1", "a query", [])]
    # A broken qrels line: the error names file and line, and no table is (re)written.
    (src / "qrels").write_text("1 0 d1 1\n1 0 d2\n")
    bad_out = tmp_path / "bad"
    with pytest.raises(FormatError, match=r"qrels:2: expected"):
        ingest.run(ingest.IngestJob(format="trec", source=str(src), output=str(bad_out)))
    assert not bad_out.exists()
    assert cli.main(["ingest", "--format", "trec", "--source", str(src),
                     "--output", str(bad_out)]) == 2
