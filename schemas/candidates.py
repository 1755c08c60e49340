"""The candidates table: a first-stage ranking, one row per (query, candidate document)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

CANDIDATES = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("query", T.StringType(), True),
        T.StructField("docid", T.StringType(), False),
        T.StructField("text", T.StringType(), True),
        # First-stage score, higher is better.
        T.StructField("score", T.DoubleType(), False),
        # Optional first-stage rank, 1 = best; derived from `score` when absent.
        T.StructField("rank", T.IntegerType(), True),
    ]
)
CANDIDATES_REQUIRED = {"qid", "query", "docid", "text", "score"}

# What the retrieval UDF returns: the candidates columns that retrieval decides.
RETRIEVED = T.StructType([CANDIDATES[name] for name in ("qid", "docid", "score", "rank")])


def validate_candidates(df: DataFrame) -> DataFrame:
    """Checks the candidates columns and returns the table with declared types and column order.

    Raises ``SchemaError`` naming each missing or mistyped column. Extra columns are dropped: the
    reranker reads only the declared ones.

    Example:
        >>> validate_candidates(spark.read.format("delta").load(path))  # doctest: +SKIP
    """
    df = check_columns(df, CANDIDATES, CANDIDATES_REQUIRED, "candidates")
    if "rank" not in df.columns:
        from pyspark.sql import functions as F

        df = df.withColumn("rank", F.lit(None).cast(T.IntegerType()))
    return df.select(*CANDIDATES.fieldNames())
