"""Scale run of the reranking job with a tiny random model (so the model is not the bottleneck).

    .venv/bin/python bench/scale.py --rows 10000,30000,100000 --max-doc-tokens 24 --out bench/results/scale.json

For each size, a fresh process writes a synthetic candidates table (100 candidates per query,
~40 words each), runs the real job (local[2], Delta output) and then scores the same groups with
the same model in one process. Reported per size: wall time, rows per second through the job and
in one process, and peak memory of the Python driver, the JVM driver and the Python workers.
``--max-doc-tokens`` cuts each document so that the tiny model's long prompts do not dominate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(rows: int, work: Path, max_doc_tokens: int) -> dict:
    sys.path.insert(0, str(REPO))
    import torch
    from pyspark.sql import functions as F

    from grouprank.backends import GroupInput
    from grouprank.models import load_scorer
    from grouprank.settings import RerankSettings
    from jobs.stages import rerank as rerank_job
    from jobs.session import get_session
    from jobs.stages.rerank import build_groups, check_candidates, prepare_candidates
    from tests.tiny_model import build_tiny_llama

    model = build_tiny_llama(work / "tiny")
    spark = get_session("bench-scale", master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    words = F.concat_ws(" ", F.transform(F.sequence(F.lit(1), F.lit(40)),
                                         lambda i: F.concat(F.lit("w"), ((F.col("id") * 7 + i) % 997).cast("string"))))
    cand = str(work / "candidates")
    (spark.range(rows)
        .select((F.col("id") / 100).cast("long").cast("string").alias("qid"),
                F.lit("a synthetic query").alias("query"),
                F.col("id").cast("string").alias("docid"), words.alias("text"),
                (F.lit(1000.0) - F.col("id") % 100).alias("score"),
                (F.col("id") % 100 + 1).cast("int").alias("rank"))
        .write.format("delta").save(cand))
    settings = RerankSettings(model=str(model), partitions=2, max_doc_tokens=max_doc_tokens)
    started = time.perf_counter()
    summary = rerank_job.run(rerank_job.RerankJob(cand, str(work / "out"), "2026-11-27"), settings)
    job_seconds = time.perf_counter() - started

    checked, _ = check_candidates(spark.read.format("delta").load(cand), settings.on_duplicates)
    prepared = prepare_candidates(checked)
    groups = build_groups(prepared.where(F.col("skip").isNull()), settings).toPandas()
    inputs = [GroupInput(q, tuple(t)) for q, t in zip(groups["query"], groups["texts"])]
    torch.set_num_threads(2)
    scorer = load_scorer(settings)
    started = time.perf_counter()
    for i in range(0, len(inputs), 64):
        scorer.score_groups(inputs[i : i + 64])
    in_process = time.perf_counter() - started
    return {
        "rows": rows,
        "max_doc_tokens": max_doc_tokens,
        "job_seconds": round(job_seconds, 1),
        "job_rows_per_second": round(rows / job_seconds, 1),
        "in_process_scoring_seconds": round(in_process, 1),
        "in_process_rows_per_second": round(rows / in_process, 1),
        "python_driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "jvm_driver_peak_rss_mb": _jvm_peak_mb(),
        "python_worker_peak_rss_mb": summary["scoring"]["peak_worker_rss_mb"],
        "model_loads_per_worker": summary["scoring"]["model_loads_per_worker"],
        "rows_out": summary["rows_out"],
    }


def _jvm_peak_mb() -> int | None:
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split()
            if fields[3] == me and "java" in (stat.parent / "cmdline").read_text():
                for line in (stat.parent / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024
        except (OSError, IndexError):
            continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,30000,100000")
    parser.add_argument("--max-doc-tokens", type=int, default=256)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench/results/scale.json")
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as work:
            print("RESULT " + json.dumps(one(args.one, Path(work), args.max_doc_tokens)))
        return
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--one", str(rows),
                               "--max-doc-tokens", str(args.max_doc_tokens)], cwd=REPO,
                              capture_output=True, text=True, check=True)
        line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
        print(json.dumps(results[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
