"""Sentence-encoder embeddings: the rows the embedding stage reads and writes, and the store.

The store is a Delta table shared across runs and jobs: one row per (encoder, token limit,
precision, text digest), so a text is encoded once per encoder, ever. It is only appended to,
by an insert-only MERGE on that key, so concurrent jobs, reruns and killed jobs never leave a
duplicate key or a partial row.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from schemas.validation import check_columns

# One row per distinct text to embed (documents and queries alike).
EMBEDDING_TEXTS = T.StructType(
    [
        # sha256 of the exact text (hex).
        T.StructField("text_digest", T.StringType(), False),
        T.StructField("text", T.StringType(), False),
    ]
)

# What the embedding UDF returns: one normalised vector per distinct text.
EMBEDDINGS = T.StructType(
    [
        T.StructField("text_digest", T.StringType(), False),
        T.StructField("vector", T.ArrayType(T.FloatType(), False), False),
    ]
)

# For a head that reads MaxSim (``GroupEncoderConfig.late_interaction``): each distinct text
# with the query texts it is a candidate for (empty for a text that is only a query), so the
# encoder pass that pools the text's vector also gives its MaxSim with each of its queries.
LATE_TEXTS = T.StructType(
    [*EMBEDDING_TEXTS.fields,
     T.StructField("queries", T.ArrayType(T.StringType(), False), False)]
)

# What the embedding UDF returns for LATE_TEXTS: EMBEDDINGS plus the text's MaxSim with each of
# its queries (``grouprank.late_interaction``), aligned lists of the queries' sha256 and scores.
LATE_EMBEDDINGS = T.StructType(
    [*EMBEDDINGS.fields,
     T.StructField("late_queries", T.ArrayType(T.StringType(), False), False),
     T.StructField("late_scores", T.ArrayType(T.FloatType(), False), False)]
)

# What the query-context UDF reads, grouped by qid: each scoreable row's first-stage rank and
# vectors (``jobs.embeddings.attach_embeddings``).
CONTEXT_INPUT = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("docid", T.StringType(), False),
        T.StructField("first_stage_rank", T.IntegerType(), True),
        T.StructField("vector", T.ArrayType(T.FloatType(), False), False),
        T.StructField("query_vector", T.ArrayType(T.FloatType(), False), False),
    ]
)

# What it returns: one row per query, read off its whole list (``grouprank.list_context``).
QUERY_CONTEXT = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        # Pearson correlation of log first-stage and log cosine ranks; null where undefined
        # (fewer than 3 documents, or one side constant).
        T.StructField("first_stage_agreement", T.DoubleType(), True),
        # The feedback vector (models with a feedback_top only; else null).
        T.StructField("context_vector", T.ArrayType(T.FloatType(), False), True),
    ]
)

# The embedding store (--embedding-store).
EMBEDDING_STORE = T.StructType(
    [
        # The encoder's name ("minilm" or its directory), for people reading the table.
        T.StructField("encoder", T.StringType(), False),
        # Hash of the encoder's weight, tokenizer and config files: the identity the key uses.
        T.StructField("encoder_digest", T.StringType(), False),
        # Tokens of each text the encoder read (longer texts were cut).
        T.StructField("max_tokens", T.IntegerType(), False),
        # fp32 or bf16: vectors of different precision are never mixed.
        T.StructField("precision", T.StringType(), False),
        # sha256 of the exact text (hex).
        T.StructField("text_digest", T.StringType(), False),
        T.StructField("vector", T.ArrayType(T.FloatType(), False), False),
        # When the row was added.
        T.StructField("created_at", T.TimestampType(), False),
    ]
)
STORE_KEY = ("encoder_digest", "max_tokens", "precision", "text_digest")

# Beside the embedding store, for heads that read MaxSim (``late_interaction``): one row per
# (encoder, token limit, precision, query, text) pair ever scored, so a nightly run computes
# MaxSim only for pairs it has not seen. Its name is the store's plus ``MAXSIM_SUFFIX``; it is
# only appended to, by the same insert-only MERGE. Its ``max_tokens`` counts every token MaxSim
# read of a document, over all its windows (``GroupEncoderConfig.late_windows``,
# ``jobs.embeddings.maxsim_key``).
MAXSIM_STORE = T.StructType(
    [
        *[EMBEDDING_STORE[name] for name in ("encoder", "encoder_digest", "max_tokens",
                                             "precision")],
        # sha256 of the exact query text (hex).
        T.StructField("query_digest", T.StringType(), False),
        # sha256 of the exact document text (hex).
        T.StructField("text_digest", T.StringType(), False),
        # The document's MaxSim with the query (``grouprank.late_interaction``).
        T.StructField("maxsim", T.FloatType(), False),
        # When the row was added.
        T.StructField("created_at", T.TimestampType(), False),
    ]
)
MAXSIM_KEY = ("encoder_digest", "max_tokens", "precision", "query_digest", "text_digest")
MAXSIM_SUFFIX = "_maxsim"


def validate_store(df: DataFrame, ref: str, schema: T.StructType = EMBEDDING_STORE,
                   what: str = "embedding store") -> DataFrame:
    """The store (or, with ``MAXSIM_STORE``, its MaxSim table) with its columns checked
    (``check_columns``: every column required); raises ``SchemaError`` naming each column that
    is missing or mistyped."""
    return check_columns(df, schema, set(schema.fieldNames()), f"{what} {ref}")
