"""Rerank a candidates table with the groupwise model and write the run date's Delta partition.

    grouprank rerank --candidates PATH_OR_TABLE --output PATH_OR_TABLE --run-date 2026-11-27 \\
        [--model DIR] [--group-size 20] [--repeats 1] [--fusion-weight W] \\
        [--mode direct|reason] [--seed 0] [--paradigm groupwise|pointwise|listwise]
    spark-submit jobs/rerank.py <same flags>
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass

from grouprank.models import model_ref
from grouprank.prompts import template_for
from grouprank.settings import RerankSettings
from jobs.entry import job_parser, run_job
from jobs.session import get_session
from jobs.tables import (
    check_empty_allowed,
    check_table_ref,
    parse_run_date,
    read_table,
    write_run_date_partition,
)
from jobs.embeddings import distinct_texts, driver_precision, embed_texts, refresh_store
from jobs.progress import stage
from jobs.transforms import (
    EMPTY_QUERY,
    EMPTY_TEXT,
    check_candidates,
    default_parallelism,
    prepare_candidates,
    rerank_with_scores,
    scoring_diagnostics,
    status_counts,
)

log = logging.getLogger("grouprank.rerank")


@dataclass(frozen=True)
class RerankJob:
    """Where the reranking job reads and writes."""

    # Candidates table: a Delta or Parquet path, or a metastore table name.
    candidates: str
    # Output Delta table (path or table name); the run date's partition is replaced.
    output: str
    # Run date (YYYY-MM-DD) written to the run_date partition column.
    run_date: str
    # Allow an empty candidates table to replace a run date's non-empty partition (otherwise an
    # error: an upstream failure must not wipe a night's results).
    allow_empty: bool = False
    # Delta table (path or name) of sentence-encoder embeddings shared across runs and jobs
    # (group-encoder models): texts found there are not encoded again, new ones are added.
    embedding_store: str | None = None


class UnparsedOutputError(RuntimeError):
    """Too many documents got no usable model score (see --max-unparsed-fraction)."""


def build_parser() -> argparse.ArgumentParser:
    """The rerank job's argument parser (what ``main`` parses)."""
    return job_parser("rerank", __doc__, RerankJob, RerankSettings)


def run(job: RerankJob, settings: RerankSettings) -> dict:
    """Runs the job and returns its summary; raises before any model work on bad input."""
    started = time.time()
    run_date = parse_run_date(job.run_date)
    check_table_ref(job.candidates, "--candidates")
    check_table_ref(job.output, "--output")
    if job.embedding_store:
        check_table_ref(job.embedding_store, "--embedding-store")
    ref = model_ref(settings.model)
    template_for(settings)

    spark = get_session("grouprank-rerank")
    candidates, report = check_candidates(
        read_table(spark, job.candidates, "--candidates"), settings
    )
    if report.rows == 0:
        check_empty_allowed(spark, job.output, run_date, job.allow_empty, "--candidates")
        log.warning("the candidates table %s is empty: writing an empty partition", job.candidates)
    settings = driver_precision(settings, spark)
    vectors, embedded = _embed(spark, job, settings, ref, candidates)
    result, scored = rerank_with_scores(candidates, settings, run_date, ref=ref, vectors=vectors)
    # Scores are kept (small: no texts) so the summary and the write reuse one model pass.
    scored, result = scored.persist(), result.persist()
    try:
        with stage(spark, f"rerank: scoring {report.rows:,} candidates of {report.queries:,} queries"):
            counts = status_counts(result)
        summary = _summary(job, settings, report, counts)
        summary["model"] = {"name": ref.name, "kind": ref.kind, "digest": ref.digest}
        summary["embeddings"] = embedded
        summary["scoring"] = scoring_diagnostics(scored)
        expected = report.rows - report.duplicates_removed
        if summary["rows_out"] != expected:
            raise RuntimeError(f"rows out {summary['rows_out']} != rows in {expected}; not written")
        if summary["unscored_fraction"] > settings.max_unparsed_fraction:
            raise UnparsedOutputError(
                f"{summary['unscored']} of {summary['sent_to_model']} documents got no usable "
                f"model score ({summary['unscored_fraction']:.1%} > "
                f"--max-unparsed-fraction {settings.max_unparsed_fraction:.1%}); nothing written"
            )
        with stage(spark, f"rerank: writing run_date {run_date} to {job.output}"):
            write_run_date_partition(result, job.output, run_date)
    finally:
        result.unpersist()
        scored.unpersist()
        if vectors is not None:
            vectors.unpersist()
    summary["seconds"] = round(time.time() - started, 1)
    _print_summary(summary)
    return summary


def _embed(
    spark, job: RerankJob, settings: RerankSettings, ref, candidates
) -> tuple[object | None, dict]:
    """Embeds the distinct texts once, before scoring, through the store when one is given.

    Returns the vectors (persisted; None for models that cannot use them) and a summary.
    """
    if not ref.precomputed_embeddings:
        if job.embedding_store:
            raise ValueError(
                f"--embedding-store needs a group-encoder model; {ref.name} is a {ref.kind}"
            )
        return None, {}
    partitions = settings.partitions or default_parallelism(spark)
    texts = distinct_texts(prepare_candidates(candidates).where("skip IS NULL"))
    if job.embedding_store:
        with stage(spark, f"rerank: embedding new texts into {job.embedding_store}"):
            vectors, found = refresh_store(
                spark, job.embedding_store, texts, settings, ref, partitions
            )
            vectors = vectors.persist()
            vectors.count()
        return vectors, {"texts": found.texts, "encoded": found.encoded, "reused": found.reused,
                         "store": job.embedding_store, "precision": settings.precision}
    vectors = embed_texts(texts, settings, ref, partitions).persist()
    with stage(spark, "rerank: embedding each distinct text once"):
        count = vectors.count()
    return vectors, {"texts": count, "encoded": count, "reused": 0, "store": None,
                     "precision": settings.precision}


def _summary(
    job: RerankJob, settings: RerankSettings, report, counts: dict[str, tuple[int, int]]
) -> dict:
    rows_out = sum(rows for rows, _ in counts.values())
    skipped = sum(counts.get(s, (0, 0))[0] for s in (EMPTY_QUERY, EMPTY_TEXT))
    sent = rows_out - skipped
    # Sent to the model but left without a usable score (they fall back to the first stage).
    unscored = sum(u for s, (_, u) in counts.items() if s not in (EMPTY_QUERY, EMPTY_TEXT))
    return {
        "job": "rerank",
        "run_date": job.run_date,
        "output": job.output,
        "rows_in": report.rows,
        "duplicates_removed": report.duplicates_removed,
        "rows_out": rows_out,
        "queries": report.queries,
        "sent_to_model": sent,
        "unscored": unscored,
        "unscored_fraction": unscored / sent if sent else 0.0,
        "status_counts": {s: rows for s, (rows, _) in sorted(counts.items())},
        "settings": asdict(settings),
    }


def _print_summary(summary: dict) -> None:
    print(
        f"reranked {summary['rows_out']} candidates of {summary['queries']} queries "
        f"into {summary['output']} (run_date {summary['run_date']}) in {summary['seconds']} s; "
        f"statuses {summary['status_counts']}"
    )
    print("summary: " + json.dumps(summary, sort_keys=True, default=str))


def main(argv: list[str] | None = None) -> int:
    errors = (ValueError, FileNotFoundError, UnparsedOutputError)
    return run_job("rerank", RerankJob, run, argv, __doc__, settings=RerankSettings, errors=errors)


if __name__ == "__main__":
    sys.exit(main())
