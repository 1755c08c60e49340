"""The reranked output table, and the intermediate rows that flow through the scoring UDF."""

from __future__ import annotations

from pyspark.sql import types as T

# One row per (query, repeat, group): what the scoring UDF reads.
SCORING_GROUPS = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("repeat", T.IntegerType(), False),
        T.StructField("group", T.IntegerType(), False),
        T.StructField("query", T.StringType(), True),
        T.StructField("docids", T.ArrayType(T.StringType(), False), False),
        T.StructField("texts", T.ArrayType(T.StringType(), True), False),
        # First-stage scores, aligned with docids (read by backbones that use them).
        T.StructField("scores", T.ArrayType(T.DoubleType(), False), False),
        # First-stage ranks (1 = best) within the query's whole list, aligned with docids; absent
        # when the frame was not prepared (``prepare_candidates``).
        T.StructField("ranks", T.ArrayType(T.IntegerType(), False), True),
        # Precomputed embeddings (models with precomputed_embeddings only): the query's, and each
        # document's aligned with docids; absent for other models.
        T.StructField("query_vector", T.ArrayType(T.FloatType(), False), True),
        T.StructField("vectors", T.ArrayType(T.ArrayType(T.FloatType(), False), False), True),
        # The query's feedback vector over its whole list (models with a feedback_top only).
        T.StructField("context_vector", T.ArrayType(T.FloatType(), False), True),
        # How far the query's first stage agrees with the encoder over its whole list (models
        # whose head reads it only): the correlation of log first-stage and log cosine ranks.
        T.StructField("first_stage_agreement", T.DoubleType(), True),
        # Each document's MaxSim with the query, aligned with docids (heads that read it only);
        # null where the embedding stage did not give it (the scorer then computes it).
        T.StructField("lates", T.ArrayType(T.FloatType(), True), True),
    ]
)

# One row per (query, repeat, document): what the scoring UDF returns.
GROUP_SCORES = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("repeat", T.IntegerType(), False),
        T.StructField("group", T.IntegerType(), False),
        T.StructField("docid", T.StringType(), False),
        # 0-10, null when the model's output gave no usable score for this document.
        T.StructField("model_score", T.DoubleType(), True),
        T.StructField("status", T.StringType(), False),
        T.StructField("prompt_tokens", T.IntegerType(), False),
        T.StructField("generated_tokens", T.IntegerType(), False),
        # Diagnostics for the job summary and benchmarks: which Python worker scored the group,
        # how many times that worker has loaded a model, and its peak resident memory.
        T.StructField("worker_pid", T.IntegerType(), False),
        T.StructField("worker_model_loads", T.IntegerType(), False),
        T.StructField("worker_peak_rss_mb", T.IntegerType(), False),
    ]
)

# What the warm-up job returns (jobs.warmup): the models the worker has loaded so far.
WORKER_WARM_UP = T.StructType([T.StructField("loads", T.IntegerType(), False)])

# The job's output, partitioned by run_date; exactly one row per input candidate.
RERANKED = T.StructType(
    [
        T.StructField("qid", T.StringType(), False),
        T.StructField("docid", T.StringType(), False),
        # 1-based rank within the query after reranking; ties broken deterministically.
        T.StructField("rank", T.IntegerType(), False),
        # Final score: fusion of the model score and the normalised first-stage score.
        T.StructField("score", T.DoubleType(), False),
        # Mean 0-10 model score over the repeats that produced one; null if none did.
        T.StructField("model_score", T.DoubleType(), True),
        T.StructField("first_stage_score", T.DoubleType(), False),
        T.StructField("first_stage_rank", T.IntegerType(), False),
        # Per repeat (index = repeat number): the model score (null if unusable) and the group id.
        T.StructField("repeat_scores", T.ArrayType(T.DoubleType(), True), True),
        T.StructField("repeat_groups", T.ArrayType(T.IntegerType(), True), True),
        # One of grouprank.parsing.STATUSES (listed in the README and docs/ARCHITECTURE.md).
        T.StructField("status", T.StringType(), False),
        # The model's display name, and a hash of its weight, tokenizer and config files.
        T.StructField("model", T.StringType(), False),
        T.StructField("model_digest", T.StringType(), False),
        # Hash of every setting, the prompt template's text and the model digest.
        T.StructField("settings_digest", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
    ]
)
