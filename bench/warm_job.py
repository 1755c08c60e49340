"""The reranking job's time in a warm session, with the shipped default model.

    .venv/bin/python bench/warm_job.py --queries 100 --docs 100 --runs 3 \
        --out bench/results/warm_job.json
    PYTHONPATH=/tmp/old-tree .venv/bin/python bench/warm_job.py --repo /tmp/old-tree ...

One process, one local[2,4] session (as the tests' shared one): a synthetic candidates table of
``--queries`` x ``--docs`` rows (each document a candidate of about 3 queries, so ~1/3 as many
distinct texts as rows), then ``--runs`` runs of the real job (``jobs.stages.rerank.run``) with
``--embedding-store``: the first fills the store (torch import, model load and every encoding
included); the later ones find every vector there, so what they measure is the job's own Spark
work (validation, the per-query agreement and feedback vector, grouping, the head, fusion, the
Delta write). ``--repo`` (with the same ``PYTHONPATH``) runs another checkout's code, for a
before/after pair on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ["solar panels on roofs", "training a neural network", "baking sourdough bread",
          "the history of rome", "electric car batteries"]
WORDS = ("energy model bread empire battery cell layer oven senate charge solar roof rome "
         "car").split()


def rows(queries: int, docs: int) -> list[tuple]:
    """(qid, query, docid, text, score, rank): document d's text depends on d alone."""
    pool = max(1, queries * docs // 3)
    out = []
    for q in range(queries):
        for i in range(docs):
            d = (q * 37 + i) % pool
            text = f"{TOPICS[d % 5]} " + " ".join(WORDS[(d * k + 3) % 14] for k in range(1, 12))
            out.append((f"q{q}", f"{TOPICS[q % 5]} {WORDS[q % 14]}", f"d{d}", text,
                        float(docs - i), i + 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, args.repo)
    os.environ.setdefault("GROUPRANK_CACHE", str(Path.home() / ".cache" / "grouprank"))
    from grouprank.settings import RerankSettings
    from jobs.session import get_session
    from jobs.stages import rerank as rerank_job
    from schemas import CANDIDATES

    spark = get_session("bench-warm-job", master="local[2,4]", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"})
    spark.sparkContext.setLogLevel("ERROR")
    work = Path(tempfile.mkdtemp(prefix="warm-job-"))
    table = rows(args.queries, args.docs)
    spark.createDataFrame(table, CANDIDATES).write.format("delta").save(str(work / "cand"))
    settings, seconds = RerankSettings(partitions=2, precision="fp32"), []
    for run in range(args.runs):
        started = time.monotonic()
        rerank_job.run(rerank_job.RerankJob(str(work / "cand"), str(work / f"out{run}"),
                                            "2026-11-27", embedding_store=str(work / "store")),
                       settings)
        seconds.append(round(time.monotonic() - started, 2))
        print(f"run {run}: {seconds[-1]} s", flush=True)
    result = {"repo": args.repo, "rows": len(table), "distinct_docs": len({r[2] for r in table}),
              "seconds": seconds, "first_run_fills_the_store": True}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
