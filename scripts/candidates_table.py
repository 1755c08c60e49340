"""Build a candidates Delta table from other candidates tables or from a rank_llm file.

    # union: qids made distinct by a prefix per table (TABLE=PREFIX)
    .venv/bin/python scripts/candidates_table.py union --output out/train/candidates \\
        out/train/scifact-bm25=scifact- out/train/cacm-bm25=cacm-
    # a rank_llm retrieve-results JSON (or JSONL requests) with passage text
    .venv/bin/python scripts/candidates_table.py rank-llm --output out/bench/dl19-bm25 \\
        ../shared/data/trec-dl19-passage/bm25/retrieve_results_dl19_top100.json

The output is validated with ``schemas.candidates`` and replaced as a whole.
"""

from __future__ import annotations

import argparse
import functools
import sys

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from grouprank import formats
from jobs.session import get_session
from jobs.tables import read_table, write_delta
from schemas.candidates import CANDIDATES, validate_candidates


def prefixed_union(tables: list[tuple[DataFrame, str]]) -> DataFrame:
    """The candidates of every table, each qid prefixed with its table's prefix (distinct
    prefixes, none a prefix of another, keep qids from different tables apart)."""
    parts = [validate_candidates(df).withColumn("qid", F.concat(F.lit(prefix), "qid"))
             for df, prefix in tables]
    return functools.reduce(DataFrame.unionByName, parts)


def _parse_sources(values: list[str]) -> list[tuple[str, str]]:
    sources = []
    for value in values:
        table, sep, prefix = value.rpartition("=")
        if not sep or not table or not prefix:
            raise ValueError(f"expected TABLE=PREFIX, got {value!r}")
        sources.append((table, prefix))
    prefixes = [p for _, p in sources]
    if any(a != b and (a.startswith(b) or b.startswith(a)) for a in prefixes for b in prefixes) \
            or len(set(prefixes)) != len(prefixes):
        raise ValueError(f"prefixes must be distinct and none a prefix of another: {prefixes}")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["union", "rank-llm"])
    parser.add_argument("--output", required=True, help="output candidates Delta table (path)")
    parser.add_argument("sources", nargs="+",
                        help="union: TABLE=PREFIX ...; rank-llm: one rank_llm JSON/JSONL file")
    args = parser.parse_args(argv)
    spark = get_session("grouprank-candidates-table")
    if args.mode == "union":
        tables = [(read_table(spark, t, "source"), p) for t, p in _parse_sources(args.sources)]
        result = prefixed_union(tables)
    else:
        if len(args.sources) != 1:
            raise SystemExit("rank-llm takes exactly one file")
        frame = formats.read_rank_llm(args.sources[0])
        result = validate_candidates(spark.createDataFrame(frame[CANDIDATES.fieldNames()],
                                                           CANDIDATES))
    write_delta(result, args.output)
    written = read_table(spark, args.output)
    stats = written.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("qid").alias("q"),
                        F.countDistinct("qid", "docid").alias("pairs")).first()
    if stats["pairs"] != stats["rows"]:
        raise SystemExit(f"{args.output}: duplicate (qid, docid) pairs after {args.mode}")
    print(f"wrote {stats['rows']} candidates for {stats['q']} queries into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
