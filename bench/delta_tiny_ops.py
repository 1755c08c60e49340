"""Delta Lake's cost per operation on tiny tables in a warm local session, under extra settings.

    .venv/bin/python bench/delta_tiny_ops.py
    .venv/bin/python bench/delta_tiny_ops.py --conf spark.databricks.delta.stats.collect=false

One local[2,4] session as the tests' shared one (jobs.session.TINY_TABLE_CONF) plus ``--conf``,
then ``--rounds`` rounds of the Delta work the tests and the demo do on a few rows: a 24-row
table created, overwritten with a new column, MERGEd into, aggregated and its history read
(``five``), and three insert-only MERGEs through ``jobs.tables.insert_new_rows``, the embedding
store's and the MaxSim table's path (``merges``). Prints each round's seconds and the median of
the rounds after ``--warm-up``, one JSON line. Compare settings in separate processes (PySpark
and Delta read some settings once), alternating them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", action="append", default=[], help="KEY=VALUE, repeatable")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=3)
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.conf)

    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.session import TINY_TABLE_CONF, get_session
    from jobs.tables import insert_new_rows

    spark = get_session("delta-tiny-ops", master="local[2,4]",
                        conf={**TINY_TABLE_CONF, "spark.ui.enabled": "false", **extra})
    spark.sparkContext.setLogLevel("ERROR")
    base = tempfile.mkdtemp(prefix="delta-tiny-")
    rows = [(f"q{q}", f"d{i}", float(i), i) for q in range(4) for i in range(6)]
    frame = spark.createDataFrame(rows, "qid string, docid string, score double, rank int")
    dated = frame.withColumn("run_date", F.lit("2026-11-27"))
    store_schema = spark.createDataFrame([], "k string, v double").schema

    def five(path: str) -> None:
        frame.write.format("delta").save(path)
        dated.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
        source = dated.withColumn("score", F.col("score") + 1)
        (DeltaTable.forPath(spark, path).alias("t")
         .merge(source.alias("s"), "t.qid = s.qid AND t.docid = s.docid")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
        spark.read.format("delta").load(path).groupBy("qid").count().collect()
        spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()

    def merges(path: str) -> None:
        for night in range(3):
            def new_rows(night=night):
                return spark.range(30).select(
                    F.concat(F.lit(f"k{night}-"), F.col("id").cast("string")).alias("k"),
                    F.rand().alias("v"))
            insert_new_rows(spark, path, new_rows, store_schema, ("k",), "bench table")

    report = {"conf": extra}
    for name, work in (("five", five), ("merges", merges)):
        times = []
        for n in range(args.rounds):
            started = time.perf_counter()
            work(f"{base}/{name}{n}")
            times.append(round(time.perf_counter() - started, 3))
        report[name] = {"rounds_s": times,
                        "median_warm_s": round(statistics.median(times[args.warm_up:]), 3)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
