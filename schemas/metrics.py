"""The metrics table: evaluation results of named runs, per query and aggregated."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

# qid of the row holding a metric's mean over the evaluated queries.
ALL_QUERIES = "all"

METRICS = T.StructType(
    [
        T.StructField("run_date", T.DateType(), False),
        # The evaluated run's name; (run_date, name) is replaced as a whole on rerun.
        T.StructField("name", T.StringType(), False),
        # A query id, or 'all' for the mean over the evaluated queries.
        T.StructField("qid", T.StringType(), False),
        # The metric as written by grouprank.metrics, e.g. nDCG@10.
        T.StructField("metric", T.StringType(), False),
        T.StructField("value", T.DoubleType(), False),
        # Queries behind the value: 1 on per-query rows, the averaging denominator on 'all' rows.
        T.StructField("num_queries", T.IntegerType(), False),
    ]
)
METRICS_REQUIRED = set(METRICS.fieldNames())

# One row per query: judgements in rank order and all judgements; what the metric UDF reads.
JUDGED_RANKINGS = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        # Judgement of each retrieved document in trec_eval order (0 = unjudged); null when the
        # query retrieved nothing.
        T.StructField("ranked", T.ArrayType(T.IntegerType(), False), True),
        T.StructField("judged", T.ArrayType(T.IntegerType(), False), False),
    ]
)

# One row per (query, metric): what the metric UDF returns.
QUERY_METRICS = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("metric", T.StringType(), False),
        T.StructField("value", T.DoubleType(), False),
    ]
)


def validate_metrics(df: DataFrame) -> DataFrame:
    """Checks the metrics columns and returns them in declared order.

    Example:
        >>> validate_metrics(spark.read.table("main.eval.metrics"))  # doctest: +SKIP
    """
    return check_columns(df, METRICS, METRICS_REQUIRED, "metrics").select(*METRICS.fieldNames())
