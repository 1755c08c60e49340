"""Ingest a public benchmark's files into the corpus, queries and qrels Delta tables.

    grouprank ingest --format trec|beir|bright|r2med|scifact|cacm --source DIR --output DIR_OR_DATABASE \\
        [--subset NAME]
    grouprank ingest --format trec --source ../shared/data/vaswani --output /tmp/vaswani

Writes ``OUTPUT/corpus``, ``OUTPUT/queries`` and ``OUTPUT/qrels`` (or the tables
``OUTPUT.corpus`` ... when OUTPUT is a database name), each replaced as a whole. Every file is
parsed and checked before the first table is written, so a malformed file (reported with its
path and line) leaves the output untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from grouprank.formats import Benchmark, read_benchmark
from jobs.configs import IngestJob
from jobs.session import get_session
from jobs.tables import check_table_ref, is_path, write_delta
from schemas.corpus import CORPUS, validate_corpus
from schemas.qrels import QRELS, validate_qrels
from schemas.queries import QUERIES, validate_queries

log = logging.getLogger("grouprank.ingest")

TABLES = ("corpus", "queries", "qrels")




def table_refs(output: str, names: tuple[str, ...] = TABLES) -> dict[str, str]:
    """The references of the tables ``names`` (default: the three ingested ones) under an output
    folder or database.

    Example:
        >>> table_refs("/data/vaswani")["qrels"], table_refs("bench.vaswani")["qrels"]
        ('/data/vaswani/qrels', 'bench.vaswani.qrels')
    """
    separator = "/" if is_path(output) else "."
    return {name: f"{output.rstrip('/')}{separator}{name}" for name in names}


def to_tables(spark: SparkSession, benchmark: Benchmark) -> dict[str, DataFrame]:
    """The benchmark's frames as validated Spark DataFrames with the declared schemas."""
    frames = {
        "corpus": (benchmark.corpus, CORPUS, validate_corpus),
        "queries": (benchmark.queries, QUERIES, validate_queries),
        "qrels": (benchmark.qrels, QRELS, validate_qrels),
    }
    tables = {}
    for name, (frame, schema, validate) in frames.items():
        present = [f for f in schema.fields if f.name in frame.columns]
        tables[name] = validate(
            spark.createDataFrame(_plain(frame[[f.name for f in present]]), T.StructType(present))
        )
    return tables


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    # Arrow needs None, not NaN, for missing strings.
    return frame.astype(object).where(frame.notna(), None)


def check(job: IngestJob) -> None:
    """Fails on a bad output reference before any file is read."""
    check_table_ref(job.output, "--output")


def run(job: IngestJob) -> dict:
    """Reads, checks and writes the three tables; returns the summary."""
    started = time.time()
    check(job)
    refs = table_refs(job.output)
    benchmark = read_benchmark(job.format, job.source, job.subset)
    unjudged = set(benchmark.qrels["qid"]) - set(benchmark.queries["qid"])
    if unjudged:
        log.warning("%d qrels queries are not in the queries file, e.g. %s", len(unjudged),
                    sorted(unjudged)[:5])
    spark = get_session("grouprank-ingest")
    for name, table in to_tables(spark, benchmark).items():
        write_delta(table, refs[name], "--output")
    summary = {
        "job": "ingest",
        "settings": asdict(job),
        "tables": refs,
        "documents": len(benchmark.corpus),
        "queries": len(benchmark.queries),
        "judgements": len(benchmark.qrels),
        "seconds": round(time.time() - started, 1),
    }
    return summary


def headline(summary: dict) -> str:
    """How many documents, queries and judgements went in."""
    return (f"ingested {summary['documents']} documents, {summary['queries']} queries and "
            f"{summary['judgements']} judgements from {summary['settings']['source']} into "
            f"{summary['settings']['output']} in {summary['seconds']} s")
