"""First-stage retrieval: corpus and queries tables in, the candidates table the rerank job reads.

    grouprank retrieve --corpus T --queries T --output CANDIDATES \\
        [--method bm25|dense|hybrid] [--top-k 100] [--alpha 0.5] \\
        [--export-trec run.txt] [--export-rank-llm requests.jsonl]
    spark-submit jobs/retrieve.py <same flags>

The index is built once on the driver from the whole corpus (so the corpus must fit in driver
memory; see ``grouprank.retrieval`` for sizes) and shipped to the workers, which score the queries
in parallel. Queries' ``excluded_ids`` are never retrieved.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass

from pyspark.sql import functions as F

from grouprank import formats
from grouprank.retrieval import DEFAULT_ALPHA, Method, build_index
from jobs.entry import print_summary, run_job
from jobs.retrieve_transforms import check_corpus, check_queries, retrieve
from jobs.session import get_session
from jobs.tables import check_table_ref, read_table, write_delta
from schemas.corpus import document_text

log = logging.getLogger("grouprank.retrieve")


@dataclass(frozen=True)
class RetrieveJob:
    """What to index, which queries to run and where the candidates go."""

    # Corpus table (docid, text[, title]): a Delta or Parquet path, or a table name.
    corpus: str
    # Queries table (qid, query[, excluded_ids]): a path or a table name.
    queries: str
    # Output candidates Delta table (path or name); replaced as a whole.
    output: str
    # bm25 (bm25s, English stems and stop words), dense (all-MiniLM-L6-v2) or hybrid.
    method: Method = "bm25"
    # Documents kept per query.
    top_k: int = 100
    # Hybrid weight of min-max normalised BM25 (the rest is dense).
    alpha: float = DEFAULT_ALPHA
    # Partitions the queries are spread over (0 = Spark's default parallelism).
    partitions: int = 0
    # Also write the candidates as a TREC run file here (collected on the driver).
    export_trec: str | None = None
    # Also write the candidates as rank_llm JSONL requests here (collected on the driver).
    export_rank_llm: str | None = None


def run(job: RetrieveJob) -> dict:
    """Runs the job and returns its summary; raises before indexing on bad flags or tables."""
    started = time.time()
    for ref, flag in ((job.corpus, "--corpus"), (job.queries, "--queries"),
                      (job.output, "--output")):
        check_table_ref(ref, flag)
    if job.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {job.top_k}")
    if not 0.0 <= job.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {job.alpha}")

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
    print_summary(f"retrieved {summary['rows_out']} candidates for {summary['queries_out']} "
                  f"queries from {summary['documents']} documents with {job.method} into "
                  f"{job.output} in {summary['seconds']} s", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("retrieve", RetrieveJob, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
