"""Publish-job timing: QUERIES x DEPTH reranked rows (default 10,000 x 100 = 1M) to a top-10 index,
then a second night with CHANGED of the queries changed, then that night again.

    .venv/bin/python bench/publish.py [--queries 10000] [--depth 100] [--top-k 10] \\
        [--changed 0.1] [--work /tmp/grouprank-bench-publish]

The two nights are generated in Spark and written to one Delta table first (not timed). In the
second night every changed query's documents move down one rank, so each of its top-k rows gets
a new document: the night changes ``queries x changed x top_k`` rows, and the change data feed of
its commit must hold exactly that many post-images. The third publish (same night) must commit
nothing. Prints wall times, the change-feed count and the Delta versions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from pyspark.sql import functions as F

from jobs.stages import publish
from jobs.session import get_session

NIGHT1, NIGHT2 = "2026-12-01", "2026-12-02"


def _night(spark, queries: int, depth: int, day: str, changed_every: int | None):
    rows = spark.range(queries * depth).select(
        (F.col("id") / depth).cast("long").alias("q"), (F.col("id") % depth).alias("pos"))
    shift = (F.lit(0) if changed_every is None
             else ((F.col("q") % changed_every) == 0).cast("long"))
    return rows.select(
        F.concat(F.lit("q"), F.col("q").cast("string")).alias("qid"),
        F.concat(F.lit("d"), ((F.col("pos") + shift) % depth).cast("string")).alias("docid"),
        (F.col("pos") + 1).cast("int").alias("rank"),
        (F.lit(float(depth)) - F.col("pos")).cast("double").alias("score"),
        (F.lit(10.0) - F.col("pos") * 10.0 / depth).alias("model_score"),
        F.lit("ok").alias("status"),
        F.lit("bench").alias("model"),
        F.lit("sha256:bench").alias("model_digest"),
        F.lit("settings").alias("settings_digest"),
        F.lit(day).cast("date").alias("run_date"),
    )


def _timed(job: publish.PublishJob) -> tuple[float, dict]:
    started = time.time()
    summary = publish.run(job)
    return time.time() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--changed", type=float, default=0.1)
    parser.add_argument("--work", default="/tmp/grouprank-bench-publish")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    spark = get_session("grouprank-bench-publish")
    every = round(1 / args.changed)
    reranked = str(work / "reranked")
    _night(spark, args.queries, args.depth, NIGHT1, None).unionByName(
        _night(spark, args.queries, args.depth, NIGHT2, every)
    ).write.format("delta").partitionBy("run_date").save(reranked)
    index = str(work / "serving")

    def job(day: str) -> publish.PublishJob:
        return publish.PublishJob(index=index, reranked=reranked, run_date=day, top_k=args.top_k)

    first, s1 = _timed(job(NIGHT1))
    second, s2 = _timed(job(NIGHT2))
    feed = (spark.read.format("delta").option("readChangeFeed", "true")
            .option("startingVersion", s2["version_after"])
            .option("endingVersion", s2["version_after"]).load(index))
    post = feed.where("_change_type IN ('insert', 'update_postimage', 'delete')").count()
    third, s3 = _timed(job(NIGHT2))
    changed_queries = len(range(0, args.queries, every))
    result = {
        "reranked_rows_per_night": args.queries * args.depth,
        "top_k": args.top_k,
        "first_publish_s": round(first, 1), "first_changes": s1["changes"],
        "changed_night_s": round(second, 1), "changed_night_changes": s2["changes"],
        "expected_changed_rows": changed_queries * args.top_k,
        "change_feed_rows": post,
        "change_feed_rows_with_preimages": feed.count(),
        "no_change_republish_s": round(third, 1), "republish_outcome": s3["outcome"],
        "versions": [s1["version_after"], s2["version_after"], s3["version_after"]],
    }
    print("\nresult: " + json.dumps(result))
    assert post == result["expected_changed_rows"] == sum(s2["changes"].values()), result
    assert s3["outcome"] == "unchanged" and s3["version_after"] == s2["version_after"], result


if __name__ == "__main__":
    main()
