"""The corpus table: one row per document of a benchmark collection."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from schemas.validation import check_columns

CORPUS = T.StructType(
    [
        T.StructField("docid", T.StringType(), False),
        T.StructField("text", T.StringType(), True),
        # Optional document title (BEIR); null where the collection has none.
        T.StructField("title", T.StringType(), True),
    ]
)
CORPUS_REQUIRED = {"docid", "text"}


def validate_corpus(df: DataFrame) -> DataFrame:
    """Checks the corpus columns; returns the declared columns in order (``title`` null if absent).

    Example:
        >>> validate_corpus(spark.read.format("delta").load(path))  # doctest: +SKIP
    """
    df = check_columns(df, CORPUS, CORPUS_REQUIRED, "corpus")
    if "title" not in df.columns:
        df = df.withColumn("title", F.lit(None).cast(T.StringType()))
    return df.select(*CORPUS.fieldNames())


def document_text() -> Column:
    """A corpus row's document text, the one definition every stage uses: the title, when there
    is one, then a space and the text. BM25 and the dense encoder index it, and it becomes the
    candidates' ``text`` that the reranker reads, so first stage and reranker see the same text.

    Example:
        >>> corpus.select("docid", document_text().alias("text"))  # doctest: +SKIP
    """
    return F.concat_ws(" ", F.col("title"), F.coalesce(F.col("text"), F.lit("")))
