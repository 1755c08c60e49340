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
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from grouprank import formats
from grouprank.metrics import Comparison, compare_runs, parse_metrics
from jobs.entry import print_summary, run_job
from jobs.eval_transforms import (
    calibration_bins,
    calibration_rows,
    check_qrels,
    check_run,
    evaluate_run,
    remove_excluded,
    unjudged_queries,
)
from jobs.session import get_session
from jobs.tables import (
    check_table_ref,
    local_file,
    parse_run_date,
    read_local_lines,
    read_table,
    write_delta,
)
from schemas.metrics import ALL_QUERIES, validate_metrics
from schemas.qrels import QRELS
from schemas.validation import SchemaError

log = logging.getLogger("grouprank.evaluate")

# Names go into the replaceWhere predicate, so they are limited to characters that cannot end it.
_NAME = re.compile(r"^[\w.+@:/ -]{1,200}$")


@dataclass(frozen=True)
class EvaluateJob:
    """What to score, against what, and where the metrics go."""

    # Run: a reranked or candidates table (path or name), a TREC run file or a rank_llm JSONL file.
    run: str
    # Qrels: a qrels table (path or name) or a TREC qrels file.
    qrels: str
    # Output metrics Delta table (path or name); the (run date, name) rows are replaced.
    output: str
    # Run date (YYYY-MM-DD) of the evaluated run.
    run_date: str
    # Name stored with the metrics; defaults to the run's file or table name.
    name: str | None = None
    # Comma-separated metrics: ndcg@k, recall@k, p@k, mrr@k, map[@k].
    metrics: str = "ndcg@10,recall@10,recall@100,mrr@10,map"
    # Averaging denominator: every judged query (trec_eval -c) or only judged queries in the run.
    denominator: Literal["qrels", "run"] = "qrels"
    # Queries table whose excluded_ids are dropped from the run before scoring (BRIGHT).
    queries: str | None = None
    # Name of a run already in the output table (same run date) to compare this one with.
    baseline: str | None = None
    # Paired significance test of the comparison with --baseline.
    test: Literal["randomisation", "t-test"] = "randomisation"
    # Model-score bins of the calibration rows (share relevant per bin, ECE); 0: none. Needs a
    # run with model_score (a reranked table).
    calibration_bins: int = 0


def run(job: EvaluateJob) -> dict:
    """Runs the job and returns its summary; raises before any Spark work on bad flags."""
    started = time.time()
    run_date = parse_run_date(job.run_date)
    metrics = parse_metrics(job.metrics)
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
        "comparisons": [asdict(c) for c in comparisons],
        "seconds": round(time.time() - started, 1),
    }
    if job.calibration_bins:
        summary["calibration"] = {m: v for m, (v, _) in sorted(means.items())
                                  if m == "ECE" or m.startswith("Calibration@")}
    print_means(summary, comparisons, job.baseline)
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


def print_means(summary: dict, comparisons: list[Comparison], baseline: str | None) -> None:
    """Prints the means as a table, the comparison with the baseline, and the JSON summary."""
    lines = [f"{summary['name']} ({summary['run_date']}), {summary['num_queries']} queries, "
             f"denominator {summary['denominator']}:"]
    for metric, value in summary["means"].items():
        lines.append(f"  {metric:<12} {value:.4f}")
    if "calibration" in summary:
        lines.append(f"  {'ECE':<12} {summary['calibration']['ECE']:.4f}  (calibration of "
                     f"model_score, {len(summary['calibration']) - 1} bins with documents)")
    if comparisons:
        lines.append(f"vs {baseline}:  metric        diff     wins/ties/losses  "
                     f"p ({comparisons[0].test})")
        for c in comparisons:
            lines.append(f"  {c.metric:<12} {c.mean_difference:+.4f}  "
                         f"{c.wins:>4}/{c.ties}/{c.losses:<6}       {c.p_value:.4g}")
    print_summary("\n".join(lines), summary)


def main(argv: list[str] | None = None) -> int:
    return run_job("evaluate", EvaluateJob, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
