"""The serving index the publish job maintains, and its publish log."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

# One row per (qid, rank <= k): what a serving layer reads. Keyed by (qid, rank); created with
# the change data feed on, and updated by MERGE so only changed rows reach the feed.
SERVING = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        # 1-based position in the published top k (renumbered after --min-score drops).
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("docid", T.StringType(), False),
        # The reranked table's final score (higher is better).
        T.StructField("score", T.DoubleType(), False),
        # The 0-10 model score; null when the model gave none (only without --min-score).
        T.StructField("model_score", T.DoubleType(), True),
        T.StructField("model", T.StringType(), False),
        # The model's content digest when the reranked table carries one, else null.
        T.StructField("model_digest", T.StringType(), True),
        T.StructField("settings_digest", T.StringType(), False),
        # Run date of the night that last changed this row (unchanged rows keep theirs).
        T.StructField("run_date", T.DateType(), False),
        # When the publish that last changed this row ran (UTC).
        T.StructField("published_at", T.TimestampType(), False),
    ]
)
SERVING_KEY = ("qid", "rank")
# The columns whose change makes a row "changed": an update in the MERGE and the change feed.
SERVING_CONTENT = ("docid", "score", "model_score", "model", "model_digest", "settings_digest")

# One checked gate of a publish attempt.
GATE = T.StructType(
    [
        # complete, unscored, churn, a metric floor like nDCG@10>=0.4, or drop:nDCG@10.
        T.StructField("gate", T.StringType(), False),
        # The measured value; null when it could not be measured (the gate then fails).
        T.StructField("value", T.DoubleType(), True),
        # The bound the value was checked against.
        T.StructField("limit", T.DoubleType(), True),
        T.StructField("passed", T.BooleanType(), False),
    ]
)

# One row per publish or rollback attempt (a dry run writes none).
PUBLISH_LOG = T.StructType(
    [
        T.StructField("attempted_at", T.TimestampType(), False),
        # publish | rollback
        T.StructField("action", T.StringType(), False),
        T.StructField("index", T.StringType(), False),
        # The published night; on a rollback, the night whose publish was undone (null with
        # --to-version).
        T.StructField("run_date", T.DateType(), True),
        # published | unchanged | blocked | failed | restored
        T.StructField("outcome", T.StringType(), False),
        # The failed gate's or the error's one-line message; null on success.
        T.StructField("message", T.StringType(), True),
        T.StructField("gates", T.ArrayType(GATE, False), True),
        T.StructField("top_k", T.IntegerType(), True),
        # full | partial
        T.StructField("scope", T.StringType(), True),
        T.StructField("min_score", T.DoubleType(), True),
        # Index version before and after the attempt (equal when nothing was committed; null
        # before the index exists).
        T.StructField("version_before", T.LongType(), True),
        T.StructField("version_after", T.LongType(), True),
        T.StructField("rows_inserted", T.LongType(), True),
        T.StructField("rows_updated", T.LongType(), True),
        T.StructField("rows_deleted", T.LongType(), True),
    ]
)


def validate_serving(df: DataFrame) -> DataFrame:
    """Checks the serving columns and returns them in declared order.

    Example:
        >>> validate_serving(spark.read.table("main.grouprank.serving"))  # doctest: +SKIP
    """
    return check_columns(df, SERVING, set(SERVING.fieldNames()), "serving").select(
        *SERVING.fieldNames()
    )
