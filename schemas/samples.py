"""The synthesized training samples table, and the per-query pool rows the synthesis UDF reads."""

from __future__ import annotations

from pyspark.sql import types as T

# One row per query: its usable candidates in first-stage order, cut at the pool depth.
POOL_SOURCES = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("query", T.StringType(), False),
        T.StructField("docids", T.ArrayType(T.StringType(), False), False),
        T.StructField("texts", T.ArrayType(T.StringType(), False), False),
        T.StructField("scores", T.ArrayType(T.DoubleType(), False), False),
        # First-stage ranks (1 = best) in the query's whole candidate list, aligned with docids.
        T.StructField("ranks", T.ArrayType(T.IntegerType(), False), False),
    ]
)

# Feedback texts kept per sample.
FEEDBACK_TEXTS = 10

# One row per training sample; the training jobs read these columns.
SAMPLES = T.StructType(
    [
        T.StructField("sample_id", T.StringType(), False),
        T.StructField("qid", T.StringType(), False),
        T.StructField("query", T.StringType(), False),
        # Documents in sample (prompt) order.
        T.StructField("docids", T.ArrayType(T.StringType(), False), False),
        T.StructField("texts", T.ArrayType(T.StringType(), False), False),
        # The first-stage scores of the documents (an input of the group-encoder backbone).
        T.StructField("first_stage_scores", T.ArrayType(T.DoubleType(), False), False),
        # Their first-stage ranks (1 = best) in the query's whole candidate list (also read by
        # the group-encoder backbone: a sample holds only part of the list).
        T.StructField("first_stage_ranks", T.ArrayType(T.IntegerType(), False), False),
        # 0-10 targets and 1-based target ranks (1 = best), aligned with docids.
        T.StructField("target_scores", T.ArrayType(T.DoubleType(), False), False),
        T.StructField("target_ranks", T.ArrayType(T.IntegerType(), False), False),
        T.StructField("group_size", T.IntegerType(), False),
        # sft | rl, decided per query so no query is in both.
        T.StructField("split", T.StringType(), False),
        # Each document's position in the pointwise (L_p) and listwise (L_l) ranking of its pool.
        T.StructField("pointwise_ranks", T.ArrayType(T.IntegerType(), False), False),
        T.StructField("listwise_ranks", T.ArrayType(T.IntegerType(), False), False),
        # The pool's best texts by the fused labels, best first (at most FEEDBACK_TEXTS): the
        # feedback documents a group encoder with a ``context_top`` reads in training.
        T.StructField("feedback_texts", T.ArrayType(T.StringType(), False), False),
        # Documents of the pool a teacher gave no usable score (ranked last, target level 0).
        T.StructField("teacher_unscored", T.IntegerType(), False),
        # JSON: {"pointwise": {"id": ..., "digest": ...}, "listwise": {...}}.
        T.StructField("teachers", T.StringType(), False),
        # The chat-formatted prompt and the completion in the paper's format, ready for SFT.
        T.StructField("prompt", T.StringType(), False),
        T.StructField("completion", T.StringType(), False),
        # sha256 (16 hex digits) of the chat template the prompt was rendered with: LLM training
        # checks it against the base model, so prompts are never in another model's chat format.
        T.StructField("chat_template", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
    ]
)

# What the trainers read; first_stage_scores is optional (the group encoder then runs without
# the first-stage features, as it does at inference when scores are unknown).
TRAINING_REQUIRED = {
    "sample_id", "qid", "query", "texts", "target_scores", "split", "prompt", "completion",
}
