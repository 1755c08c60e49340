"""The qrels table: relevance judgements, one row per judged (query, document) pair."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

QRELS = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("docid", T.StringType(), False),
        # Graded judgement; >= 1 is relevant, 0 judged non-relevant (negative values act as 0).
        T.StructField("relevance", T.IntegerType(), False),
    ]
)
QRELS_REQUIRED = {"qid", "docid", "relevance"}


def validate_qrels(df: DataFrame) -> DataFrame:
    """Checks the qrels columns and returns them in declared order.

    Example:
        >>> validate_qrels(spark.read.format("delta").load(path))  # doctest: +SKIP
    """
    return check_columns(df, QRELS, QRELS_REQUIRED, "qrels").select(*QRELS.fieldNames())
