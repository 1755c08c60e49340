"""DataFrame -> DataFrame transforms of the evaluate job; no I/O, so notebooks and tests call
exactly what ``jobs/evaluate.py`` calls.

    run = check_run(run_df)
    qrels = check_qrels(qrels_df)
    table = evaluate_run(run, qrels, parse_metrics("ndcg@10,map"), run_date, "bm25")

Every step is a Spark job over the DataFrame API (no RDDs, no SparkContext): a run's rows never
pass through the driver; only one row per (query, metric) is collected for the printed summary.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Literal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank.metrics import (
    MODEL_SCORE_MAX,
    RELEVANCE_LEVEL,
    CalibrationBin,
    Metric,
    deepest_cutoff,
    expected_calibration_error,
)
from schemas.candidates import CANDIDATES
from schemas.metrics import ALL_QUERIES, JUDGED_RANKINGS, METRICS, QUERY_METRICS
from schemas.qrels import validate_qrels
from schemas.queries import QUERIES
from schemas.validation import SchemaError, check_columns
from udfs.metrics import query_metrics_udf

log = logging.getLogger(__name__)

Denominator = Literal["qrels", "run"]
_EXAMPLES = 5


def check_run(run: DataFrame) -> DataFrame:
    """Validates a run (a reranked or candidates table: qid, docid, score) and returns those
    three columns; raises ``SchemaError`` on missing or mistyped columns, null ids, non-finite
    scores or duplicate (qid, docid) rows, with examples.

    Example:
        >>> check_run(spark.read.format("delta").load("reranked"))  # doctest: +SKIP
    """
    df = check_columns(run, CANDIDATES, {"qid", "docid", "score"}, "run").select(
        "qid", "docid", "score"
    )
    bad = (
        F.col("qid").isNull() | F.col("docid").isNull() | F.col("score").isNull()
        | F.isnan("score") | (F.abs("score") == float("inf"))
    )
    return check_rows(df, "run", ["qid", "docid"], bad,
                      "rows with a null id or a null, NaN or infinite score")


def check_qrels(qrels: DataFrame) -> DataFrame:
    """Validates a qrels table; raises ``SchemaError`` on null ids or duplicate judgements.

    Example:
        >>> check_qrels(spark.read.format("delta").load("qrels"))  # doctest: +SKIP
    """
    df = validate_qrels(qrels)
    bad = F.col("qid").isNull() | F.col("docid").isNull() | F.col("relevance").isNull()
    return check_rows(df, "qrels", ["qid", "docid"], bad,
                      "rows with a null qid, docid or relevance")


def remove_excluded(run: DataFrame, queries: DataFrame) -> DataFrame:
    """Drops from each query's ranking the documents its ``excluded_ids`` name (BRIGHT).

    Example:
        >>> remove_excluded(run, spark.read.format("delta").load("queries"))  # doctest: +SKIP
    """
    check_columns(queries, QUERIES, {"qid", "excluded_ids"}, "queries")
    excluded = queries.select("qid", F.explode("excluded_ids").alias("docid")).distinct()
    return run.join(F.broadcast(excluded), ["qid", "docid"], "left_anti")


def trec_eval_order() -> Window:
    """Each query's ranking as trec_eval reads it: score descending, ties by docid descending."""
    return Window.partitionBy("qid").orderBy(F.col("score").desc(), F.col("docid").desc())


def judged_rankings(
    run: DataFrame, qrels: DataFrame, depth: int | None, denominator: Denominator
) -> DataFrame:
    """One row per evaluated query following ``schemas.metrics.JUDGED_RANKINGS``.

    Queries the qrels do not judge are dropped, as trec_eval does. With ``denominator='qrels'``
    (trec_eval -c) every judged query is kept, one the run misses scoring 0; with ``'run'`` only
    queries in both. ``depth`` keeps the top of each ranking only (None: all of it).
    """
    if denominator not in ("qrels", "run"):
        raise ValueError(f"denominator must be 'qrels' or 'run', got {denominator!r}")
    ranked = run.withColumn("_pos", F.row_number().over(trec_eval_order()))
    if depth is not None:
        ranked = ranked.where(F.col("_pos") <= depth)
    gains = ranked.join(qrels.select("qid", "docid", "relevance"), ["qid", "docid"], "left")
    per_query = gains.groupBy("qid").agg(
        F.sort_array(
            F.collect_list(F.struct("_pos", F.coalesce("relevance", F.lit(0)).alias("rel")))
        ).alias("_hits")
    )
    judged = qrels.groupBy("qid").agg(F.collect_list("relevance").alias("judged"))
    how = "left" if denominator == "qrels" else "inner"
    return judged.join(per_query, "qid", how).select(
        "qid",
        F.transform("_hits", lambda h: h["rel"]).cast(JUDGED_RANKINGS["ranked"].dataType)
        .alias("ranked"),
        "judged",
    )


def query_metrics(rankings: DataFrame, metrics: Sequence[Metric]) -> DataFrame:
    """Each query's value of each metric, following ``schemas.metrics.QUERY_METRICS``."""
    return rankings.mapInPandas(query_metrics_udf([str(m) for m in metrics]), QUERY_METRICS)


