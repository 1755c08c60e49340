"""Rerank a candidates table with the groupwise model and write the run date's Delta partition.

    grouprank rerank --candidates PATH_OR_TABLE --output PATH_OR_TABLE --run-date 2026-11-27 \\
        [--model DIR] [--group-size 20] [--repeats N] [--fusion-weight W] \\
        [--mode direct|reason] [--seed 0] [--paradigm groupwise|pointwise|listwise] \\
        [--embedding-store PATH_OR_TABLE] [--score-cache PATH_OR_TABLE]
    spark-submit jobs/rerank.py <same flags>

The stage: ``check`` (flags), the DataFrame -> DataFrame transforms (no I/O, so notebooks and
tests call exactly what the job calls), ``run`` (read, transform, write) and ``headline``.

    reranked = rerank(check_candidates(candidates, settings.on_duplicates), settings, run_date)

Only the DataFrame API is used (no RDDs, no SparkContext), so the transforms also run under Spark
Connect (Databricks serverless and shared clusters).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, replace

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank.models import ModelRef, fusion_weight_for, model_ref, with_model_repeats
from grouprank.parsing import EMPTY_QUERY, EMPTY_TEXT, OK, PARTIAL
from grouprank.prompts import template_for
from grouprank.settings import RerankSettings
from jobs.candidates import check_candidates, prepare_candidates
from jobs.configs import RerankJob
from jobs.embeddings import (
    distinct_texts,
    driver_precision,
    embed_texts,
    refresh_store,
    store_refusal,
    table_agreement,
)
from jobs.entry import Refused
from jobs.progress import stage
from jobs.score_cache import check_score_cache, score_with_cache
from jobs.session import default_parallelism, get_session, model_partitions
from jobs.tables import (
    check_empty_allowed,
    check_table_ref,
    parse_run_date,
    read_table,
    write_run_date_partition,
)
from jobs.warmup import wait_for_warm_worker, warm_if_new_session
from schemas.reranked import GROUP_SCORES, RERANKED
from udfs.scoring import score_groups_udf

log = logging.getLogger(__name__)


# Group rows per Arrow batch into the scoring UDF.
ARROW_GROUPS = 256




def build_groups(candidates: DataFrame, settings: RerankSettings) -> DataFrame:
    """Splits each query's candidates into disjoint, balanced, reproducible random groups.

    For each repeat r, a query's n candidates are ordered by a seeded hash of (seed, r, qid,
    docid) and dealt round-robin into ceil(n / group_size) groups, so sizes differ by at most one
    (45 at 20 -> 15/15/15) and the same seed gives the same groups on any cluster layout.
    For ``paradigm='listwise'`` the sliding window needs the whole list in first-stage order:
    every candidate goes to group 0, ordered by ``first_stage_rank`` (then docid), which the
    frame must then carry (``prepare_candidates`` adds it).
    Rows that carry embeddings (``vector``, ``query_vector``: see ``jobs.embeddings``) pass them
    on as the group's ``vectors`` and ``query_vector``; rows that carry ``first_stage_rank`` (all
    prepared rows) pass it on as the group's ``ranks``.
    Returns one row per (qid, repeat, group) following ``schemas.SCORING_GROUPS``.
    """
    listwise = settings.paradigm == "listwise"
    settings = with_model_repeats(settings)
    repeats = F.explode(F.sequence(F.lit(0), F.lit(settings.repeats - 1)).cast("array<int>"))
    by_query = Window.partitionBy("qid", "repeat")
    shuffled = by_query.orderBy(
        F.xxhash64(F.lit(settings.seed), "repeat", "qid", "docid"), "docid"
    )
    order = by_query.orderBy("first_stage_rank", "docid") if listwise else shuffled
    dealt = F.lit(0) if listwise else F.col("pos") % F.ceil(F.col("n") / settings.group_size)
    embedded = "vector" in candidates.columns
    feedback = "context_vector" in candidates.columns
    agreement = "first_stage_agreement" in candidates.columns
    late = "late" in candidates.columns
    ranked = "first_stage_rank" in candidates.columns
    columns = ["qid", "query", "docid", "text", "score"] + (
        ["first_stage_rank"] if listwise or ranked else []
    ) + (["vector", "query_vector"] if embedded else []) + (
        ["context_vector"] if feedback else []
    ) + (["first_stage_agreement"] if agreement else []) + (["late"] if late else [])
    member = ["pos", "docid", "text", "score"] + (["first_stage_rank"] if ranked else []) + (
        ["vector"] if embedded else []
    ) + (["late"] if late else [])
    rows = (
        candidates.select(*columns)
        .withColumn("repeat", repeats)
        .withColumn("pos", F.row_number().over(order) - 1)
        .withColumn("n", F.count(F.lit(1)).over(by_query))
        .withColumn("group", dealt.cast("int"))
    )
    return (
        rows.groupBy("qid", "repeat", "group")
        .agg(
            # One text per qid (checked); min() does not depend on row order.
            F.min("query").alias("query"),
            F.sort_array(F.collect_list(F.struct(*member))).alias("members"),
            *([F.first("query_vector").alias("query_vector")] if embedded else []),
            *([F.first("context_vector").alias("context_vector")] if feedback else []),
            *([F.first("first_stage_agreement").alias("first_stage_agreement")]
              if agreement else []),
        )
        .select(
            "qid",
            "repeat",
            "group",
            "query",
            F.transform("members", lambda m: m["docid"]).alias("docids"),
            F.transform("members", lambda m: m["text"]).alias("texts"),
            F.transform("members", lambda m: m["score"]).alias("scores"),
            *([F.transform("members", lambda m: m["first_stage_rank"]).alias("ranks")]
              if ranked else []),
            *(
                [F.col("query_vector"), F.transform("members", lambda m: m["vector"]).alias("vectors")]
                if embedded
                else []
            ),
            *([F.col("context_vector")] if feedback else []),
            *([F.col("first_stage_agreement")] if agreement else []),
            *([F.transform("members", lambda m: m["late"]).alias("lates")] if late else []),
        )
    )


def score_groups(
    groups: DataFrame, settings: RerankSettings, ref: ModelRef, partitions: int
) -> DataFrame:
    """Runs the model on every group row: one output row per (qid, repeat, document).

    The explicit repartition spreads groups over every core or GPU; adaptive execution would
    otherwise coalesce the few, small-looking group rows into one partition. Arrow batches into
    the UDF are kept to 256 group rows (each row carries a whole group's texts; Spark's default
    is 10,000): this sets the session's ``spark.sql.execution.arrow.maxRecordsPerBatch``, so the
    job and a notebook calling ``rerank`` get the same memory profile.
    """
    groups.sparkSession.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_GROUPS))
    return groups.repartition(partitions, "qid", "repeat", "group").mapInPandas(
        score_groups_udf(settings, ref), GROUP_SCORES
    )


def rerank(
    candidates: DataFrame,
    settings: RerankSettings,
    run_date: dt.date,
    partitions: int | None = None,
    vectors: DataFrame | None = None,
) -> DataFrame:
    """Reranks a checked candidates table; returns rows following ``schemas.RERANKED``.

    Lazy: the model runs when the result is written or counted. Rows out == rows in. Candidates
    with a null or blank query or text are not sent to the model: they get model score 0 with
    status ``empty_query`` / ``empty_text``. A document whose every repeat gave no usable score
    keeps ``model_score`` null and its status, and ranks after every scored document of its
    query, in first-stage order (its score is capped at the lowest scored one's). ``vectors``:
    embeddings of every text (e.g. from ``jobs.embeddings.refresh_store``) in place of the run's
    own embedding step; without them the run's embeddings are computed once and kept cached in
    the session (as ``persist()``: memory, then disk).

    Example:
        >>> checked, _ = check_candidates(df)  # doctest: +SKIP
        >>> rerank(checked, RerankSettings(), date(2026, 11, 27)).show()  # doctest: +SKIP
    """
    return rerank_with_scores(candidates, settings, run_date, partitions, vectors=vectors)[0]


def rerank_with_scores(
    candidates: DataFrame,
    settings: RerankSettings,
    run_date: dt.date,
    partitions: int | None = None,
    ref: ModelRef | None = None,
    vectors: DataFrame | None = None,
) -> tuple[DataFrame, DataFrame]:
    """``rerank``, plus the per-(group, document) scores it ranked from (``GROUP_SCORES``), which
    the job persists so its summary and its write share one model pass. ``vectors``
    (``EMBEDDINGS`` rows covering every text) replaces the run's own embedding step."""
    from jobs.embeddings import driver_precision

    ref = ref or model_ref(settings.model)
    settings = driver_precision(with_model_repeats(settings, ref), candidates.sparkSession)
    base = prepare_candidates(candidates)
    if vectors is None and _agreement_sets_weight(settings, ref):
        # The table's agreement needs the vectors before the fusion: embed once, for both.
        partitions = partitions or settings.partitions or default_parallelism(base.sparkSession)
        vectors = _embed_once(_scoreable(base), settings, ref, partitions)
    settings, _ = resolve_fusion(base, vectors, settings, ref)
    scored = score_candidates(base, settings, ref, partitions, vectors)
    return fuse_and_rank(base, scored, settings, ref, run_date), scored


def _scoreable(prepared: DataFrame) -> DataFrame:
    """The prepared rows that go to the model (not skipped for an empty query or text)."""
    return prepared.where(F.col("skip").isNull())


def _embed_once(
    scoreable: DataFrame, settings: RerankSettings, ref: ModelRef, partitions: int
) -> DataFrame:
    """The vectors of the scoreable rows' distinct texts, persisted: they are read by several
    joins (documents, queries, the feedback vector, the agreement), and the encoder would
    otherwise run once per join."""
    texts = distinct_texts(scoreable, late=ref.encoder.late)
    return embed_texts(texts, settings, ref, partitions).persist()


def _agreement_sets_weight(settings: RerankSettings, ref: ModelRef) -> bool:
    return (settings.fusion_weight is None and ref.fusion_rule is not None
            and ref.precomputed_embeddings)


def resolve_fusion(
    prepared: DataFrame, vectors: DataFrame | None, settings: RerankSettings, ref: ModelRef
) -> tuple[RerankSettings, dict]:
    """The settings with the fusion weight this run uses, and how it was set (the summary's
    ``fusion``): ``--fusion-weight`` if given; else, for a model with a fusion rule
    (``ModelRef.fusion_rule``), the weight its rule gives this table's mean first-stage
    agreement with the encoder (``grouprank.fusion``; one Spark job over ``vectors``); else the
    model's own weight."""
    if settings.fusion_weight is not None:
        return settings, {"weight": settings.fusion_weight, "set_by": "--fusion-weight"}
    if not _agreement_sets_weight(settings, ref) or vectors is None:
        return settings, {"weight": ref.fusion_weight, "set_by": "model"}
    started = time.monotonic()
    agreement, queries = table_agreement(_scoreable(prepared), vectors)
    if agreement is None:
        log.warning("no query has 3 or more scoreable candidates: the first stage's agreement "
                    "is undefined, so the model's fusion weight %s is used", ref.fusion_weight)
        return replace(settings, fusion_weight=ref.fusion_weight), {
            "weight": ref.fusion_weight, "set_by": "model (no agreement measurable)"}
    weight = round(ref.fusion_rule.weight(agreement), 4)
    log.info("rerank: the first stage agrees %.3f with the encoder over %d queries: model "
             "weight %.2f in the fusion (%.1f s)", agreement, queries, weight,
             time.monotonic() - started)
    return replace(settings, fusion_weight=weight), {
        "weight": weight, "set_by": "first-stage agreement", "first_stage_agreement": agreement,
        "queries": queries, **ref.fusion_rule.describe()}


def score_candidates(
    prepared: DataFrame,
    settings: RerankSettings,
    ref: ModelRef,
    partitions: int | None = None,
    vectors: DataFrame | None = None,
) -> DataFrame:
    """Groups the scoreable candidates and scores them: ``schemas.GROUP_SCORES`` rows."""
    if partitions is None:
        partitions = settings.partitions or default_parallelism(prepared.sparkSession)
    groups = group_candidates(prepared, settings, ref, partitions, vectors)
    return score_groups(groups, settings, ref, partitions)


def group_candidates(
    prepared: DataFrame,
    settings: RerankSettings,
    ref: ModelRef,
    partitions: int,
    vectors: DataFrame | None = None,
) -> DataFrame:
    """The scoreable candidates as ``SCORING_GROUPS`` rows, ready for the model.

    For models that embed each text on its own (``ref.precomputed_embeddings``), each distinct
    document and query text is embedded once in its own stage (or taken from ``vectors``, e.g.
    read from an embedding store) and the groups carry the vectors to the scoring UDF.
    """
    from jobs.embeddings import attach_context, attach_embeddings

    scoreable = _scoreable(prepared)
    if ref.precomputed_embeddings:
        if vectors is None:
            vectors = _embed_once(scoreable, settings, ref, partitions)
        scoreable = attach_context(attach_embeddings(scoreable, vectors),
                                   ref.encoder.feedback_top, ref.encoder.agreement)
    return build_groups(scoreable, settings)


def rank_prior_column() -> Column:
    """``grouprank.fusion.rank_prior`` in SQL over a table's ``qid`` and ``score``: the first
    stage enters the fusion by its rank, not its score's scale or distribution; tied scores
    share the best rank, a query of one document gets 1."""
    by_query = Window.partitionBy("qid")
    rank = F.rank().over(by_query.orderBy(F.col("score").desc()))
    count = F.count(F.lit(1)).over(by_query)
    return F.when(count > 1, 1.0 - F.log(rank) / F.log(count)).otherwise(F.lit(1.0))


def fuse_and_rank(
    prepared: DataFrame,
    scored: DataFrame,
    settings: RerankSettings,
    ref: ModelRef,
    run_date: dt.date,
) -> DataFrame:
    """Averages repeats, fuses with the first stage and ranks: ``schemas.RERANKED`` rows."""
    settings = with_model_repeats(settings, ref)
    by_query = Window.partitionBy("qid")
    per_doc = scored.groupBy("qid", "docid").agg(
        F.sort_array(F.collect_list(F.struct("repeat", "group", "model_score", "status"))).alias(
            "repeats"
        ),
        F.avg("model_score").alias("model_mean"),
        F.sum((F.col("status") == OK).cast("int")).alias("ok_repeats"),
        F.count("model_score").alias("scored_repeats"),
    )
    joined = prepared.join(per_doc, ["qid", "docid"], "left")
    first_stage_norm = rank_prior_column()
    model_score = F.when(F.col("skip").isNotNull(), F.lit(0.0)).otherwise(F.col("model_mean"))
    status = (
        F.when(F.col("skip").isNotNull(), F.col("skip"))
        .when(F.col("ok_repeats") == settings.repeats, F.lit(OK))
        # Every repeat scored, some with a caveat (truncated, repaired...): keep the caveat.
        .when(
            F.col("scored_repeats") == settings.repeats,
            F.filter("repeats", lambda r: r["status"] != OK)[0]["status"],
        )
        .when(F.col("scored_repeats") > 0, F.lit(PARTIAL))
        .otherwise(F.col("repeats")[0]["status"])
    )
    w = fusion_weight_for(settings, ref)
    # Sent to the model, but no repeat gave a usable score.
    unscored = F.col("skip").isNull() & F.col("model_mean").isNull()
    fused_score = w * F.col("model_score") / 10.0 + (1.0 - w) * F.col("fs_norm")
    # An unscored document must never outrank a scored one (a garbage group's first-stage top
    # document would otherwise get the best score of its query): it ranks after every scored
    # document of its query, in first-stage order, and its score is capped at their lowest.
    lowest_scored = F.min(F.when(~unscored, F.col("fused"))).over(by_query)
    fused = (
        joined.withColumn("fs_norm", first_stage_norm)
        .withColumn("model_score", model_score)
        .withColumn(
            "status",
            F.when(status.isNull(), F.raise_error(F.concat(
                F.lit("no score row came back from the model for (qid, docid) = ("),
                F.col("qid"), F.lit(", "), F.col("docid"), F.lit("); nothing written"),
            ))).otherwise(status),
        )
        .withColumn("unscored", unscored)
        .withColumn("fused", fused_score)
        .withColumn(
            "score_final",
            F.when(
                F.col("unscored"), F.least((1.0 - w) * F.col("fs_norm"), lowest_scored)
            ).otherwise(F.col("fused")),
        )
    )
    ranked = fused.withColumn(
        "new_rank",
        F.row_number().over(
            by_query.orderBy(
                F.col("unscored").asc(),
                F.when(~F.col("unscored"), F.col("score_final")).desc_nulls_last(),
                F.col("first_stage_rank").asc(),
                F.col("docid").asc(),
            )
        ),
    )
    template = template_for(settings)
    return ranked.select(
        "qid",
        "docid",
        F.col("new_rank").cast("int").alias("rank"),
        F.col("score_final").alias("score"),
        "model_score",
        F.col("score").alias("first_stage_score"),
        "first_stage_rank",
        F.transform("repeats", lambda r: r["model_score"]).alias("repeat_scores"),
        F.transform("repeats", lambda r: r["group"]).alias("repeat_groups"),
        "status",
        F.lit(ref.name).alias("model"),
        F.lit(ref.digest).alias("model_digest"),
        F.lit(settings.digest(template.source_text, ref.digest)).alias("settings_digest"),
        F.lit(run_date).cast(T.DateType()).alias("run_date"),
    ).select(*RERANKED.fieldNames())


def scoring_diagnostics(scored: DataFrame) -> dict:
    """Groups, tokens and per-worker model loads and peak memory of a scoring pass (one action:
    per group, then per worker; groups taken from a score cache ran on no worker, pid 0)."""
    per_group = scored.groupBy("qid", "repeat", "group").agg(
        F.first("prompt_tokens").alias("prompt_tokens"),
        F.first("generated_tokens").alias("generated_tokens"),
        F.first("worker_pid").alias("pid"),
        F.max("worker_model_loads").alias("loads"),
        F.max("worker_peak_rss_mb").alias("rss"),
    )
    rows = per_group.groupBy("pid").agg(
        F.count(F.lit(1)).alias("groups"),
        F.sum("prompt_tokens").alias("prompt_tokens"),
        F.sum("generated_tokens").alias("generated_tokens"),
        F.max("loads").alias("loads"),
        F.max("rss").alias("rss"),
    ).collect()
    return _diagnostics(rows)


def _diagnostics(rows: list) -> dict:
    """``scoring_diagnostics`` from its per-worker rows (none: nothing was scored)."""
    workers = [r for r in rows if r["pid"] > 0]
    loads = {r["pid"]: r["loads"] for r in workers}
    return {
        "groups": sum(r["groups"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in rows),
        "generated_tokens": sum(r["generated_tokens"] or 0 for r in rows),
        "python_workers": len(workers),
        "model_loads_per_worker": sorted(loads.values()),
        "model_loads_by_worker": loads,
        "peak_worker_rss_mb": max((r["rss"] for r in workers), default=0),
    }


def status_counts(reranked: DataFrame) -> dict[str, tuple[int, int]]:
    """Rows per status of a reranked table, and how many of them have no model score (an action)."""
    rows = reranked.groupBy("status").agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("model_score").isNull().cast("int")).alias("unscored"),
    )
    return {r["status"]: (r["rows"], r["unscored"]) for r in rows.collect()}


