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
    LATE_EMBEDDINGS,
    MAXSIM_KEY,
    MAXSIM_STORE,
    MAXSIM_SUFFIX,
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


def distinct_texts(scoreable: DataFrame, late: bool = False) -> DataFrame:
    """Every distinct document and query text of the rows to score (``EMBEDDING_TEXTS``); with
    ``late`` (a head that reads MaxSim), each with the distinct queries it is a candidate for
    (``LATE_TEXTS``)."""
    none = F.array().cast("array<string>")
    docs = scoreable.select(F.sha2("text", 256).alias("text_digest"), F.col("text"),
                            *([F.array("query").alias("queries")] if late else []))
    queries = scoreable.select(F.sha2("query", 256).alias("text_digest"),
                               F.col("query").alias("text"),
                               *([none.alias("queries")] if late else []))
    texts = docs.unionByName(queries)
    if not late:
        return texts.dropDuplicates(["text_digest"])
    return texts.groupBy("text_digest").agg(
        F.first("text").alias("text"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("queries")))).alias("queries"),
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
    """Embeds every row of ``texts`` in its own Spark stage (lazy): ``EMBEDDINGS`` rows, or
    ``LATE_EMBEDDINGS`` for ``LATE_TEXTS`` (``distinct_texts(..., late=True)``)."""
    schema = LATE_EMBEDDINGS if "queries" in texts.columns else EMBEDDINGS
    return texts.repartition(partitions, "text_digest").mapInPandas(
        embed_texts_udf(settings, ref), schema
    )


def attach_embeddings(scoreable: DataFrame, vectors: DataFrame) -> DataFrame:
    """Adds each row's document ``vector`` and ``query_vector`` (every text must have one) and,
    where ``vectors`` carry MaxSims (``LATE_EMBEDDINGS``), the row's ``late`` (null where the
    embedding stage did not give it, e.g. a text read from the store)."""
    docs = vectors.select(F.col("text_digest").alias("_doc"), F.col("vector"))
    queries = vectors.select(F.col("text_digest").alias("_query"), F.col("vector").alias("query_vector"))
    out = (
        scoreable.withColumn("_doc", F.sha2("text", 256))
        .withColumn("_query", F.sha2("query", 256))
        .join(docs, "_doc")
        .join(queries, "_query")
    )
    if "late_scores" in vectors.columns:
        pairs = _maxsim_pairs(vectors).select(F.col("text_digest").alias("_doc"),
                                              F.col("query_digest").alias("_query"),
                                              F.col("maxsim").alias("late"))
        out = out.join(pairs, ["_doc", "_query"], "left")
    return out.drop("_doc", "_query")


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


def maxsim_key(settings: RerankSettings, ref: ModelRef) -> dict[str, object]:
    """The MaxSim table's key columns: the store's, with ``max_tokens`` the tokens MaxSim reads
    of a document over all its windows (``late_windows``), so MaxSims over one window and over
    several are never mixed; one window keeps the store's own."""
    # Each window is the limit's tokens less its own [CLS] and [SEP]: one window is the limit.
    tokens = 2 + (ref.encoder.max_tokens - 2) * ref.encoder.late_windows
    return {**store_key(settings, ref), "max_tokens": tokens}


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
    encoded_now: list[DataFrame] = []  # the last attempt's encoder output, persisted
    try:
        needed = texts.count()

        def missing_vectors() -> DataFrame:
            existing = _stored_digests(spark, store, key)
            missing = texts if existing is None else texts.join(existing, "text_digest", "left_anti")
            for earlier in encoded_now:
                earlier.unpersist()
            encoded_now[:] = [embed_texts(missing, settings, ref, partitions).persist()]
            return _store_rows(encoded_now[0], key, ref)

        encoded = insert_new_rows(spark, store, missing_vectors, EMBEDDING_STORE, STORE_KEY,
                                  "embedding store")
        vectors = (
            _filtered(read_store(spark, store), key)
            .join(texts.select("text_digest"), "text_digest", "left_semi")
            .select(*EMBEDDINGS.fieldNames())
        )
        report = EmbeddingReport(texts=needed, encoded=encoded)
        if "queries" in texts.columns:
            vectors = _with_late(spark, store, texts, vectors,
                                 encoded_now[0] if encoded else None, settings, ref, partitions)
    finally:
        texts.unpersist()
        for frame in encoded_now:
            frame.unpersist()
    log.info("embedding store %s: %d distinct texts, %d encoded now, %d reused", store,
             report.texts, report.encoded, report.reused)
    return vectors, report


