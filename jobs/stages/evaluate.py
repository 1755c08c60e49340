"""Score a run against qrels in Spark and write the metrics Delta table for (run date, name).

    grouprank evaluate --run RUN --qrels QRELS --output METRICS --run-date 2026-11-27 \\
        [--name NAME] [--metrics ndcg@10,recall@10,recall@100,mrr@10,map] \\
        [--denominator qrels|run] [--queries QUERIES] [--baseline NAME] [--test randomisation] \\
        [--calibration-bins 10]
    spark-submit jobs/evaluate.py <same flags>

RUN is a reranked or candidates table (path or name; a table with a ``run_date`` column is read
for ``--run-date`` only), a TREC run file, or a rank_llm JSONL file;
QRELS a qrels table or a TREC qrels file. The output holds one row per (run_date, name, qid,
metric) and a mean row per metric with qid ``all``; a rerun replaces the same (run_date, name).
With ``--calibration-bins N`` (a run with ``model_score``), ``all`` rows ``Calibration@binB``
(share of relevant documents among those scored in bin B of N over 0-10), ``Documents@binB``
and ``ECE`` (expected calibration error) show which ``--min-score`` a serving index can trust.

DataFrame -> DataFrame transforms of the evaluate job; no I/O, so notebooks and tests call
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
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank import formats
from grouprank.metrics import (
    MODEL_SCORE_MAX,
    RELEVANCE_LEVEL,
    CalibrationBin,
    Comparison,
    Metric,
    compare_runs,
    deepest_cutoff,
    expected_calibration_error,
    parse_metrics,
)
from jobs.configs import EvaluateJob
from jobs.session import get_session
from jobs.tables import (
    check_table_ref,
    local_file,
    parse_run_date,
    read_local_lines,
    read_table,
    write_delta,
)
from schemas.candidates import CANDIDATES
from schemas.metrics import ALL_QUERIES, JUDGED_RANKINGS, METRICS, QUERY_METRICS, validate_metrics
from schemas.qrels import QRELS, validate_qrels
from schemas.queries import QUERIES
from schemas.validation import SchemaError, check_columns, check_rows
from udfs.metrics import query_metrics_udf

log = logging.getLogger(__name__)


Denominator = Literal["qrels", "run"]




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


# Names go into the replaceWhere predicate, so they are limited to characters that cannot end it.
_NAME = re.compile(r"^[\w.+@:/ -]{1,200}$")


def check(job: EvaluateJob) -> None:
    """Fails on bad flags before any Spark work: the date, metrics, name, bins and tables."""
    parse_run_date(job.run_date)
    parse_metrics(job.metrics)
    name = job.name or _default_name(job.run)
    if not _NAME.match(name):
        raise ValueError(f"--name {name!r} may hold only letters, digits, spaces and ._+@:/-")
    if not 0 <= job.calibration_bins <= 100:
        raise ValueError(f"--calibration-bins must be between 0 and 100, got "
                         f"{job.calibration_bins}")
    for ref, flag in ((job.run, "--run"), (job.qrels, "--qrels"), (job.output, "--output")):
        check_table_ref(ref, flag)
    for ref, flag in ((job.queries, "--queries"), (job.baseline and job.output, "--output")):
        if ref:
            check_table_ref(ref, flag)


def run(job: EvaluateJob) -> dict:
    """Runs the job and returns its summary; raises before any Spark work on bad flags."""
    started = time.time()
    check(job)
    run_date = parse_run_date(job.run_date)
    metrics = parse_metrics(job.metrics)
    name = job.name or _default_name(job.run)
    spark = get_session("grouprank-evaluate")
    raw_run = read_run(spark, job.run)
    if "run_date" in raw_run.columns:  # a reranked table holds every night's run: take this one
        raw_run = raw_run.where(F.col("run_date") == F.lit(run_date))
    run_df = check_run(raw_run)
    qrels = check_qrels(read_qrels(spark, job.qrels))
    if job.queries:
        run_df = remove_excluded(run_df, read_table(spark, job.queries, "--queries"))
    unjudged = unjudged_queries(run_df, qrels)
    if unjudged:
        log.warning("%d queries of the run have no judgements and are not evaluated", unjudged)
    table = evaluate_run(run_df, qrels, metrics, run_date, name, job.denominator)
    if job.calibration_bins:
        table = table.unionByName(_calibration(spark, job, raw_run, qrels, run_date, name))
    table = table.persist()
    try:
        predicate = f"run_date = DATE'{run_date.isoformat()}' AND name = '{name}'"
        write_delta(table, job.output, replace_where=predicate, partition_by=("run_date",))
        means = {r["metric"]: (r["value"], r["num_queries"])
                 for r in table.where(F.col("qid") == ALL_QUERIES).collect()}
        comparisons = (_compare(spark, job, name, table, [str(m) for m in metrics])
                       if job.baseline else [])
    finally:
        table.unpersist()
    summary = {
        "job": "evaluate",
        "run_date": job.run_date,
        "name": name,
        "output": job.output,
        "denominator": job.denominator,
        "unjudged_queries_skipped": unjudged,
        "means": {str(m): means[str(m)][0] for m in metrics if str(m) in means},
        "num_queries": next((means[str(m)][1] for m in metrics if str(m) in means), 0),
        "baseline": job.baseline,
        "comparisons": [asdict(c) for c in comparisons],
        "seconds": round(time.time() - started, 1),
    }
    if job.calibration_bins:
        summary["calibration"] = {m: v for m, (v, _) in sorted(means.items())
                                  if m == "ECE" or m.startswith("Calibration@")}
    return summary


def read_run(spark: SparkSession, ref: str) -> DataFrame:
    """Reads a run: a TREC run file or rank_llm JSON(L) file by path, else a table."""
    path = Path(ref)
    if not path.is_file():
        return read_table(spark, ref, "--run")
    if path.name.endswith((".json", ".jsonl", ".jsonl.gz")):
        frame = formats.read_rank_llm(local_file(ref, "--run"))[["qid", "docid", "score"]]
        return spark.createDataFrame(frame, "qid string, docid string, score double")
    lines = _parsed_lines(spark, path, "--run", formats.TREC_RUN_LINE.pattern,
                          formats.read_trec_run)
    return lines.select(
        F.col("_1").alias("qid"), F.col("_3").alias("docid"),
        F.col("_5").cast("double").alias("score"),
    )


def read_qrels(spark: SparkSession, ref: str) -> DataFrame:
    """Reads qrels: a TREC qrels file by path, else a table."""
    path = Path(ref)
    if not path.is_file():
        return read_table(spark, ref, "--qrels")
    lines = _parsed_lines(spark, path, "--qrels", formats.TREC_QRELS_LINE.pattern,
                          formats.read_trec_qrels)
    return lines.select(
        F.col("_1").alias("qid"), F.col("_3").alias("docid"),
        F.col("_4").cast(QRELS["relevance"].dataType).alias("relevance"),
    )


def _parsed_lines(
    spark: SparkSession, path: Path, flag: str, pattern: str, parse_locally
) -> DataFrame:
    """Splits a local text file's lines with ``pattern`` in Spark (columns _1, _2, ...); the
    file is read on the driver, the only machine that has it. On a line that does not match,
    the pure-Python parser rereads the file to name the line in its error."""
    lines = read_local_lines(spark, str(path), flag).where(F.trim("value") != "")
    if lines.where(~F.col("value").rlike(pattern)).limit(1).count():
        parse_locally(path)  # raises FormatError with the file and line
        raise SchemaError(f"{path}: lines that do not match {pattern!r}")
    groups = re.compile(pattern).groups
    return lines.select(
        *[F.regexp_extract("value", pattern, i).alias(f"_{i}") for i in range(1, groups + 1)]
    )


def _calibration(
    spark: SparkSession, job: EvaluateJob, run: DataFrame, qrels: DataFrame,
    run_date: dt.date, name: str,
) -> DataFrame:
    if "model_score" not in run.columns:
        raise ValueError(f"--calibration-bins needs a run with a model_score column (a reranked "
                         f"table); {job.run} has {', '.join(run.columns)}")
    if job.queries:
        run = remove_excluded(run, read_table(spark, job.queries, "--queries"))
    bins, queries = calibration_bins(run, qrels, job.calibration_bins)
    return calibration_rows(spark, bins, queries, run_date, name)


def _default_name(ref: str) -> str:
    return Path(ref.rstrip("/")).name or ref


def _compare(
    spark: SparkSession, job: EvaluateJob, name: str, table: DataFrame, metrics: list[str]
) -> list[Comparison]:
    stored = validate_metrics(read_table(spark, job.output, "--output"))
    baseline = stored.where(
        (F.col("run_date") == F.lit(parse_run_date(job.run_date)))
        & (F.col("name") == job.baseline) & (F.col("qid") != ALL_QUERIES)
    )
    values: dict[tuple[str, str], dict[str, float]] = {}
    this_run = table.where(F.col("qid") != ALL_QUERIES)
    for source, frame in (("baseline", baseline), ("run", this_run)):
        for r in frame.select("metric", "qid", "value").collect():
            values.setdefault((source, r["metric"]), {})[r["qid"]] = r["value"]
    missing = [m for m in metrics if ("baseline", m) not in values]
    if missing:
        raise ValueError(
            f"--baseline {job.baseline!r} has no {missing} rows for run date {job.run_date} in "
            f"{job.output}; evaluate it first"
        )
    return [compare_runs(m, values[("run", m)], values[("baseline", m)], job.test)
            for m in metrics]


def headline(summary: dict) -> str:
    """The means as a table, then the comparison with the baseline."""
    lines = [f"{summary['name']} ({summary['run_date']}), {summary['num_queries']} queries, "
             f"denominator {summary['denominator']}:"]
    for metric, value in summary["means"].items():
        lines.append(f"  {metric:<12} {value:.4f}")
    if "calibration" in summary:
        lines.append(f"  {'ECE':<12} {summary['calibration']['ECE']:.4f}  (calibration of "
                     f"model_score, {len(summary['calibration']) - 1} bins with documents)")
    comparisons = summary["comparisons"]
    if comparisons:
        lines.append(f"vs {summary['baseline']}:  metric        diff     wins/ties/losses  "
                     f"p ({comparisons[0]['test']})")
        for c in comparisons:
            lines.append(f"  {c['metric']:<12} {c['mean_difference']:+.4f}  "
                         f"{c['wins']:>4}/{c['ties']}/{c['losses']:<6}       {c['p_value']:.4g}")
    return "\n".join(lines)

