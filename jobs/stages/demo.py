"""Rerank the bundled sample with the embedded default model and print the top of each list.

    grouprank demo [--workdir out/demo] [--top 3] [--verbose]

Writes the sample candidates table (grouprank/data/sample_candidates.jsonl) to Delta, runs the
reranking job on it exactly as ``grouprank rerank`` would, and shows the reranked lists.
"""

from __future__ import annotations

import datetime as dt
import os
from importlib import resources
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame

from grouprank.models import model_ref
from grouprank.settings import RerankSettings
from jobs.configs import DemoJob, RerankJob
from jobs.progress import stage
from jobs.session import TINY_TABLE_CONF, get_session
from jobs.warmup import warm_if_new_session
from jobs.stages import rerank
from jobs.stages.ingest import table_refs
from jobs.tables import read_table, spark_path, write_delta
from schemas.candidates import CANDIDATES
from schemas.corpus import validate_corpus
from schemas.queries import validate_queries

# The walkthrough's tables, each a folder under its work directory.
WALKTHROUGH_TABLES = ("corpus", "queries", "candidates", "reranked", "metrics")


def sample_qrels_path() -> Path:
    """Relevance judgements for the bundled sample (TREC qrels), written for the demo."""
    return Path(str(resources.files("grouprank").joinpath("data/sample_qrels.txt")))


def sample_candidates(spark) -> DataFrame:
    """The bundled sample candidates (JSON lines following ``schemas.CANDIDATES``), read on the
    driver, which alone has the file (executors cannot see it), also from a zipped wheel."""
    with resources.files("grouprank").joinpath("data/sample_candidates.jsonl").open() as handle:
        frame = pd.read_json(handle, lines=True, dtype=False)[CANDIDATES.fieldNames()]
    return spark.createDataFrame(frame, CANDIDATES)


def write_sample(spark, target: str) -> None:
    """Writes the bundled sample as a Delta table at ``target`` (replacing it)."""
    sample_candidates(spark).write.format("delta").mode("overwrite").save(spark_path(target))


def ensure_sample(spark, target: str) -> str:
    """Writes the bundled sample at ``target`` unless a table is already there; returns it."""
    if not (Path(target) / "_delta_log").is_dir():
        write_sample(spark, target)
    return target


def walkthrough_tables(workdir: str) -> dict[str, str]:
    """The walkthrough notebook's tables under ``workdir``, a folder or a database name.

    Example:
        >>> walkthrough_tables("/tmp/w")["reranked"], walkthrough_tables("main.demo")["corpus"]
        ('/tmp/w/reranked', 'main.demo.corpus')
    """
    return table_refs(workdir, WALKTHROUGH_TABLES)


def write_sample_collection(spark, corpus: str, queries: str) -> None:
    """Writes the bundled sample as a collection to retrieve from: its distinct documents as a
    corpus table and its distinct queries as a queries table (each replaced)."""
    sample = sample_candidates(spark)
    write_delta(validate_corpus(sample.select("docid", "text").dropDuplicates(["docid"])), corpus,
                "corpus")
    write_delta(validate_queries(sample.select("qid", "query").dropDuplicates(["qid"])), queries,
                "queries")




def check(job: DemoJob) -> None:
    """Fails on a bad --top before any work."""
    if job.top < 1:
        raise ValueError(f"--top must be >= 1, got {job.top}")


def run(job: DemoJob) -> dict:
    """Writes the sample, reranks it with the default model and prints the top of each list
    (the demo's result, for people); returns a short summary of the reranking."""
    check(job)
    workdir = Path(job.workdir).resolve()
    # One short job in a JVM that exits after it: the JIT's first tier is enough (jobs/session.py).
    os.environ.setdefault("GROUPRANK_QUICK_JIT", "1")
    # 19 rows: cheaper to interpret than to compile, in one partition (jobs/session.py
    # TINY_TABLE_CONF).
    spark = get_session("grouprank-demo", conf=TINY_TABLE_CONF)
    settings = RerankSettings()
    warm_if_new_session(spark, settings, model_ref(settings.model))  # as rerank would, sooner
    candidates, output = str(workdir / "candidates"), str(workdir / "reranked")
    with stage(spark, f"demo: writing the sample to {candidates}"):
        write_sample(spark, candidates)
    run_date = dt.date.today().isoformat()
    summary = rerank.run(RerankJob(candidates, output, run_date), settings)
    reranked = read_table(spark, output).where(f"run_date = DATE'{run_date}'")
    texts = read_table(spark, candidates).select("qid", "docid", "query", "text")
    top = (
        reranked.join(texts, ["qid", "docid"])
        .where(f"rank <= {job.top}")
        .orderBy("qid", "rank")
        .collect()
    )
    model = top[0]["model"] if top else summary["settings"]["model"]
    print(f"Top {job.top} per query, reranked by '{model}' "
          "(the shipped group-encoder head on MiniLM; README has its quality):")
    for row in top:
        if row["rank"] == 1:
            print(f"\n{row['qid']}: {row['query']}")
        model_score = "-" if row["model_score"] is None else f"{row['model_score']:.2f}"
        print(
            f"  {row['rank']}. [{row['docid']}] score {row['score']:.3f} (model {model_score}, "
            f"first stage #{row['first_stage_rank']})  {row['text'][:60]}"
        )
    print()
    return {"job": "demo", "output": output, "model": model,
            **{k: summary[k] for k in ("rows_out", "queries", "seconds", "status_counts")}}


def headline(summary: dict) -> str:
    """The closing line under the lists."""
    return (f"demo: reranked {summary['rows_out']} candidates of {summary['queries']} queries in "
            f"{summary['seconds']} s into {summary['output']} "
            f"(statuses {summary['status_counts']})")
