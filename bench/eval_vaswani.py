"""Vaswani first-stage benchmark: ingest, BM25 / dense / hybrid top-100, evaluate; one session.

    .venv/bin/python bench/eval_vaswani.py [--data ../shared/data/vaswani] [--work /tmp/vaswani]

Runs exactly the jobs' ``run`` functions (``grouprank ingest``, ``retrieve``, ``evaluate``) in
one Spark session and prints nDCG@10, Recall@100 and MRR@10 per method with the wall time of
each retrieval, as a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from jobs.stages import evaluate, ingest, retrieve

METRICS = "ndcg@10,recall@100,mrr@10"
RUN_DATE = "2026-01-01"


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(root.parent / "shared" / "data" / "vaswani"))
    parser.add_argument("--work", default="/tmp/grouprank-bench-vaswani")
    parser.add_argument("--methods", default="bm25,dense,hybrid")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    tables = ingest.table_refs(str(work))
    ingest.run(ingest.IngestJob(format="trec", source=args.data, output=str(work)))
    rows = []
    for method in args.methods.split(","):
        out = f"{work}/candidates_{method}"
        took = retrieve.run(retrieve.RetrieveJob(corpus=tables["corpus"], queries=tables["queries"],
                                                 output=out, method=method, top_k=100))
        scored = evaluate.run(evaluate.EvaluateJob(
            run=out, qrels=tables["qrels"], output=f"{work}/metrics", run_date=RUN_DATE,
            name=method, metrics=METRICS))
        rows.append((method, scored["means"], took["index_seconds"], took["seconds"]))
    print("\n| method | nDCG@10 | Recall@100 | MRR@10 | index s | retrieve total s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, means, index_s, total_s in rows:
        print(f"| {method} | {means['nDCG@10']:.4f} | {means['Recall@100']:.4f} | "
              f"{means['MRR@10']:.4f} | {index_s} | {total_s} |")


if __name__ == "__main__":
    main()
