"""BRIGHT: nDCG@10 of the ReasonIR-8B top-100 runs, per subset, through the evaluate job.

    .venv/bin/python bench/eval_bright.py [--data ../shared/data/bright] [--work /tmp/bright]
        [--subsets biology,leetcode] [--no-exclusions]

Each subset's queries table (with ``excluded_ids`` from the original BRIGHT example rows) is
written to Delta, then ``grouprank evaluate`` scores the TREC run file against the TREC qrels
(the original gold_ids, not Anserini's ``.fixed`` ones), dropping excluded ids as BRIGHT's own
evaluation does. Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from grouprank.formats import read_bright_examples
from jobs.stages import evaluate
from jobs.session import get_session
from jobs.tables import write_delta
from schemas.queries import QUERIES, validate_queries

SUBSETS = ("biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow",
           "sustainable_living", "leetcode", "pony", "aops", "theoremqa_questions",
           "theoremqa_theorems")


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(root.parent / "shared" / "data" / "bright"))
    parser.add_argument("--work", default="/tmp/grouprank-bench-bright")
    parser.add_argument("--subsets", default=",".join(SUBSETS))
    parser.add_argument("--no-exclusions", action="store_true")
    args = parser.parse_args()
    data, work = Path(args.data), Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    spark = get_session("grouprank-bench-bright")
    rows = []
    for subset in args.subsets.split(","):
        dashed = subset.replace("_", "-")
        queries_ref = None
        if not args.no_exclusions:
            queries, _ = read_bright_examples(
                data / "topics" / f"topics.bright-{dashed}-original.jsonl.gz")
            queries_ref = str(work / subset / "queries")
            write_delta(validate_queries(spark.createDataFrame(queries, QUERIES)), queries_ref)
        started = time.time()
        summary = evaluate.run(evaluate.EvaluateJob(
            run=str(data / "runs_reasonir_top100" / f"{subset}.reasonir_gpt4cot_top100.txt"),
            qrels=str(data / "qrels" / f"qrels.bright-{dashed}.txt"),
            output=str(work / "metrics"), run_date="2026-01-01", name=subset,
            metrics="ndcg@10", queries=queries_ref))
        rows.append((subset, summary["means"]["nDCG@10"], summary["num_queries"],
                     round(time.time() - started, 1)))
    print("\n| subset | queries | nDCG@10 | evaluate s |")
    print("| --- | --- | --- | --- |")
    for subset, value, queries, seconds in rows:
        print(f"| {subset} | {queries} | {100 * value:.1f} | {seconds} |")
    print(f"| mean of {len(rows)} | | {100 * sum(r[1] for r in rows) / len(rows):.1f} | |")


if __name__ == "__main__":
    main()
