"""Evaluate-job timing on a synthetic run of QUERIES x DEPTH rows (default 10,000 x 100 = 1M).

    .venv/bin/python bench/eval_synthetic.py [--queries 10000] [--depth 100] [--work /tmp/syn]

The run and qrels are generated in Spark (never on the driver) and written to Delta first; then
``grouprank evaluate`` is timed end to end on them (validation, scoring, Delta write, summary).
Also prints the driver JVM's used heap before and after, to show it does not grow with the run.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from pyspark.sql import functions as F

from jobs.stages import evaluate
from jobs.session import get_session


def _driver_heap_mb(spark) -> float:
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
    return (runtime.totalMemory() - runtime.freeMemory()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--work", default="/tmp/grouprank-bench-synthetic")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    spark = get_session("grouprank-bench-synthetic")
    rows = spark.range(args.queries * args.depth).select(
        (F.col("id") % args.queries).cast("string").alias("qid"),
        F.concat(F.lit("d"), (F.col("id") / args.queries).cast("long").cast("string"))
        .alias("docid"),
        F.rand(7).alias("score"),
    )
    rows.write.format("delta").save(str(work / "run"))
    # About 10 judged documents per query, half of them in the run, graded 0-3.
    qrels = spark.range(args.queries * 10).select(
        (F.col("id") % args.queries).cast("string").alias("qid"),
        F.concat(F.lit("d"), ((F.col("id") / args.queries).cast("long") * (args.depth // 5))
                 .cast("string")).alias("docid"),
        (F.rand(11) * 4).cast("int").alias("relevance"),
    )
    qrels.write.format("delta").save(str(work / "qrels"))
    before = _driver_heap_mb(spark)
    started = time.time()
    summary = evaluate.run(evaluate.EvaluateJob(
        run=str(work / "run"), qrels=str(work / "qrels"), output=str(work / "metrics"),
        run_date="2026-01-01", name="synthetic"))
    seconds = time.time() - started
    print(f"\nevaluate on {args.queries * args.depth:,} run rows ({args.queries:,} queries, "
          f"5 metrics): {seconds:.1f} s; driver JVM heap used {before:.0f} MB before, "
          f"{_driver_heap_mb(spark):.0f} MB after; {summary['num_queries']} queries averaged")


if __name__ == "__main__":
    main()