def maxsim_store_ref(store: str) -> str:
    """The MaxSim table kept beside the embedding store ``store`` (a path or a table name)."""
    return store.rstrip("/") + MAXSIM_SUFFIX


def _with_late(
    spark: SparkSession, store: str, texts: DataFrame, vectors: DataFrame,
    encoded: DataFrame | None, settings: RerankSettings, ref: ModelRef, partitions: int,
) -> DataFrame:
    """``vectors`` as ``LATE_EMBEDDINGS`` rows, every (text, query) pair of ``texts``
    (``LATE_TEXTS``) with its MaxSim, through the MaxSim table beside the store: pairs found
    there are reused; the texts ``encoded`` now brought theirs from the same encoder pass; only
    a stored text's pairs with a query new to it are encoded again (that text, those queries).
    The table gains every new pair by the same insert-only MERGE as the store."""
    table, key = maxsim_store_ref(store), maxsim_key(settings, ref)
    pair = ["query_digest", "text_digest"]
    needed = texts.select("text_digest", "text", F.explode("queries").alias("query")).withColumn(
        "query_digest", F.sha2("query", 256))
    fresh = None if encoded is None else _maxsim_pairs(encoded)

    def missing_pairs() -> DataFrame:
        todo = needed.select(*pair)
        stored = read_table_if_exists(spark, table, "--embedding-store")
        if stored is not None:
            stored = _filtered(validate_store(stored, table, MAXSIM_STORE, "MaxSim table"), key)
            todo = todo.join(stored.select(*pair), pair, "left_anti")
        new = None if fresh is None else fresh.join(todo, pair, "left_semi")
        rest = todo if fresh is None else todo.join(fresh.select(*pair), pair, "left_anti")
        again = needed.join(rest, pair, "left_semi").groupBy("text_digest").agg(
            F.first("text").alias("text"),
            F.array_sort(F.collect_set("query")).alias("queries"))
        recomputed = _maxsim_pairs(embed_texts(again, settings, ref, partitions))
        new = recomputed if new is None else new.unionByName(recomputed)
        return new.select(
            *[F.lit(v).cast(MAXSIM_STORE[k].dataType).alias(k) for k, v in
              {"encoder": ref.encoder.name, **key}.items()],
            *pair, F.col("maxsim").cast("float").alias("maxsim"),
            F.current_timestamp().alias("created_at"),
        ).select(*MAXSIM_STORE.fieldNames())

    added = insert_new_rows(spark, table, missing_pairs, MAXSIM_STORE, MAXSIM_KEY, "MaxSim table")
    log.info("MaxSim table %s: %d new (query, text) pairs", table, added)
    stored = read_table_if_exists(spark, table, "--embedding-store")
    if stored is None:  # no pair at all: nothing was ever added
        stored = spark.createDataFrame([], MAXSIM_STORE)
    late = (
        _filtered(stored, key)
        .join(needed.select(*pair), pair, "left_semi")
        .groupBy("text_digest")
        .agg(F.sort_array(F.collect_list(F.struct(*pair[:1], "maxsim"))).alias("_p"))
        .select("text_digest",
                F.transform("_p", lambda p: p["query_digest"]).alias("late_queries"),
                F.transform("_p", lambda p: p["maxsim"]).alias("late_scores"))
    )
    empty = F.array().cast
    return vectors.join(late, "text_digest", "left").select(
        "text_digest", "vector",
        F.coalesce("late_queries", empty("array<string>")).alias("late_queries"),
        F.coalesce("late_scores", empty("array<float>")).alias("late_scores"),
    )


def _maxsim_pairs(late_embeddings: DataFrame) -> DataFrame:
    """``LATE_EMBEDDINGS`` rows -> one (query_digest, text_digest, maxsim) row per pair."""
    return late_embeddings.select(
        "text_digest", F.explode(F.arrays_zip("late_queries", "late_scores")).alias("_p")
    ).select(F.col("_p.late_queries").alias("query_digest"), "text_digest",
             F.col("_p.late_scores").alias("maxsim"))


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
