"""Synthesize groupwise training samples from a candidates table, without relevance labels.

    grouprank synthesize --candidates CANDIDATES --output SAMPLES --run-date 2026-11-27 \\
        [--pointwise-teacher encoder] [--listwise-teacher first-stage] [--pool-size 50] \\
        [--pool-top 10] [--pool-depth 200] [--beta 0.5] [--group-sizes 5-20] \\
        [--samples-per-query 4] [--rl-fraction 0.2] [--seed 0] [--embedding-store STORE]
    spark-submit jobs/synthesize.py <same flags>

Teacher SPECs: first-stage | encoder[:DIR] | llm:MODEL:groupwise|pointwise|listwise[:SCORER].
The offline defaults are the all-MiniLM-L6-v2 cosine (pointwise) and the first-stage ranking
(listwise): measured in docs/BENCHMARKS.md, the zero-shot SmolLM2-135M ranks below them.

DataFrame transforms of the synthesis job (no I/O): candidates in, training samples out.

    samples = synthesize(checked_candidates, settings, pointwise, listwise, run_date)
    # with an embedding store: the encoder teacher reads its vectors from it
    vectors, report = pool_vectors(spark, STORE, checked_candidates, settings, ref, partitions,
                                   store_precision(spark))
    samples = synthesize(..., vectors=vectors)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank.models import EMBEDDED_LLM, ModelRef, check_model, model_ref
from grouprank.settings import PRECISIONS, SynthesisSettings
from grouprank.teachers import ENCODER, LLM, TeacherSpec, encoder_ref, parse_teacher
from jobs.candidates import check_candidates, prepare_candidates
from jobs.configs import SynthesizeJob
from jobs.session import default_parallelism, get_session
from jobs.tables import check_table_ref, parse_run_date, read_table, write_run_date_partition
from schemas.samples import POOL_SOURCES, SAMPLES
from udfs.synthesis import synthesize_udf

log = logging.getLogger("grouprank.synthesize")


def pool_rows(candidates: DataFrame, settings: SynthesisSettings) -> DataFrame:
    """The candidates a pool can draw from: scoreable ones, each query's first ``pool_depth``
    by first-stage rank, with their position ``pos``.

    Candidates with a blank query or text cannot be judged by a teacher and are left out.
    """
    usable = prepare_candidates(candidates).where(F.col("skip").isNull())
    order = Window.partitionBy("qid").orderBy("first_stage_rank", "docid")
    return usable.withColumn("pos", F.row_number().over(order)).where(
        F.col("pos") <= settings.pool_depth
    )


def pool_sources(
    candidates: DataFrame, settings: SynthesisSettings, vectors: DataFrame | None = None
) -> DataFrame:
    """One row per query (``POOL_SOURCES``): its ``pool_rows`` in first-stage order.

    With ``vectors`` (``EMBEDDINGS`` rows of every pool text and query: ``pool_vectors``) each
    row also carries its ``query_vector`` and its documents' ``vectors``, aligned with docids.
    """
    ranked = pool_rows(candidates, settings)
    fields = ["pos", "docid", "text", "score", "first_stage_rank"]
    if vectors is not None:
        docs = vectors.select(F.col("text_digest").alias("_doc"), "vector")
        ranked = ranked.withColumn("_doc", F.sha2("text", 256)).join(docs, "_doc", "left")
        fields.append("vector")
    members = F.sort_array(F.collect_list(F.struct(*fields)))
    pools = (
        ranked.groupBy("qid")
        .agg(F.first("query").alias("query"), members.alias("m"))
        .select(
            "qid",
            "query",
            F.transform("m", lambda x: x["docid"]).alias("docids"),
            F.transform("m", lambda x: x["text"]).alias("texts"),
            F.transform("m", lambda x: x["score"]).alias("scores"),
            F.transform("m", lambda x: x["first_stage_rank"]).alias("ranks"),
            *([F.transform("m", lambda x: x["vector"]).alias("vectors")]
              if vectors is not None else []),
        )
    )
    if vectors is None:
        return pools.select(*POOL_SOURCES.fieldNames())
    queries = vectors.select(F.col("text_digest").alias("_query"),
                             F.col("vector").alias("query_vector"))
    return pools.withColumn("_query", F.sha2("query", 256)).join(queries, "_query", "left").select(
        *POOL_SOURCES.fieldNames(), "query_vector", "vectors"
    )


def pool_vectors(
    spark, store: str, candidates: DataFrame, settings: SynthesisSettings, ref: ModelRef,
    partitions: int, precision: str,
):
    """The vectors of every text the pools can hold, through the embedding ``store`` (texts it
    lacks are encoded and added, as rerank does): ``(EMBEDDINGS rows, EmbeddingReport)``.

    The key is rerank's for the same sentence encoder, so one store serves both jobs. Every
    text down to ``pool_depth`` is embedded, not only the ``pool_size`` a pool samples: those are
    the texts a nightly rerank of the same table embeds anyway. ``precision`` is fp32 or bf16
    (``store_precision``).
    """
    from grouprank.settings import RerankSettings
    from jobs.embeddings import distinct_texts, refresh_store

    # The embedding functions read only the precision (and trust_remote_code) of the settings.
    texts = distinct_texts(pool_rows(candidates, settings))
    return refresh_store(spark, store, texts, RerankSettings(precision=precision), ref,
                         partitions)


def store_precision(spark, precision: str = "auto") -> str:
    """The precision the encoder teacher's vectors are stored at: ``precision``, with
    ``auto`` resolved on the driver as rerank resolves it (bf16 on GPUs and CPUs with native
    bf16, else fp32)."""
    from grouprank.settings import RerankSettings
    from jobs.embeddings import driver_precision

    return driver_precision(RerankSettings(precision=precision), spark).precision


def synthesize(
    candidates: DataFrame,
    settings: SynthesisSettings,
    pointwise: TeacherSpec,
    listwise: TeacherSpec,
    run_date: dt.date,
    chat_model: str | ModelRef = EMBEDDED_LLM,
    max_doc_tokens: int = 256,
    partitions: int | None = None,
    vectors: DataFrame | None = None,
    precision: str = "auto",
) -> DataFrame:
    """Builds the samples table (``schemas.SAMPLES``) from a checked candidates table. Lazy.
    ``chat_model`` renders the SFT prompts (a ``--model`` value, resolved here once); with
    ``vectors`` (``pool_vectors``) the encoder teacher scores from them, else it encodes at
    ``precision``."""
    spark = candidates.sparkSession
    partitions = partitions or default_parallelism(spark)
    chat = chat_model if isinstance(chat_model, ModelRef) else model_ref(chat_model)
    udf = synthesize_udf(settings, pointwise, listwise, chat, max_doc_tokens, precision)
    samples_no_date = T.StructType([f for f in SAMPLES.fields if f.name != "run_date"])
    return (
        pool_sources(candidates, settings, vectors)
        .repartition(partitions, "qid")
        .mapInPandas(udf, samples_no_date)
        .withColumn("run_date", F.lit(run_date).cast(T.DateType()))
        .select(*SAMPLES.fieldNames())
    )


def check(job: SynthesizeJob, settings: SynthesisSettings) -> None:
    """Fails on bad flags before any Spark or model work: the date, tables, teachers, models.
    (``settings`` checks itself when it is built.)"""
    parse_run_date(job.run_date)
    if job.precision not in PRECISIONS:
        raise ValueError(f"--precision must be auto, fp32 or bf16, got {job.precision!r}")
    check_table_ref(job.candidates, "--candidates")
    check_table_ref(job.output, "--output")
    pointwise = parse_teacher(job.pointwise_teacher)
    listwise = parse_teacher(job.listwise_teacher)
    for spec in (pointwise, listwise):
        if spec.kind == LLM:
            check_model(spec.model)
    check_model(job.chat_model)
    if job.embedding_store:
        check_table_ref(job.embedding_store, "--embedding-store")
        store_teacher(pointwise, listwise)


def store_teacher(pointwise: TeacherSpec, listwise: TeacherSpec) -> TeacherSpec:
    """The one encoder teacher an ``--embedding-store`` serves; ``ValueError`` if none is, or
    if the two teachers are encoders of different models."""
    encoders = {spec for spec in (pointwise, listwise) if spec.kind == ENCODER}
    if not encoders:
        raise ValueError("--embedding-store needs an encoder teacher (encoder[:DIR]); "
                         f"the teachers are {pointwise.id} and {listwise.id}")
    if len(encoders) > 1:
        raise ValueError("--embedding-store serves one encoder teacher; "
                         f"{pointwise.id} and {listwise.id} are two")
    return encoders.pop()


def run(job: SynthesizeJob, settings: SynthesisSettings) -> dict:
    """Runs the job and returns its summary; bad flags and tables fail before any model work."""
    started = time.time()
    check(job, settings)
    run_date = parse_run_date(job.run_date)
    pointwise = parse_teacher(job.pointwise_teacher)
    listwise = parse_teacher(job.listwise_teacher)
    spark = get_session("grouprank-synthesize")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "32")
    candidates, report = check_candidates(read_table(spark, job.candidates, "--candidates"))
    partitions = job.partitions or default_parallelism(spark)
    vectors = embeddings = None
    if job.embedding_store:
        ref = encoder_ref(store_teacher(pointwise, listwise))
        precision = store_precision(spark, job.precision)
        vectors, found = pool_vectors(spark, job.embedding_store, candidates, settings, ref,
                                      partitions, precision)
        embeddings = {"texts": found.texts, "encoded": found.encoded, "reused": found.reused,
                      "store": job.embedding_store, "precision": precision}
    samples = synthesize(
        candidates, settings, pointwise, listwise, run_date, job.chat_model,
        job.max_doc_tokens, partitions, vectors, job.precision,
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
        **({"embeddings": embeddings} if embeddings else {}),
        "seconds": round(seconds, 1),
        "pools_per_minute": round(60 * pools / seconds, 1) if seconds else None,
        "settings": asdict(settings),
    }
    return summary


def headline(summary: dict) -> str:
    """How many samples from how many pools, per split."""
    return (f"synthesized {sum(summary['samples'].values())} samples from {summary['pools']} "
            f"pools ({summary['samples']}) into {summary['output']} in {summary['seconds']} s")

