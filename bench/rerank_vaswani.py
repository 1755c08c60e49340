"""Reranking job benchmark: documents per second, Spark overhead, model loads, memory, NDCG@10.

    .venv/bin/python bench/rerank_vaswani.py --candidates out/bench/vaswani-bm25 \\
        --qrels ../shared/data/vaswani/qrels --max-queries 20 --reason-queries 2 \\
        --out bench/results/rerank_vaswani.json

Steps, on the default model (or ``--model``), direct mode, group size 20:
1. the first ``--max-queries`` queries (by qid) of the candidates table, top 100 each;
2. the groups the job would build, scored in this one process (torch on all cores): the
   reference time;
3. the real reranking job (``jobs.stages.rerank.run``: validation, grouping, the scoring UDF on
   local[2], fusion, ranking, Delta write): the Spark time and its summary (model loads and peak
   memory per Python worker);
4. reason mode on the groups of the first ``--reason-queries`` queries, in this process, with
   ``--reason-model`` (the embedded SmolLM2 by default: the group encoder does not generate);
5. NDCG@10 of the first stage and of the reranked list with the project's evaluate transforms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
from pyspark.sql import functions as F

from grouprank import formats
from grouprank.metrics import parse_metrics
from grouprank.models import load_scorer
from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from jobs.stages.evaluate import check_qrels, check_run, evaluate_run
from jobs.session import get_session
from jobs.tables import read_table
from jobs.stages.rerank import build_groups, check_candidates, prepare_candidates
from udfs.scoring import group_inputs

RUN_DATE = dt.date(2026, 11, 27)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", required=True, help="candidates table (path or name)")
    parser.add_argument("--qrels", help="TREC qrels file for NDCG@10")
    parser.add_argument("--model", default="default")
    parser.add_argument("--max-queries", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--reason-queries", type=int, default=2)
    parser.add_argument(
        "--reason-model", default="smollm2",
        help="causal LM for the reason-mode figures (the default group encoder does not generate)",
    )
    parser.add_argument("--out", default="bench/results/rerank_vaswani.json")
    args = parser.parse_args()

    spark = get_session("bench-rerank", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    settings = RerankSettings(model=args.model, partitions=2)
    work = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    sample = _sample(spark, args.candidates, args.max_queries, args.top_k, str(work / "cand"))
    checked, report = check_candidates(read_table(spark, sample), settings.on_duplicates)
    prepared = prepare_candidates(checked)
    groups = build_groups(prepared.where(F.col("skip").isNull()), settings).toPandas()
    inputs = group_inputs(groups)  # as the scoring UDF builds them
    docs = sum(len(g.texts) for g in inputs)

    # 2. the same groups in one process, on every core
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    scorer = load_scorer(settings)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    direct = [r for i in range(0, len(inputs), 64) for r in scorer.score_groups(inputs[i : i + 64])]
    in_process = time.perf_counter() - started
    in_process_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    # 3. the Spark job
    out = str(work / "reranked")
    job = rerank_job.RerankJob(candidates=sample, output=out, run_date=RUN_DATE.isoformat())
    started = time.perf_counter()
    summary = rerank_job.run(job, settings)
    spark_seconds = time.perf_counter() - started

    # 4. reason mode on a few queries
    reason_qids = sorted(set(groups["qid"]))[: args.reason_queries]
    reason_inputs = [g for g, q in zip(inputs, groups["qid"]) if q in reason_qids]
    reason_scorer = load_scorer(RerankSettings(model=args.reason_model, mode="reason"))
    started = time.perf_counter()
    reason = reason_scorer.score_groups(reason_inputs)
    reason_seconds = time.perf_counter() - started
    reason_docs = sum(len(g.texts) for g in reason_inputs)
    parsed = sum(s == "ok" for r in reason for s in r.statuses)

    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": settings.model,
        "queries": report.queries,
        "documents": docs,
        "groups": len(inputs),
        "direct": {
            "in_process_seconds": round(in_process, 2),
            "docs_per_second_in_process": round(docs / in_process, 2),
            "prompt_tokens_per_group": round(sum(r.prompt_tokens for r in direct) / len(direct), 1),
            "model_load_seconds_in_process": round(load_seconds, 2),
            "in_process_peak_rss_mb": in_process_rss,
        },
        "spark": {
            "job_seconds": round(spark_seconds, 2),
            "docs_per_second": round(docs / spark_seconds, 2),
            "overhead_ratio": round(spark_seconds / in_process, 3),
            "python_workers": summary["scoring"]["python_workers"],
            "model_loads_per_worker": summary["scoring"]["model_loads_per_worker"],
            "peak_worker_rss_mb": summary["scoring"]["peak_worker_rss_mb"],
            "status_counts": summary["status_counts"],
        },
        "reason": {
            "model": args.reason_model,
            "queries": len(reason_qids),
            "documents": reason_docs,
            "seconds": round(reason_seconds, 2),
            "docs_per_second": round(reason_docs / reason_seconds, 3),
            "generated_tokens_per_group": round(
                sum(r.generated_tokens for r in reason) / max(1, len(reason)), 1
            ),
            "parsed_fraction": round(parsed / max(1, reason_docs), 3),
        },
    }
    if args.qrels:
        results["ndcg@10"] = _ndcg(spark, args.qrels, sample, out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def _sample(spark, candidates: str, max_queries: int, top_k: int, target: str) -> str:
    df = read_table(spark, candidates, "--candidates")
    qids = [r["qid"] for r in df.select("qid").distinct().orderBy(F.col("qid").cast("int"), "qid")
            .limit(max_queries).collect()]
    df.where(F.col("qid").isin(qids)).where(F.col("rank") <= top_k).write.format("delta").save(target)
    return target


def _ndcg(spark, qrels_path: str, candidates: str, reranked: str) -> dict[str, float]:
    qrels = check_qrels(spark.createDataFrame(formats.read_trec_qrels(qrels_path)))
    metrics = parse_metrics("ndcg@10")
    runs = {
        "first_stage": read_table(spark, candidates).select("qid", "docid", "score"),
        "reranked": read_table(spark, reranked).select("qid", "docid", "score"),
    }
    values = {}
    for name, run in runs.items():
        # Only the benchmark's queries count (the qrels hold all 93).
        judged = qrels.join(run.select("qid").distinct(), "qid")
        table = evaluate_run(check_run(run), judged, metrics, RUN_DATE, name)
        values[name] = round(table.where("qid = 'all'").first()["value"], 4)
    return values


if __name__ == "__main__":
    main()
