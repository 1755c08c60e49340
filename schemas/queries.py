"""The queries table: one row per query of a benchmark."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

QUERIES = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("query", T.StringType(), True),
        # Documents to drop from this query's ranking before scoring (BRIGHT's excluded_ids);
        # empty or null for other benchmarks.
        T.StructField("excluded_ids", T.ArrayType(T.StringType(), True), True),
    ]
)
QUERIES_REQUIRED = {"qid", "query"}


def validate_queries(df: DataFrame) -> DataFrame:
    """Checks the queries columns; returns the declared columns in order (``excluded_ids`` empty
    if absent).

    Example:
        >>> validate_queries(spark.read.format("delta").load(path))  # doctest: +SKIP
    """
    df = check_columns(df, QUERIES, QUERIES_REQUIRED, "queries")
    if "excluded_ids" not in df.columns:
        from pyspark.sql import functions as F

        df = df.withColumn("excluded_ids", F.array().cast(QUERIES["excluded_ids"].dataType))
    return df.select(*QUERIES.fieldNames())