def metrics_table(per_query: DataFrame, run_date: dt.date, name: str) -> DataFrame:
    """Per-query rows plus one mean row per metric with qid ``all``, following
    ``schemas.METRICS``; ``num_queries`` is 1 per query and the denominator on ``all`` rows."""
    means = per_query.groupBy("metric").agg(
        F.lit(ALL_QUERIES).alias("qid"),
        F.avg("value").alias("value"),
        F.count(F.lit(1)).alias("num_queries"),
    )
    rows = per_query.select("qid", "metric", "value", F.lit(1).alias("num_queries")).unionByName(
        means
    )
    return rows.select(
        F.lit(run_date).cast(T.DateType()).alias("run_date"),
        F.lit(name).alias("name"),
        "qid",
        "metric",
        F.col("value").cast("double").alias("value"),
        F.col("num_queries").cast("int").alias("num_queries"),
    ).select(*METRICS.fieldNames())


def evaluate_run(
    run: DataFrame,
    qrels: DataFrame,
    metrics: Sequence[Metric],
    run_date: dt.date,
    name: str,
    denominator: Denominator = "qrels",
) -> DataFrame:
    """Scores a checked run against checked qrels; rows follow ``schemas.METRICS``.

    Example:
        >>> evaluate_run(check_run(run), check_qrels(qrels), parse_metrics("ndcg@10"),
        ...              date(2026, 11, 27), "bm25").show()  # doctest: +SKIP
    """
    rankings = judged_rankings(run, qrels, deepest_cutoff(metrics), denominator)
    return metrics_table(query_metrics(rankings, metrics), run_date, name)


def calibration_bins(
    run: DataFrame, qrels: DataFrame, bins: int
) -> tuple[list[CalibrationBin], int]:
    """The run's documents binned by model score (0-10, ``bins`` equal bins), with each bin's
    mean predicted chance (score / 10) and share of relevant documents, and the number of
    queries behind them; two actions, whose results are one small row per non-empty bin.

    Only queries the qrels judge count; unjudged documents count as not relevant (as in
    trec_eval), and documents without a model score are left out.

    Example:
        >>> calibration_bins(reranked, check_qrels(qrels), 10)[0][0]  # doctest: +SKIP
        CalibrationBin(index=0, documents=912, confidence=0.04, relevant_share=0.01)
    """
    if bins < 1:
        raise ValueError(f"calibration needs at least 1 bin, got {bins}")
    judged = qrels.select("qid").distinct()
    gains = qrels.select("qid", "docid", "relevance")
    scored = (
        run.where(F.col("model_score").isNotNull())
        .join(judged, "qid", "left_semi")
        .join(gains, ["qid", "docid"], "left")
        .withColumn("_confidence", F.col("model_score") / MODEL_SCORE_MAX)
        .withColumn("_bin", F.least(F.greatest(F.floor(F.col("_confidence") * bins), F.lit(0)),
                                    F.lit(bins - 1)).cast("int"))
        .withColumn("_relevant",
                    (F.coalesce("relevance", F.lit(0)) >= RELEVANCE_LEVEL).cast("double"))
    )
    rows = scored.groupBy("_bin").agg(
        F.count(F.lit(1)).alias("documents"),
        F.avg("_confidence").alias("confidence"),
        F.avg("_relevant").alias("share"),
    ).orderBy("_bin").collect()
    queries = scored.select("qid").distinct().count()
    return [CalibrationBin(r["_bin"], r["documents"], r["confidence"], r["share"])
            for r in rows], queries


def calibration_rows(
    spark, bins: list[CalibrationBin], queries: int, run_date: dt.date, name: str
) -> DataFrame:
    """Calibration as metrics rows (``schemas.METRICS``, qid ``all``): ``Calibration@binB`` is
    bin B's share of relevant documents, ``Documents@binB`` its number of documents, and
    ``ECE`` the expected calibration error; ``num_queries`` is the judged queries scored.

    Example:
        >>> calibration_rows(spark, *calibration_bins(run, qrels, 10), day, "nightly")
        ... # doctest: +SKIP
    """
    values = [(f"Calibration@bin{b.index}", b.relevant_share) for b in bins]
    values += [(f"Documents@bin{b.index}", float(b.documents)) for b in bins]
    values.append(("ECE", expected_calibration_error(bins)))
    return spark.createDataFrame(
        [(run_date, name, ALL_QUERIES, metric, float(value), queries)
         for metric, value in values], METRICS,
    )


def unjudged_queries(run: DataFrame, qrels: DataFrame) -> int:
    """How many of the run's queries the qrels do not judge (they are not evaluated)."""
    return run.select("qid").distinct().join(qrels.select("qid").distinct(), "qid",
                                              "left_anti").count()


def check_rows(df: DataFrame, table: str, keys: list[str], bad: Column, what: str) -> DataFrame:
    """Returns ``df`` if no row is ``bad`` and no key repeats; else raises ``SchemaError`` with
    up to five examples of each problem. One Spark job when the table is clean."""
    stats = (
        df.groupBy(*keys)
        .agg(F.count(F.lit(1)).alias("_n"), F.max(bad.cast("int")).alias("_bad"))
        .agg(F.sum((F.col("_n") > 1).cast("int")).alias("dupes"), F.sum("_bad").alias("bad"))
        .first()
    )
    problems = []
    if stats["bad"]:
        problems.append(f"{what}, e.g. {_examples(df.where(bad))}")
    if stats["dupes"]:
        repeats = df.groupBy(*keys).count().where(F.col("count") > 1)
        problems.append(f"{stats['dupes']} repeated ({', '.join(keys)}), e.g. (with copies) "
                        f"{_examples(repeats)}")
    if problems:
        raise SchemaError(f"{table} table has " + "; ".join(problems))
    return df


def _examples(df: DataFrame) -> list[tuple]:
    return [tuple(r) for r in df.limit(_EXAMPLES).collect()]
