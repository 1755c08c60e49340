"""The group score cache (``--score-cache``, LLM backbones): a group the model has read before,
with the same query and document texts in the same order, under the same weights, prompt and
scoring settings, takes its scores from the cache; only the other groups reach the model.

    scores, report = score_with_cache(spark, "search.score_cache", groups, settings, ref, 8)

The seeded group assignment gives a query whose candidates did not change the same groups
every night, so a nightly run sends the model only the queries whose lists changed. Groups with
a document the model left without a usable score are not cached: the next run asks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from grouprank.models import ModelRef
from grouprank.prompts import template_for
from grouprank.settings import RerankSettings
from jobs.tables import insert_new_rows, read_table_if_exists
from schemas.reranked import GROUP_SCORES
from schemas.score_cache import SCORE_CACHE, SCORE_CACHE_KEY, validate_score_cache

log = logging.getLogger(__name__)
_GROUP = ["qid", "repeat", "group"]


@dataclass(frozen=True)
class ScoreCacheReport:
    """Groups of the run, how many the model scored now, and how many came from the cache."""

    groups: int
    scored: int

    @property
    def reused(self) -> int:
        return self.groups - self.scored


def check_score_cache(ref: ModelRef) -> None:
    """``--score-cache`` is for models that read whole groups as text (causal LMs)."""
    if ref.precomputed_embeddings:
        raise ValueError(f"--score-cache is for LLM models; {ref.name} is a group encoder, "
                         "whose work --embedding-store already keeps")


def scoring_digest(settings: RerankSettings, ref: ModelRef) -> str:
    """The cache key's first part for these weights, this prompt and these scoring settings."""
    return settings.scoring_digest(template_for(settings).source_text, ref.digest)


def with_group_keys(groups: DataFrame) -> DataFrame:
    """``SCORING_GROUPS`` rows plus ``query_digest`` and ``group_digest`` (sha256 of the query,
    and of the ordered document-text digests)."""
    text_digests = F.transform("texts", lambda t: F.sha2(t, 256))
    return groups.withColumn("query_digest", F.sha2("query", 256)).withColumn(
        "group_digest", F.sha2(F.concat_ws(",", text_digests), 256)
    )


def cached_scores(keyed: DataFrame, cache: DataFrame) -> DataFrame:
    """``GROUP_SCORES`` rows of the keyed groups the cache holds (``cache`` already filtered to
    one scoring digest): their cached scores, and no tokens spent or worker used this run."""
    stored = cache.select("query_digest", "group_digest", F.col("scores").alias("cached_scores"),
                          F.col("statuses").alias("cached_statuses"))
    hits = keyed.select(*_GROUP, "docids", "query_digest", "group_digest").join(
        stored, ["query_digest", "group_digest"])
    exploded = hits.select(
        *_GROUP, F.explode(F.arrays_zip("docids", "cached_scores", "cached_statuses")).alias("d")
    )
    columns = {
        "docid": F.col("d.docids"), "model_score": F.col("d.cached_scores"),
        "status": F.col("d.cached_statuses"),
        "prompt_tokens": F.lit(0), "generated_tokens": F.lit(0), "worker_pid": F.lit(0),
        "worker_model_loads": F.lit(0), "worker_peak_rss_mb": F.lit(0),
    }
    return exploded.select(
        *[(F.col(f.name) if f.name in _GROUP else columns[f.name]).cast(f.dataType).alias(f.name)
          for f in GROUP_SCORES.fields]
    )


def cache_rows(keyed: DataFrame, scores: DataFrame, digest: str, model: str) -> DataFrame:
    """``SCORE_CACHE`` rows of the groups in ``scores`` whose every document got a usable score:
    the scores in the group's document order, one row per key."""
    members = keyed.select(*_GROUP, "query_digest", "group_digest",
                           F.posexplode("docids").alias("pos", "docid"))
    per_group = (
        members.join(scores, [*_GROUP, "docid"])
        .groupBy(*_GROUP, "query_digest", "group_digest")
        .agg(
            F.sort_array(F.collect_list(F.struct("pos", "model_score", "status"))).alias("m"),
            F.first("prompt_tokens").alias("prompt_tokens"),
            F.first("generated_tokens").alias("generated_tokens"),
            F.max(F.col("model_score").isNull().cast("int")).alias("unscored"),
        )
        .where(F.col("unscored") == 0)
        .dropDuplicates(["query_digest", "group_digest"])
    )
    columns = {
        "scoring_digest": F.lit(digest),
        "query_digest": F.col("query_digest"),
        "group_digest": F.col("group_digest"),
        "scores": F.transform("m", lambda x: x["model_score"]),
        "statuses": F.transform("m", lambda x: x["status"]),
        "prompt_tokens": F.col("prompt_tokens"),
        "generated_tokens": F.col("generated_tokens"),
        "model": F.lit(model),
        "created_at": F.current_timestamp(),
    }
    return per_group.select(
        *[columns[f.name].cast(f.dataType).alias(f.name) for f in SCORE_CACHE.fields]
    )


def read_score_cache(spark: SparkSession, ref: str) -> DataFrame | None:
    """The cache, or None if it does not exist yet; fails on a wrong schema (before any work)."""
    df = read_table_if_exists(spark, ref, "--score-cache")
    return None if df is None else validate_score_cache(df, ref)


def score_with_cache(
    spark: SparkSession, table: str, groups: DataFrame, settings: RerankSettings, ref: ModelRef,
    partitions: int,
) -> tuple[DataFrame, ScoreCacheReport]:
    """Scores ``SCORING_GROUPS`` rows through the cache: groups it holds take its scores, the
    others go to the model, and their usable scores are added to it (insert-only MERGE).

    Returns every group's ``GROUP_SCORES`` rows (persisted: the caller unpersists) and a
    report. A job killed before the MERGE commits leaves the cache as it was; its rerun scores
    those groups again and adds them once.
    """
    from jobs.stages.rerank import score_groups

    check_score_cache(ref)
    digest = scoring_digest(settings, ref)
    existing = read_score_cache(spark, table)
    known = None if existing is None else existing.where(F.col("scoring_digest") == digest)
    keyed = with_group_keys(groups).persist()
    misses = keyed if known is None else keyed.join(
        known.select("query_digest", "group_digest"), ["query_digest", "group_digest"],
        "left_anti")
    new = score_groups(misses.drop("query_digest", "group_digest"), settings, ref,
                       partitions).persist()
    try:
        scored = new.select(*_GROUP).distinct().count()
        insert_new_rows(spark, table, lambda: _not_cached(spark, table, digest,
                                                          cache_rows(keyed, new, digest, ref.name)),
                        SCORE_CACHE, SCORE_CACHE_KEY, "score cache")
        hits = (cached_scores(keyed, known) if known is not None
                else spark.createDataFrame([], GROUP_SCORES))
        every = new.unionByName(hits).persist()
        report = ScoreCacheReport(groups=keyed.count(), scored=scored)
        every.count()
    finally:
        keyed.unpersist()
        new.unpersist()
    log.info("score cache %s: %d groups, %d scored now, %d reused", table, report.groups,
             report.scored, report.reused)
    return every, report


def _not_cached(spark: SparkSession, table: str, digest: str, rows: DataFrame) -> DataFrame:
    """``rows`` less the keys the cache holds now (another job may have added them)."""
    current = read_score_cache(spark, table)
    if current is None:
        return rows
    held = current.where(F.col("scoring_digest") == digest).select("query_digest", "group_digest")
    return rows.join(held, ["query_digest", "group_digest"], "left_anti")
