"""DataFrame -> DataFrame transforms of the retrieve job; no I/O, so notebooks and tests call
exactly what ``jobs/retrieve.py`` calls.

    corpus, queries = check_corpus(corpus_df), check_queries(queries_df)
    bundle = build_index(*corpus_for_index(corpus), "bm25")      # on the driver, once
    candidates = retrieve(queries, corpus, bundle, top_k=100)    # scored on the workers

Only the DataFrame API is used (no RDDs, no SparkContext).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from grouprank.retrieval import IndexBundle
from jobs.eval_transforms import check_rows
from schemas.candidates import CANDIDATES, RETRIEVED
from schemas.corpus import document_text, validate_corpus
from schemas.queries import validate_queries
from udfs.retrieval import retrieve_udf


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
    from jobs.transforms import default_parallelism

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

