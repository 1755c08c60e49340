"""The embedding step of rerank and of group-encoder training: each distinct text encoded once,
and, with an embedding store, only texts never encoded before.

For models whose document and query representations do not depend on the rest of the group
(the group encoder: ``ModelRef.precomputed_embeddings``), the 22,500 rows of 225 queries × top-100
over 1,400 abstracts hold only ~1,600 distinct texts. The stage hashes every document and query
text (sha256), embeds the distinct ones in their own Spark stage (spread over every core/GPU),
and joins the vectors back; the scoring UDF then runs only the group head.

    texts = distinct_texts(scoreable)            # or sample_texts(samples, top) for training
    vectors = embed_texts(texts, settings, ref)                       # within the run
    vectors, report = refresh_store(spark, "/data/emb", texts, settings, ref)   # across runs

One store serves rerank and training: its key is the sentence encoder's (``ModelRef.encoder``:
digest and token limit) and the precision, which a group-encoder checkpoint and the
sentence-encoder base it was trained from share.

``refresh_store`` is the only function here that writes: an insert-only MERGE of the texts the
store lacks (atomic: a job killed before its commit leaves the store as it was).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from grouprank.encoding import resolve_precision
from grouprank.models import ModelRef
from grouprank.settings import RerankSettings
from jobs.tables import insert_new_rows, read_table_if_exists
from schemas.embeddings import (
    CONTEXT_INPUT,
    EMBEDDING_STORE,
    EMBEDDINGS,
    QUERY_CONTEXT,
    STORE_KEY,
    validate_store,
)
from udfs.context import query_context_udf
from udfs.embedding import embed_texts_udf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingReport:
    """What the embedding step did: distinct texts needed, and how many were encoded now."""

    texts: int
    encoded: int

    @property
    def reused(self) -> int:
        return self.texts - self.encoded


def driver_precision(settings: RerankSettings, spark: SparkSession) -> RerankSettings:
    """``settings`` with ``precision="auto"`` resolved once, on the driver, for the whole job.

    Workers then all encode at the same precision, and the settings digest and the store key
    record the choice. GPU jobs (``spark.task.resource.gpu.amount`` set) get bf16.
    """
    if settings.precision != "auto":
        return settings
    gpu = spark.conf.get("spark.task.resource.gpu.amount", None)
    chosen = resolve_precision("auto", "cuda" if gpu else "cpu")
    return dataclasses.replace(settings, precision=chosen)


def distinct_texts(scoreable: DataFrame) -> DataFrame:
    """Every distinct document and query text of the rows to score (``EMBEDDING_TEXTS``)."""
    docs = scoreable.select(F.sha2("text", 256).alias("text_digest"), F.col("text"))
    queries = scoreable.select(F.sha2("query", 256).alias("text_digest"), F.col("query"))
    return docs.unionByName(queries.withColumnRenamed("query", "text")).dropDuplicates(
        ["text_digest"]
    )


def sample_texts(samples: DataFrame, feedback_top: int) -> DataFrame:
    """Every distinct text a group-encoder trainer embeds for ``samples`` (``EMBEDDING_TEXTS``):
    their queries, their documents and the first ``feedback_top`` of their ``feedback_texts``."""
    texts = [F.array(F.col("query")), F.col("texts")]
    if feedback_top and "feedback_texts" in samples.columns:
        texts.append(F.slice(F.coalesce("feedback_texts", F.array().cast("array<string>")),
                             1, feedback_top))
    return samples.select(F.explode(F.concat(*texts)).alias("text")).select(
        F.sha2("text", 256).alias("text_digest"), F.col("text")
    ).dropDuplicates(["text_digest"])


def embed_texts(
    texts: DataFrame, settings: RerankSettings, ref: ModelRef, partitions: int
) -> DataFrame:
    """Embeds every row of ``texts`` in its own Spark stage (``EMBEDDINGS`` rows; lazy)."""
    return texts.repartition(partitions, "text_digest").mapInPandas(
        embed_texts_udf(settings, ref), EMBEDDINGS
    )


def attach_embeddings(scoreable: DataFrame, vectors: DataFrame) -> DataFrame:
    """Adds each row's document ``vector`` and ``query_vector`` (every text must have one)."""
    docs = vectors.select(F.col("text_digest").alias("_doc"), F.col("vector"))
    queries = vectors.select(F.col("text_digest").alias("_query"), F.col("vector").alias("query_vector"))
    return (
        scoreable.withColumn("_doc", F.sha2("text", 256))
        .withColumn("_query", F.sha2("query", 256))
        .join(docs, "_doc")
        .join(queries, "_query")
        .drop("_doc", "_query")
    )


def attach_context(embedded: DataFrame, feedback_top: int, agreement: bool) -> DataFrame:
    """Adds what the model reads off each row's whole query list: ``context_vector`` (its
    feedback vector, for ``feedback_top`` > 0) and ``first_stage_agreement`` (if ``agreement``),
    as ``query_contexts`` gives them. Rows need ``vector``, ``query_vector`` and
    ``first_stage_rank``."""
    wanted = (["context_vector"] if feedback_top else []) + (
        ["first_stage_agreement"] if agreement else [])
    if not wanted:
        return embedded
    return embedded.join(query_contexts(embedded, feedback_top).select("qid", *wanted), "qid")


