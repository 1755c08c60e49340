"""First-stage retrieval: corpus and queries tables in, the candidates table the rerank job reads.

    grouprank retrieve --corpus T --queries T --output CANDIDATES \\
        [--method bm25|dense|hybrid] [--top-k 100] [--alpha 0.5] \\
        [--export-trec run.txt] [--export-rank-llm requests.jsonl]
    spark-submit jobs/retrieve.py <same flags>

The index is built once on the driver from the whole corpus (so the corpus must fit in driver
memory; see ``grouprank.retrieval`` for sizes) and shipped to the workers, which score the queries
in parallel. Queries' ``excluded_ids`` are never retrieved.

DataFrame -> DataFrame transforms of the retrieve job; no I/O, so notebooks and tests call
exactly what ``jobs/retrieve.py`` calls.

    corpus, queries = check_corpus(corpus_df), check_queries(queries_df)
    bundle = build_index(*corpus_for_index(corpus), "bm25")      # on the driver, once
    candidates = retrieve(queries, corpus, bundle, top_k=100)    # scored on the workers

Only the DataFrame API is used (no RDDs, no SparkContext).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from grouprank import formats
from grouprank.retrieval import IndexBundle, build_index
from jobs.configs import RetrieveJob
from jobs.session import default_parallelism, get_session
from jobs.tables import check_table_ref, read_table, write_delta
from schemas.candidates import CANDIDATES, RETRIEVED
from schemas.corpus import document_text, validate_corpus
from schemas.queries import validate_queries
from schemas.validation import check_rows
from udfs.retrieval import retrieve_udf

log = logging.getLogger("grouprank.retrieve")


def check_corpus(corpus: DataFrame) -> DataFrame:
    """Validates the corpus: declared columns, no null or duplicate docids (with examples)."""
    df = validate_corpus(corpus)
    return check_rows(df, "corpus", ["docid"], F.col("docid").isNull(), "rows with a null docid")


def check_queries(queries: DataFrame) -> DataFrame:
    """Validates the queries: declared columns, no null or duplicate qids (with examples)."""
    df = validate_queries(queries)
    return check_rows(df, "queries", ["qid"], F.col("qid").isNull(), "rows with a null qid")


def retrieve(
    queries: DataFrame, corpus: DataFrame, bundle: IndexBundle, top_k: int,
    partitions: int | None = None,
) -> DataFrame:
    """Each query's top ``top_k`` documents as a candidates table (``schemas.CANDIDATES``).

    Queries are spread over ``partitions`` (default: Spark's default parallelism) and scored by
    the retrieval UDF; query and document texts are joined back in Spark.

    Example:
        >>> retrieve(check_queries(q), check_corpus(c), bundle, 100).show()  # doctest: +SKIP
    """
    if top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    
    partitions = partitions or default_parallelism(queries.sparkSession)
    hits = (
        queries.select("qid", "query", "excluded_ids")
        .repartition(partitions, "qid")
        .mapInPandas(retrieve_udf(bundle, top_k), RETRIEVED)
    )
    return (
        hits.join(queries.select("qid", "query"), "qid")
        .join(corpus.select("docid", document_text().alias("text")), "docid")
        .select(*CANDIDATES.fieldNames())
    )


def check(job: RetrieveJob) -> None:
    """Fails on bad flags before any Spark work."""
    for ref, flag in ((job.corpus, "--corpus"), (job.queries, "--queries"),
                      (job.output, "--output")):
        check_table_ref(ref, flag)
    if job.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {job.top_k}")
    if not 0.0 <= job.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {job.alpha}")


def run(job: RetrieveJob) -> dict:
    """Runs the job and returns its summary; raises before indexing on bad flags or tables."""
    started = time.time()
    check(job)
    spark = get_session("grouprank-retrieve")
    corpus = check_corpus(read_table(spark, job.corpus, "--corpus"))
    queries = check_queries(read_table(spark, job.queries, "--queries"))
    documents = corpus.select("docid", document_text().alias("text")).toPandas()
    log.info("indexing %d documents with %s on the driver", len(documents), job.method)
    bundle = build_index(documents["docid"].tolist(), documents["text"].tolist(), job.method,
                         job.alpha)
    indexed = time.time()
    candidates = retrieve(queries, corpus, bundle, job.top_k, job.partitions or None)
    write_delta(candidates, job.output)
    written = read_table(spark, job.output, "--output")
    stats = written.agg(F.count(F.lit(1)).alias("rows"),
                        F.countDistinct("qid").alias("queries")).first()
    if job.export_trec or job.export_rank_llm:
        frame = written.toPandas()
        if job.export_trec:
            formats.write_trec_run(frame, job.export_trec, tag=job.method)
        if job.export_rank_llm:
            formats.write_rank_llm(frame, job.export_rank_llm)
    summary = {
        "job": "retrieve",
        "output": job.output,
        "documents": len(documents),
        "index_bytes": len(bundle.bm25 or b"") + len(bundle.embeddings or b""),
        "queries_in": queries.count(),
        "queries_out": stats["queries"],
        "rows_out": stats["rows"],
        "index_seconds": round(indexed - started, 1),
        "seconds": round(time.time() - started, 1),
        "settings": asdict(job),
    }
    return summary


def headline(summary: dict) -> str:
    """How many candidates, for how many queries, from how many documents."""
    return (f"retrieved {summary['rows_out']} candidates for {summary['queries_out']} queries "
            f"from {summary['documents']} documents with {summary['settings']['method']} into "
            f"{summary['output']} in {summary['seconds']} s")