class UnparsedOutputError(Refused):
    """Too many documents got no usable model score (see --max-unparsed-fraction)."""


def check(job: RerankJob, settings: RerankSettings) -> None:
    """Fails on bad flags before any Spark or model work: dates, table references, the model
    (resolved, so a missing directory is named), the stores it can use and the template."""
    _checked_model(job, settings)


def _checked_model(job: RerankJob, settings: RerankSettings) -> ModelRef:
    """``check``, returning the model it resolved (so ``run`` resolves it once)."""
    parse_run_date(job.run_date)
    check_table_ref(job.candidates, "--candidates")
    check_table_ref(job.output, "--output")
    ref = model_ref(settings.model)
    if job.embedding_store:
        check_table_ref(job.embedding_store, "--embedding-store")
        if not ref.precomputed_embeddings:
            raise ValueError(store_refusal(ref))
    if job.score_cache:
        check_table_ref(job.score_cache, "--score-cache")
        check_score_cache(ref)
    template_for(settings)
    return ref


def run(job: RerankJob, settings: RerankSettings) -> dict:
    """Runs the job and returns its summary; raises before any model work on bad input."""
    started = time.time()
    ref = _checked_model(job, settings)
    settings = with_model_repeats(settings, ref)
    run_date = parse_run_date(job.run_date)
    spark = get_session("grouprank-rerank")
    # A new JVM has no Python worker yet: load the model in one while the input is checked.
    warm_if_new_session(spark, settings, ref)
    candidates, report = check_candidates(
        read_table(spark, job.candidates, "--candidates"), settings.on_duplicates
    )
    settings = driver_precision(settings, spark)
    if report.rows == 0:
        check_empty_allowed(spark, job.output, run_date, job.allow_empty, "--candidates")
        log.warning("the candidates table %s is empty: writing an empty partition", job.candidates)
        return _write_empty_night(spark, job, settings, ref, report, run_date, started)
    wait_for_warm_worker()
    # Found once (over Spark Connect that is a query to the server): a small table is embedded
    # and scored in one task, so one worker loads the model, not one per core.
    partitions = settings.partitions or model_partitions(spark, report.rows)
    vectors, embedded = _embed(spark, job, settings, ref, candidates, partitions)
    settings, fusion = resolve_fusion(prepare_candidates(candidates), vectors, settings, ref)
    cache = None
    if job.score_cache:
        base = prepare_candidates(candidates)
        groups = group_candidates(base, settings, ref, partitions)
        with stage(spark, f"rerank: scoring the groups {job.score_cache} lacks"):
            scored, cache = score_with_cache(spark, job.score_cache, groups, settings, ref,
                                             partitions)
        result = fuse_and_rank(base, scored, settings, ref, run_date)
    else:
        result, scored = rerank_with_scores(candidates, settings, run_date, partitions, ref=ref,
                                            vectors=vectors)
    # Scores are kept (small: no texts) so the summary and the write reuse one model pass.
    scored, result = scored.persist(), result.persist()
    try:
        with stage(spark, f"rerank: scoring {report.rows:,} candidates of {report.queries:,} queries"):
            counts = status_counts(result)
        summary = _summary(job, settings, report, counts)
        summary["model"] = _model_summary(ref)
        summary["embeddings"] = embedded
        summary["fusion"] = fusion
        summary["score_cache"] = {} if cache is None else {
            "cache": job.score_cache, "groups": cache.groups, "scored": cache.scored,
            "reused": cache.reused}
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
    return summary


