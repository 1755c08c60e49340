"""Synthesize groupwise training samples from a candidates table, without relevance labels.

    grouprank synthesize --candidates CANDIDATES --output SAMPLES --run-date 2026-11-27 \\
        [--pointwise-teacher encoder] [--listwise-teacher first-stage] [--pool-size 50] \\
        [--pool-top 10] [--pool-depth 200] [--beta 0.5] [--group-sizes 5-20] \\
        [--samples-per-query 4] [--rl-fraction 0.2] [--seed 0]
    spark-submit jobs/synthesize.py <same flags>

Teacher SPECs: first-stage | encoder[:DIR] | llm:MODEL:groupwise|pointwise|listwise[:SCORER].
The offline defaults are the all-MiniLM-L6-v2 cosine (pointwise) and the first-stage ranking
(listwise): measured in docs/BENCHMARKS.md, the zero-shot SmolLM2-135M ranks below them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass

from pyspark.sql import functions as F

from grouprank.models import check_model
from grouprank.settings import RerankSettings
from grouprank.synthesis import SynthesisSettings
from grouprank.teachers import LLM, parse_teacher
from jobs.entry import run_job
from jobs.session import get_session
from jobs.synth_transforms import synthesize
from jobs.tables import check_table_ref, parse_run_date, read_table, write_run_date_partition
from jobs.transforms import check_candidates

log = logging.getLogger("grouprank.synthesize")


@dataclass(frozen=True)
class SynthesizeJob:
    """Where the synthesis job reads and writes, and who labels the pools."""

    # Candidates table: a Delta or Parquet path, or a metastore table name.
    candidates: str
    # Output samples Delta table (path or name); the run date's partition is replaced.
    output: str
    # Run date (YYYY-MM-DD) written to the run_date partition column.
    run_date: str
    # Pointwise teacher SPEC: first-stage | encoder[:DIR] | llm:MODEL:PARADIGM[:SCORER].
    pointwise_teacher: str = "encoder"
    # Listwise teacher SPEC (same forms).
    listwise_teacher: str = "first-stage"
    # Causal LM whose chat template formats the SFT prompts ('smollm2' = the embedded one).
    chat_model: str = "smollm2"
    # Documents are cut to this many tokens in the SFT prompts, as at inference.
    max_doc_tokens: int = 256
    # Partitions of query rows fed to the teachers; 0 = Spark's default parallelism.
    partitions: int = 0


def run(job: SynthesizeJob, settings: SynthesisSettings) -> dict:
    """Runs the job and returns its summary; bad flags and tables fail before any model work."""
    started = time.time()
    run_date = parse_run_date(job.run_date)
    check_table_ref(job.candidates, "--candidates")
    check_table_ref(job.output, "--output")
    pointwise = parse_teacher(job.pointwise_teacher)
    listwise = parse_teacher(job.listwise_teacher)
    for spec in (pointwise, listwise):
        if spec.kind == LLM:
            check_model(spec.model)
    check_model(job.chat_model)

    spark = get_session("grouprank-synthesize")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "32")
    candidates, report = check_candidates(
        read_table(spark, job.candidates, "--candidates"), RerankSettings(model=job.chat_model)
    )
    samples = synthesize(
        candidates, settings, pointwise, listwise, run_date, job.chat_model,
        job.max_doc_tokens, job.partitions or None,
    ).persist()
    try:
        stats = samples.groupBy("split").agg(
            F.count(F.lit(1)).alias("samples"), F.countDistinct("qid").alias("queries")
        ).collect()
        unscored = samples.groupBy("qid").agg(F.max("teacher_unscored").alias("u")).agg(
            F.sum("u")
        ).first()[0]
        write_run_date_partition(samples, job.output, run_date)
    finally:
        samples.unpersist()
    seconds = time.time() - started
    pools = sum(r["queries"] for r in stats)
    summary = {
        "job": "synthesize",
        "run_date": job.run_date,
        "output": job.output,
        "candidate_rows": report.rows,
        "queries_in": report.queries,
        "pools": pools,
        "samples": {r["split"]: r["samples"] for r in stats},
        "teacher_unscored_documents": int(unscored or 0),
        "teachers": {"pointwise": pointwise.id, "listwise": listwise.id},
        "seconds": round(seconds, 1),
        "pools_per_minute": round(60 * pools / seconds, 1) if seconds else None,
        "settings": asdict(settings),
    }
    print(
        f"synthesized {sum(summary['samples'].values())} samples from {pools} pools "
        f"({summary['samples']}) into {job.output} in {summary['seconds']} s"
    )
    print("summary: " + json.dumps(summary, sort_keys=True, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("synthesize", SynthesizeJob, run, argv, __doc__, settings=SynthesisSettings)


if __name__ == "__main__":
    sys.exit(main())
