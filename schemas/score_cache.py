"""The group score cache (``--score-cache``): what a model said about a group, kept so that a
group seen before is not sent to the model again.

One row per (scoring digest, query digest, group digest): the same query text with the same
document texts in the same order, read by the same weights under the same prompt and scoring
settings, gets the same scores. The table is only appended to, by an insert-only MERGE on that
key, so concurrent jobs, reruns and killed jobs never leave a duplicate key or a partial row.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

SCORE_CACHE = T.StructType(
    [
        # Hash of what decides a model call's output: the model's weights, the prompt
        # template's text and the scoring settings (RerankSettings.scoring_digest).
        T.StructField("scoring_digest", T.StringType(), False),
        # sha256 of the query text (hex).
        T.StructField("query_digest", T.StringType(), False),
        # sha256 of the group's document-text digests, in the order the model read them.
        T.StructField("group_digest", T.StringType(), False),
        # Per document, in that order: its 0-10 score and status (every one usable: groups
        # with a document left unscored are not cached, so a later run asks the model again).
        T.StructField("scores", T.ArrayType(T.DoubleType(), True), False),
        T.StructField("statuses", T.ArrayType(T.StringType(), True), False),
        # What the call cost when it was made.
        T.StructField("prompt_tokens", T.IntegerType(), False),
        T.StructField("generated_tokens", T.IntegerType(), False),
        # The model's display name, for people reading the table.
        T.StructField("model", T.StringType(), False),
        # When the row was added.
        T.StructField("created_at", T.TimestampType(), False),
    ]
)
SCORE_CACHE_KEY = ("scoring_digest", "query_digest", "group_digest")


def validate_score_cache(df: DataFrame, ref: str) -> DataFrame:
    """The cache with its columns checked (every column required); raises ``SchemaError``
    naming each column that is missing or mistyped."""
    return check_columns(df, SCORE_CACHE, set(SCORE_CACHE.fieldNames()), f"score cache {ref}")