def _model_summary(ref: ModelRef) -> dict:
    return {"name": ref.name, "kind": ref.kind, "digest": ref.digest}


def _write_empty_night(
    spark, job: RerankJob, settings: RerankSettings, ref: ModelRef, report, run_date: dt.date,
    started: float,
) -> dict:
    """An empty candidates table: the run date's partition replaced by no rows, with no model
    stage at all (an empty night loads no model and embeds nothing)."""
    with stage(spark, f"rerank: writing an empty run_date {run_date} to {job.output}"):
        write_run_date_partition(spark.createDataFrame([], RERANKED), job.output, run_date)
    summary = _summary(job, settings, report, {})
    summary["model"] = _model_summary(ref)
    summary.update(embeddings={}, fusion={}, score_cache={}, scoring=_diagnostics([]))
    summary["seconds"] = round(time.time() - started, 1)
    return summary


def _embed(
    spark, job: RerankJob, settings: RerankSettings, ref: ModelRef, candidates, partitions: int
) -> tuple[object | None, dict]:
    """Embeds the distinct texts once, before scoring, through the store when one is given.

    Returns the vectors (persisted; None for models that cannot use them) and a summary.
    """
    if not ref.precomputed_embeddings:
        return None, {}
    scoreable = _scoreable(prepare_candidates(candidates))
    if job.embedding_store:
        with stage(spark, f"rerank: embedding new texts into {job.embedding_store}"):
            vectors, found = refresh_store(
                spark, job.embedding_store, distinct_texts(scoreable, late=ref.encoder.late),
                settings, ref, partitions
            )
            vectors = vectors.persist()
            vectors.count()
        return vectors, {"texts": found.texts, "encoded": found.encoded, "reused": found.reused,
                         "store": job.embedding_store, "precision": settings.precision}
    vectors = _embed_once(scoreable, settings, ref, partitions)
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


def headline(summary: dict) -> str:
    """The job's human line: how many candidates went where, and their statuses."""
    return (
        f"reranked {summary['rows_out']} candidates of {summary['queries']} queries "
        f"into {summary['output']} (run_date {summary['run_date']}) in {summary['seconds']} s; "
        f"statuses {summary['status_counts']}"
    )