def query_contexts(embedded: DataFrame, feedback_top: int = 0) -> DataFrame:
    """``QUERY_CONTEXT`` rows, one per query of ``embedded``: its first-stage agreement with the
    encoder over its whole list and, for ``feedback_top`` > 0, its feedback vector over its
    ``feedback_top`` best documents, both by ``grouprank.list_context`` (the numbers training
    uses), in one grouped pandas UDF (ties by first-stage rank, then docid)."""
    return embedded.select(*CONTEXT_INPUT.fieldNames()).groupBy("qid").applyInPandas(
        query_context_udf(feedback_top), QUERY_CONTEXT
    )


def table_agreement(scoreable: DataFrame, vectors: DataFrame) -> tuple[float | None, int]:
    """The mean ``first_stage_agreement`` over the queries of ``scoreable`` (rows sent to the
    model) where it is defined, and how many those are; ``(None, 0)`` if none. One Spark job
    over the vectors already computed for scoring (``grouprank.fusion``)."""
    row = query_contexts(attach_embeddings(scoreable, vectors)).agg(
        F.avg("first_stage_agreement").alias("mean"),
        F.count("first_stage_agreement").alias("queries"),
    ).first()  # a global aggregate: always one row
    return (None if row["mean"] is None else float(row["mean"])), int(row["queries"])


def store_key(settings: RerankSettings, ref: ModelRef) -> dict[str, object]:
    """The store's key columns (all but ``text_digest``) for this model and precision."""
    if ref.encoder is None:
        raise ValueError(store_refusal(ref))
    if settings.precision == "auto":
        raise ValueError("resolve the precision first (driver_precision)")
    return {
        "encoder_digest": ref.encoder.digest,
        "max_tokens": ref.encoder.max_tokens,
        "precision": settings.precision,
    }


def store_refusal(ref: ModelRef) -> str:
    """The one line for --embedding-store with a model that does not embed texts on their own."""
    return f"--embedding-store needs a group-encoder model; {ref.name} is a {ref.kind}"


def read_store(spark: SparkSession, store: str) -> DataFrame | None:
    """The store as a DataFrame, or None if it does not exist yet; fails on a wrong schema."""
    df = read_table_if_exists(spark, store, "--embedding-store")
    return None if df is None else validate_store(df, store)


def refresh_store(
    spark: SparkSession,
    store: str,
    texts: DataFrame,
    settings: RerankSettings,
    ref: ModelRef,
    partitions: int,
) -> tuple[DataFrame, EmbeddingReport]:
    """Encodes the texts the store lacks, adds them (insert-only MERGE) and returns the vectors
    of every text in ``texts`` read back from the store (``EMBEDDINGS`` rows), with a report.

    Two jobs doing this at once, a rerun, or a job killed before its commit all leave the store
    consistent: the MERGE inserts only keys the store does not hold, Delta commits it atomically,
    and a concurrent-commit conflict is retried against the new snapshot.
    """
    key = store_key(settings, ref)
    texts = texts.persist()
    try:
        needed = texts.count()

        def missing_vectors() -> DataFrame:
            existing = _stored_digests(spark, store, key)
            missing = texts if existing is None else texts.join(existing, "text_digest", "left_anti")
            return _store_rows(embed_texts(missing, settings, ref, partitions), key, ref)

        encoded = insert_new_rows(spark, store, missing_vectors, EMBEDDING_STORE, STORE_KEY,
                                  "embedding store")
        vectors = (
            _filtered(read_store(spark, store), key)
            .join(texts.select("text_digest"), "text_digest", "left_semi")
            .select(*EMBEDDINGS.fieldNames())
        )
        report = EmbeddingReport(texts=needed, encoded=encoded)
    finally:
        texts.unpersist()
    log.info("embedding store %s: %d distinct texts, %d encoded now, %d reused", store,
             report.texts, report.encoded, report.reused)
    return vectors, report


def _filtered(store: DataFrame, key: dict[str, object]) -> DataFrame:
    condition = F.lit(True)
    for name, value in key.items():
        condition = condition & (F.col(name) == F.lit(value))
    return store.where(condition)


def _stored_digests(spark: SparkSession, store: str, key: dict[str, object]) -> DataFrame | None:
    table = read_store(spark, store)
    return None if table is None else _filtered(table, key).select("text_digest")


def _store_rows(vectors: DataFrame, key: dict[str, object], ref: ModelRef) -> DataFrame:
    columns = {
        "encoder": F.lit(ref.encoder.name),
        **{name: F.lit(value) for name, value in key.items()},
        "text_digest": F.col("text_digest"),
        "vector": F.col("vector"),
        "created_at": F.current_timestamp(),
    }
    return vectors.select(
        *[columns[f.name].cast(f.dataType).alias(f.name) for f in EMBEDDING_STORE.fields]
    )
