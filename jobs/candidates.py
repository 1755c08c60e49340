"""The candidates table as every stage that reads it sees it: checked once (``check_candidates``)
and prepared once (``prepare_candidates``: first-stage rank, and why a row cannot be scored).
The rerank and synthesize stages both start here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from grouprank.parsing import EMPTY_QUERY, EMPTY_TEXT
from grouprank.settings import DuplicatePolicy
from schemas.candidates import validate_candidates
from schemas.validation import SchemaError

log = logging.getLogger("grouprank.candidates")

_EXAMPLES = 5


@dataclass(frozen=True)
class InputReport:
    """What ``check_candidates`` found: sizes, and duplicates removed under ``keep-best``."""

    rows: int
    queries: int
    duplicates_removed: int


def check_candidates(
    candidates: DataFrame, on_duplicates: DuplicatePolicy = "error"
) -> tuple[DataFrame, InputReport]:
    """Validates the candidates table before any model work and applies the duplicate policy.

    Raises ``SchemaError`` for missing or mistyped columns, null ids, non-finite first-stage
    scores, and duplicate (qid, docid) rows (with examples) unless ``on_duplicates='keep-best'``
    (``RerankSettings.on_duplicates``),
    which keeps each pair's row with the best first-stage score (ties: lowest rank, then the
    lexically smallest text) and reports how many rows it removed.
    """
    df = validate_candidates(candidates)
    stats = _stats(df)
    problems = []
    if stats["null_qid"]:
        problems.append(f"{stats['null_qid']} rows with null qid")
    if stats["null_docid"]:
        problems.append(f"{stats['null_docid']} rows with null docid")
    if stats["bad_score"]:
        bad = df.where(~_finite(F.col("score"))).select("qid", "docid", "score")
        examples = [tuple(r) for r in bad.limit(_EXAMPLES).collect()]
        problems.append(
            f"{stats['bad_score']} rows whose score is null, NaN or infinite, e.g. {examples}"
        )
    if problems:
        raise SchemaError("candidates table: " + "; ".join(problems))
    if stats["conflicting_queries"]:
        _check_one_query_text(df)
    if not stats["duplicated_pairs"]:
        return df, InputReport(stats["rows"], stats["queries"], 0)
    if on_duplicates == "error":
        dupes = df.groupBy("qid", "docid").count().where(F.col("count") > 1)
        examples = [(r["qid"], r["docid"], r["count"]) for r in dupes.limit(_EXAMPLES).collect()]
        raise SchemaError(
            "candidates table has duplicate (qid, docid) rows, e.g. (qid, docid, copies) "
            f"{examples}; deduplicate it or pass --on-duplicates keep-best"
        )
    best = Window.partitionBy("qid", "docid").orderBy(
        F.col("score").desc(), F.col("rank").asc_nulls_last(), F.col("text").asc_nulls_last()
    )
    df = df.withColumn("_n", F.row_number().over(best)).where("_n = 1").drop("_n")
    removed = stats["rows"] - stats["pairs"]  # one row kept per (qid, docid) pair
    log.warning("removed %d duplicate (qid, docid) rows (kept the best score)", removed)
    return df, InputReport(stats["rows"], stats["queries"], removed)


def _stats(df: DataFrame):
    """Everything the checks count, in one pass over the table (one Spark action): rows,
    queries, distinct (qid, docid) pairs, null ids, bad scores, qids with more than one query
    text and pairs given more than once. Examples are fetched only when a check fails."""
    text = F.when(~_blank(F.col("query")), F.col("query"))
    pairs = df.groupBy("qid", "docid").agg(
        F.count(F.lit(1)).alias("copies"),
        F.sum((~_finite(F.col("score"))).cast("int")).alias("bad_score"),
        F.min(text).alias("first_text"),
        F.max(text).alias("last_text"),
    )
    per_query = pairs.groupBy("qid").agg(
        F.sum("copies").alias("rows"),
        F.count(F.lit(1)).alias("pairs"),
        F.sum(F.when(F.col("docid").isNull(), F.col("copies"))).alias("null_docid"),
        F.sum("bad_score").alias("bad_score"),
        F.sum((F.col("copies") > 1).cast("int")).alias("duplicated_pairs"),
        # Two query texts iff the smallest and the largest non-blank one differ.
        (F.min("first_text") != F.max("last_text")).alias("conflict"),
    )
    stats = per_query.agg(
        F.sum("rows").alias("rows"),
        F.sum("pairs").alias("pairs"),
        F.count("qid").alias("queries"),
        F.sum(F.when(F.col("qid").isNull(), F.col("rows"))).alias("null_qid"),
        F.sum("null_docid").alias("null_docid"),
        F.sum("bad_score").alias("bad_score"),
        F.sum(F.col("conflict").cast("int")).alias("conflicting_queries"),
        F.sum("duplicated_pairs").alias("duplicated_pairs"),
    ).first()
    # An empty table aggregates to nulls.
    return {key: stats[key] or 0 for key in stats.asDict()}


def _check_one_query_text(df: DataFrame) -> None:
    """Raises ``SchemaError`` if a qid carries two different (non-blank) query texts: which one
    the model read would depend on row order."""
    text = F.when(~_blank(F.col("query")), F.col("query"))
    conflicts = (
        df.groupBy("qid")
        .agg(F.countDistinct(text).alias("texts"), F.sort_array(F.collect_set(text)).alias("all"))
        .where(F.col("texts") > 1)
    )
    examples = [
        (r["qid"], [t[:40] for t in r["all"][:2]]) for r in conflicts.limit(_EXAMPLES).collect()
    ]
    if examples:
        raise SchemaError(
            "candidates table has qids with more than one query text, e.g. (qid, texts) "
            f"{examples}; give each qid one query text"
        )


def prepare_candidates(candidates: DataFrame) -> DataFrame:
    """Adds ``first_stage_rank`` (given rank, else by score) and ``skip`` (why not to score)."""
    first_stage_order = Window.partitionBy("qid").orderBy(
        F.col("score").desc(), F.col("docid").asc()
    )
    return candidates.withColumn(
        "first_stage_rank",
        F.coalesce(F.col("rank"), F.row_number().over(first_stage_order)).cast("int"),
    ).withColumn(
        "skip",
        F.when(_blank(F.col("query")), F.lit(EMPTY_QUERY)).when(
            _blank(F.col("text")), F.lit(EMPTY_TEXT)
        ),
    )


def _blank(col: Column) -> Column:
    # Blank = nothing but Unicode white space (tabs, newlines, no-break spaces included).
    return col.isNull() | (F.regexp_replace(col, r"\p{IsWhite_Space}+", "") == "")


def _finite(col: Column) -> Column:
    return col.isNotNull() & ~F.isnan(col) & (F.abs(col) != float("inf"))
