"""Publish the night's reranking to a serving index (query -> top k), behind quality gates.

    grouprank publish --reranked PATH_OR_TABLE --run-date 2026-12-01 --index PATH_OR_TABLE \\
        [--top-k 10] [--min-score S] [--scope full|partial] [--max-unscored 0.01] \\
        [--max-churn 0.5] [--metrics METRICS --gate "nDCG@10>=0.40" [--max-drop 0.02]] \\
        [--log LOG] [--dry-run] [--export-changes changes.jsonl]
    grouprank publish --index PATH_OR_TABLE --rollback [--to-version N] [--log LOG]
    spark-submit jobs/publish.py <same flags>

The index is a Delta table keyed by (qid, rank), created with the change data feed on and
updated by one MERGE per night, so a serving store that reads the feed moves only changed rows.
Every gate is checked before anything is written; a failed gate writes nothing to the index,
logs the attempt and exits 2 naming the gate. A night with no change commits no version. Each
attempt gets a row in the publish log (default: the index's path or name + ``_publish_log``).
``--rollback`` restores the version before the last publish with Delta RESTORE and logs it.
See docs/PUBLISHING.md.

DataFrame transforms and gate checks of the publish job; no I/O, so notebooks and tests call
exactly what ``jobs/publish.py`` calls.

    night = night_partition(reranked, run_date)
    top = select_top_k(night, 10, None, run_date, published_at)
    plan = merge_plan(index, top, night, "full")        # one row per changed (qid, rank)

The plan is computed before anything is written: it feeds the churn gate, the dry run and the
decision to skip the MERGE when nothing changed (so a republish commits no version). The MERGE's
update condition is ``content_changed``, the same one the plan uses, so the two agree.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank.metrics import Metric, MetricError, parse_metric
from grouprank.parsing import EMPTY_QUERY, EMPTY_TEXT
from jobs.configs import PublishJob
from jobs.entry import Refused
from jobs.progress import stage
from jobs.session import get_session
from jobs.tables import (
    check_table_ref,
    create_delta_table,
    delta_table,
    delta_table_exists,
    is_path,
    parse_run_date,
    read_table,
    spark_path,
)
from schemas.metrics import ALL_QUERIES, validate_metrics
from schemas.reranked import RERANKED
from schemas.serving import PUBLISH_LOG, SERVING, SERVING_CONTENT, SERVING_KEY, validate_serving
from schemas.validation import check_columns

log = logging.getLogger("grouprank.publish")

Scope = Literal["full", "partial"]


INSERT, UPDATE, DELETE = "insert", "update", "delete"


# Columns of the reranked table the publish job reads (model_digest is optional).
_NIGHT_COLUMNS = {"qid", "docid", "rank", "score", "model_score", "status", "model",
                  "settings_digest", "run_date"}


_GATE = re.compile(r"^\s*([^<>=\s]+)\s*>=\s*(\S+)\s*$")


_EXAMPLES = 5


@dataclass(frozen=True)
class MetricFloor:
    """A parsed ``--gate`` entry: the metric's mean must be at least ``floor``."""

    metric: Metric
    floor: float

    def __str__(self) -> str:
        return f"{self.metric}>={self.floor:g}"


@dataclass(frozen=True)
class Gate:
    """One checked gate: its value, the bound, and the one-line message when it fails."""

    gate: str
    value: float | None
    limit: float | None
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class NightStats:
    """What the completeness and unscored gates read from the night's partition."""

    rows: int
    queries: int
    # Queries without exactly one row per document and ranks 1..n, with a few examples.
    incomplete_queries: int
    incomplete_examples: list[str]
    # Documents sent to the model (not empty_text/empty_query) and those left without a score.
    sent_to_model: int
    unscored: int


def parse_gates(text: str | None) -> tuple[MetricFloor, ...]:
    """Parses ``--gate``: comma-separated ``METRIC>=VALUE`` floors on metric means.

    Example:
        >>> [str(g) for g in parse_gates("ndcg@10>=0.40, recall@100>=0.6")]
        ['nDCG@10>=0.4', 'Recall@100>=0.6']
        >>> parse_gates("nDCG@10>=abc")
        Traceback (most recent call last):
        ...
        ValueError: --gate 'nDCG@10>=abc': 'abc' is not a number; write e.g. nDCG@10>=0.40
    """
    floors = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = _GATE.match(part)
        if not match:
            raise ValueError(f"--gate {part.strip()!r} is not METRIC>=VALUE, e.g. nDCG@10>=0.40")
        try:
            metric = parse_metric(match.group(1))
        except MetricError as err:
            raise ValueError(f"--gate {part.strip()!r}: {err}") from err
        try:
            floor = float(match.group(2))
        except ValueError:
            floor = float("nan")
        if floor != floor or floor in (float("inf"), float("-inf")):
            raise ValueError(f"--gate {part.strip()!r}: {match.group(2)!r} is not a number; "
                             "write e.g. nDCG@10>=0.40")
        floors.append(MetricFloor(metric, floor))
    if text is not None and not floors:
        raise ValueError(f"--gate {text!r} holds no METRIC>=VALUE entry")
    return tuple(floors)


def night_partition(reranked: DataFrame, run_date: dt.date) -> DataFrame:
    """The run date's rows of a reranked table with the columns the publish job reads;
    ``model_digest`` is null when the table has no such column."""
    df = check_columns(reranked, RERANKED, _NIGHT_COLUMNS, "reranked")
    if "model_digest" not in df.columns:
        df = df.withColumn("model_digest", F.lit(None).cast("string"))
    return df.where(F.col("run_date") == F.lit(run_date)).select(
        *sorted(_NIGHT_COLUMNS | {"model_digest"})
    )


def night_stats(night: DataFrame) -> NightStats:
    """Completeness and unscored counts of the night's partition, in one Spark job (plus one
    for examples when a query is incomplete).

    A query is complete when its rows have distinct docids and their ranks are exactly 1..n.
    """
    per_query = night.groupBy("qid").agg(
        F.count(F.lit(1)).alias("n"),
        F.countDistinct("docid").alias("docs"),
        F.countDistinct("rank").alias("ranks"),
        F.min("rank").alias("lo"),
        F.max("rank").alias("hi"),
        F.sum(_sent_to_model().cast("int")).alias("sent"),
        F.sum((_sent_to_model() & F.col("model_score").isNull()).cast("int")).alias("unscored"),
    ).withColumn(
        "incomplete",
        F.col("qid").isNull() | (F.col("docs") != F.col("n")) | (F.col("ranks") != F.col("n"))
        | (F.col("lo") != 1) | (F.col("hi") != F.col("n")),
    )
    totals = per_query.agg(
        F.sum("n").alias("rows"), F.count(F.lit(1)).alias("queries"),
        F.sum(F.col("incomplete").cast("int")).alias("incomplete"),
        F.sum("sent").alias("sent"), F.sum("unscored").alias("unscored"),
    ).first()
    examples: list[str] = []
    if totals["incomplete"]:
        examples = [str(r["qid"]) for r in
                    per_query.where("incomplete").select("qid").limit(_EXAMPLES).collect()]
    return NightStats(
        rows=int(totals["rows"] or 0), queries=int(totals["queries"] or 0),
        incomplete_queries=int(totals["incomplete"] or 0), incomplete_examples=examples,
        sent_to_model=int(totals["sent"] or 0), unscored=int(totals["unscored"] or 0),
    )


def select_top_k(
    night: DataFrame,
    top_k: int,
    min_score: float | None,
    run_date: dt.date,
    published_at: dt.datetime,
) -> DataFrame:
    """Each query's first ``top_k`` documents in the reranked order, as serving rows.

    With ``min_score``, documents whose model score is below it (or null) are dropped first and
    the rest renumbered 1..n, so a query may get fewer than ``top_k`` rows, or none.

    Example:
        >>> select_top_k(night, 10, 5.0, date(2026, 12, 1), now).show()  # doctest: +SKIP
    """
    kept = night
    if min_score is not None:
        kept = kept.where(F.col("model_score") >= F.lit(float(min_score)))
    order = Window.partitionBy("qid").orderBy(F.col("rank").asc(), F.col("docid").asc())
    return (
        kept.withColumn("_pos", F.row_number().over(order))
        .where(F.col("_pos") <= top_k)
        .select(
            "qid",
            F.col("_pos").cast("int").alias("rank"),
            "docid",
            F.col("score").cast("double").alias("score"),
            F.col("model_score").cast("double").alias("model_score"),
            "model",
            F.col("model_digest").cast("string").alias("model_digest"),
            "settings_digest",
            F.lit(run_date).cast(T.DateType()).alias("run_date"),
            F.lit(published_at).cast(T.TimestampType()).alias("published_at"),
        )
    )


def empty_index(spark: SparkSession) -> DataFrame:
    """An index with no rows, standing in for one not created yet."""
    return spark.createDataFrame([], SERVING)


def content_changed(old: str = "t", new: str = "s") -> Column:
    """True where the row aliased ``new`` differs from ``old`` in any content column (null-safe);
    the MERGE's update condition and the plan's definition of an update.

    Example:
        >>> index.alias("t").join(top.alias("s"), ["qid", "rank"]).where(content_changed())
        ... # doctest: +SKIP
    """
    same = [F.col(f"{old}.{c}").eqNullSafe(F.col(f"{new}.{c}")) for c in SERVING_CONTENT]
    condition = same[0]
    for column in same[1:]:
        condition = condition & column
    return ~condition


def merge_plan(index: DataFrame, top: DataFrame, night: DataFrame, scope: Scope) -> DataFrame:
    """One row per (qid, rank) the publish changes: the serving columns plus ``change``
    (insert, update or delete). Inserts and updates carry the new row, deletes the old one.

    A (qid, rank) in the index but not in the new top k is deleted when its query is in the
    night (it now has fewer rows) or, with ``scope='full'``, when the night lacks the query.

    Example:
        >>> merge_plan(index, top, night, "full").groupBy("change").count().show()
        ... # doctest: +SKIP
    """
    _check_scope(scope)
    night_qids = night.select(F.col("qid").alias("_qid"), F.lit(True).alias("_in_night"))
    joined = (
        index.alias("t")
        .join(top.alias("s"), on=[F.col(f"t.{k}") == F.col(f"s.{k}") for k in SERVING_KEY],
              how="full_outer")
        .withColumn("_qid", F.coalesce("s.qid", "t.qid"))
        .join(night_qids.distinct(), "_qid", "left")
    )
    vanished = F.col("s.qid").isNull()
    deletable = F.lit(scope == "full") | F.col("_in_night").isNotNull()
    change = (
        F.when(F.col("t.qid").isNull(), F.lit(INSERT))
        .when(vanished & deletable, F.lit(DELETE))
        .when(~vanished & content_changed(), F.lit(UPDATE))
    )
    columns = [F.when(vanished, F.col(f"t.{c}")).otherwise(F.col(f"s.{c}")).alias(c)
               for c in SERVING.fieldNames()]
    return joined.select(*columns, change.alias("change")).where(F.col("change").isNotNull())


def plan_counts(plan: DataFrame) -> dict[str, int]:
    """Rows the plan inserts, updates and deletes (an action).

    Example:
        >>> plan_counts(plan)  # doctest: +SKIP
        {'insert': 10, 'update': 3, 'delete': 0}
    """
    got = {r["change"]: r["count"] for r in plan.groupBy("change").count().collect()}
    return {c: int(got.get(c, 0)) for c in (INSERT, UPDATE, DELETE)}


def query_churn(index: DataFrame, top: DataFrame, night: DataFrame, scope: Scope) -> tuple[int, int]:
    """(published queries whose top-k document set changes, published queries), an action.

    Order changes within the same set do not count. A published query the night lacks counts
    as changed with ``scope='full'`` (it is deleted) and unchanged with ``'partial'`` (kept).
    """
    _check_scope(scope)
    published = index.groupBy("qid").agg(F.sort_array(F.collect_set("docid")).alias("old"))
    fresh = top.groupBy("qid").agg(F.sort_array(F.collect_set("docid")).alias("new"))
    in_night = night.select("qid", F.lit(True).alias("_in_night")).distinct()
    rows = published.join(fresh, "qid", "left").join(in_night, "qid", "left")
    counted = F.lit(scope == "full") | F.col("_in_night").isNotNull()
    changed = counted & ~F.coalesce(F.col("old") == F.col("new"), F.lit(False))
    totals = rows.agg(F.count(F.lit(1)).alias("published"),
                      F.sum(changed.cast("int")).alias("changed")).first()
    return int(totals["changed"] or 0), int(totals["published"] or 0)


def partial_merge_source(index: DataFrame, top: DataFrame, night: DataFrame) -> DataFrame:
    """The MERGE source for ``scope='partial'``: the new top k (``_delete`` false) plus, for the
    night's queries, a delete marker (``_delete`` true) for each indexed rank the new top k no
    longer has. Queries the night lacks get no source row, so the MERGE leaves them alone."""
    night_qids = night.select("qid").distinct()
    stale = (
        index.join(night_qids, "qid", "left_semi")
        .join(top.select(*SERVING_KEY), list(SERVING_KEY), "left_anti")
    )
    return top.withColumn("_delete", F.lit(False)).unionByName(
        stale.select(*SERVING.fieldNames()).withColumn("_delete", F.lit(True))
    )


def commit_changes(feed: DataFrame) -> DataFrame:
    """One row per (qid, rank) a commit changed, from its change data feed: ``qid``, ``rank``,
    ``docid``, ``score`` (the new row's; a deleted row's own) and ``change``.

    A MERGE's feed holds insert, delete and update pre/post images; a RESTORE's holds a delete
    and an insert for a key whose row it put back, read here as one update.

    Example:
        >>> feed = spark.read.format("delta").option("readChangeFeed", "true")
        ...     .option("startingVersion", 3).option("endingVersion", 3).load("serving")
        >>> commit_changes(feed).show()  # doctest: +SKIP
    """
    kind = F.col("_change_type")
    new = feed.where(kind.isin("insert", "update_postimage")).select(
        *SERVING_KEY, "docid", "score", F.lit(True).alias("_new"))
    old = feed.where(kind.isin("delete", "update_preimage")).select(
        *SERVING_KEY, F.col("docid").alias("_old_docid"), F.col("score").alias("_old_score"),
        F.lit(True).alias("_old"))
    joined = new.join(old, list(SERVING_KEY), "full_outer")
    change = (F.when(joined["_new"].isNull(), F.lit(DELETE))
              .when(joined["_old"].isNull(), F.lit(INSERT)).otherwise(F.lit(UPDATE)))
    return joined.select(
        *SERVING_KEY,
        F.coalesce("docid", "_old_docid").alias("docid"),
        F.when(joined["_new"].isNull(), F.col("_old_score")).otherwise(F.col("score"))
        .alias("score"),
        change.alias("change"),
    )


def check_gates(
    stats: NightStats,
    churn: tuple[int, int],
    max_unscored: float,
    max_churn: float,
    metric_gates: list[Gate] = (),  # type: ignore[assignment]
) -> list[Gate]:
    """The gates in the order they are reported: complete, unscored, churn, then the metric
    gates measured by the job.

    Example:
        >>> stats = NightStats(20, 2, 0, [], 20, 1)
        >>> [(g.gate, g.passed) for g in check_gates(stats, (1, 2), 0.01, 0.5)]
        [('complete', True), ('unscored', False), ('churn', True)]
    """
    unscored = stats.unscored / stats.sent_to_model if stats.sent_to_model else 0.0
    changed, published = churn
    churn_share = changed / published if published else 0.0
    return [
        Gate("complete", float(stats.incomplete_queries), 0.0, stats.incomplete_queries == 0,
             f"{stats.incomplete_queries} of {stats.queries} queries do not have one row per "
             f"document with ranks 1..n, e.g. {stats.incomplete_examples}"),
        Gate("unscored", unscored, max_unscored, unscored <= max_unscored,
             f"{stats.unscored} of {stats.sent_to_model} documents sent to the model have no "
             f"model score ({unscored:.2%} > --max-unscored {max_unscored:.2%})"),
        Gate("churn", churn_share, max_churn, churn_share <= max_churn,
             f"{changed} of {published} published queries change their top-k set "
             f"({churn_share:.1%} > --max-churn {max_churn:.1%})"),
        *metric_gates,
    ]


def metric_floor_gate(floor: MetricFloor, value: float | None, where: str) -> Gate:
    """The ``--gate`` floor checked against the night's mean (None: no such row ``where``)."""
    if value is None:
        return Gate(str(floor), None, floor.floor, False, f"no {floor.metric} mean {where}")
    return Gate(str(floor), value, floor.floor, value >= floor.floor,
                f"{floor.metric} {value:.4f} < {floor.floor:g}")


def metric_drop_gate(
    metric: Metric, value: float | None, previous: float | None, max_drop: float, where: str
) -> Gate:
    """The drop of ``metric`` from the last published night's mean, at most ``max_drop``."""
    name = f"drop:{metric}"
    if value is None or previous is None:
        return Gate(name, None, max_drop, False, f"no {metric} mean {where}")
    drop = previous - value
    return Gate(name, drop, max_drop, drop <= max_drop + 1e-12,
                f"{metric} fell {drop:.4f} from {previous:.4f} (> --max-drop {max_drop:g})")


def _sent_to_model() -> Column:
    return ~F.col("status").isin(EMPTY_TEXT, EMPTY_QUERY)


def _check_scope(scope: str) -> None:
    if scope not in ("full", "partial"):
        raise ValueError(f"scope must be 'full' or 'partial', got {scope!r}")




LOG_SUFFIX = "_publish_log"


# Test hook (tests/test_publish.py): with this value of GROUPRANK_TEST_FAULT the MERGE's own
# Spark job fails part-way (a Python UDF in its source raises), as a job killed before its
# commit would stop.
FAULT_MERGE_FAILS = "publish-merge-fails"


_TABLE_PROPERTIES = {
    "delta.enableChangeDataFeed": "true",
    # Deletion vectors make the feed of a RESTORE row-exact (only the rows that differ).
    "delta.enableDeletionVectors": "true",
}


_SHOWN_CHANGES = 20


# "RuntimeError: ..." in a wrapped worker traceback (not a JVM class, which has dots).
_EXCEPTION_LINE = re.compile(r"^\w+(Error|Exception): ")


class GateFailed(Refused):
    """A publish gate failed: nothing was written to the index."""


def check(job: PublishJob) -> None:
    """Fails on bad flags before any Spark work (rollback takes only its own)."""
    check_table_ref(job.index, "--index")
    if job.log is not None:
        check_table_ref(job.log, "--log")
    if job.rollback:
        given = [flag for flag, value in (("--reranked", job.reranked),
                                          ("--run-date", job.run_date),
                                          ("--export-changes", job.export_changes))
                 if value is not None] + (["--dry-run"] if job.dry_run else [])
        if given:
            raise ValueError(f"--rollback takes only --index, --to-version and --log, "
                             f"not {', '.join(given)}")
        if job.to_version is not None and job.to_version < 0:
            raise ValueError(f"--to-version must be >= 0, got {job.to_version}")
        return
    if job.to_version is not None:
        raise ValueError("--to-version needs --rollback")
    if not job.reranked or not job.run_date:
        raise ValueError("publish needs --reranked and --run-date (or --rollback)")
    check_table_ref(job.reranked, "--reranked")
    parse_run_date(job.run_date)
    if job.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {job.top_k}")
    if job.min_score is not None and not math.isfinite(job.min_score):
        raise ValueError(f"--min-score must be a finite number, got {job.min_score}")
    for flag, value in (("--max-unscored", job.max_unscored),
                        ("--max-churn", job.max_churn)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must be between 0 and 1, got {value}")
    if job.scope not in ("full", "partial"):
        raise ValueError(f"--scope must be full or partial, got {job.scope!r}")
    if job.max_drop is not None and not job.max_drop >= 0:
        raise ValueError(f"--max-drop must be >= 0, got {job.max_drop}")
    floors = parse_gates(job.gate)
    if (floors or job.max_drop is not None) and not job.metrics:
        raise ValueError("--gate and --max-drop read the metrics table: give --metrics")
    if job.max_drop is not None and not floors:
        raise ValueError("--max-drop applies to the --gate metrics: give --gate")
    if job.metrics:
        check_table_ref(job.metrics, "--metrics")
        if not floors:
            raise ValueError("--metrics is read only for --gate: give --gate")
    if job.export_changes and "://" in job.export_changes:
        raise ValueError(f"--export-changes {job.export_changes!r} must be a local file")


def default_log(index: str) -> str:
    """The publish log next to the index: its path or table name + ``_publish_log``.

    Example:
        >>> default_log("/data/serving"), default_log("main.search.serving")
        ('/data/serving_publish_log', 'main.search.serving_publish_log')
    """
    index = index.rstrip("/")
    if index.endswith("`"):  # catalog.schema.`my table` -> catalog.schema.`my table_publish_log`
        return index[:-1] + LOG_SUFFIX + "`"
    return index + LOG_SUFFIX


def run(job: PublishJob) -> dict:
    """Publishes (or rolls back) and returns the summary; raises ``GateFailed`` when a gate
    fails (after logging the attempt) and ``ValueError`` on bad flags or an unknown night."""
    started = time.time()
    check(job)
    spark = get_session("grouprank-publish")
    log_ref = job.log or default_log(job.index)
    if job.rollback:
        return _rollback(spark, job, log_ref, started)
    run_date = parse_run_date(job.run_date or "")
    floors = parse_gates(job.gate)
    night = night_partition(read_table(spark, job.reranked or "", "--reranked"), run_date)
    night = night.persist()
    top = None
    plan = None
    try:
        stats = night_stats(night)
        if not stats.rows:
            _refuse_missing_night(spark, job)
        exists = delta_table_exists(spark, job.index)
        index = validate_serving(read_table(spark, job.index, "--index")) if exists \
            else empty_index(spark)
        version_before = _version(spark, job.index) if exists else None
        published_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        top = select_top_k(night, job.top_k, job.min_score, run_date, published_at).persist()
        churn = query_churn(index, top, night, job.scope)
        metric_gates = _metric_gates(spark, job, floors, run_date, index) if floors else []
        gates = check_gates(stats, churn, job.max_unscored, job.max_churn,
                            metric_gates)
        plan = merge_plan(index, top, night, job.scope).persist()
        counts = plan_counts(plan)
        record = _Attempt(job, run_date, gates, version_before, counts)
        failed = [g for g in gates if not g.passed]
        if job.dry_run:
            return _finish(record, "dry_run", started, plan=plan)
        if failed:
            message = "; ".join(f"gate {g.gate} failed: {g.message}" for g in failed)
            _append_log(spark, log_ref, record.row("blocked", message, version_before))
            summary = _finish(record, "blocked", started, message=message)
            raise GateFailed(message + "; nothing written to the index", summary)
        if not any(counts.values()):
            _append_log(spark, log_ref, record.row("unchanged", None, version_before))
            if job.export_changes:
                _export(spark.createDataFrame([], "qid string"), job.export_changes)
            return _finish(record, "unchanged", started, version_after=version_before)
        if not exists:
            create_delta_table(spark, job.index, SERVING, _TABLE_PROPERTIES)
            record = record.with_version_before(_version(spark, job.index))
        try:
            _merge(spark, job, index, top, night)
        except Exception as err:  # logged, then raised: the index is as it was
            _append_log(spark, log_ref, record.row("failed", _one_line(err),
                                                   _version(spark, job.index)))
            raise
        version_after, committed = _last_merge(spark, job.index)
        if committed != counts:
            log.warning("the MERGE changed %s rows, the plan said %s (a concurrent writer?)",
                        committed, counts)
        record = record.with_counts(committed)
        _append_log(spark, log_ref, record.row("published", None, version_after))
        if job.export_changes:
            _export(commit_changes(_change_feed(spark, job.index, version_after)),
                    job.export_changes)
        return _finish(record, "published", started, version_after=version_after)
    finally:
        for frame in (plan, top, night):
            if frame is not None:
                frame.unpersist()


@dataclass(frozen=True)
class _Attempt:
    """What one publish attempt logs and reports."""

    job: PublishJob
    run_date: dt.date
    gates: list[Gate]
    version_before: int | None
    counts: dict[str, int]

    def with_version_before(self, version: int) -> _Attempt:
        return _Attempt(self.job, self.run_date, self.gates, version, self.counts)

    def with_counts(self, counts: dict[str, int]) -> _Attempt:
        return _Attempt(self.job, self.run_date, self.gates, self.version_before, counts)

    def row(self, outcome: str, message: str | None, version_after: int | None) -> tuple:
        written = outcome == "published"
        return _log_row(
            action="publish", index=self.job.index, run_date=self.run_date, outcome=outcome,
            message=message,
            gates=[(g.gate, g.value, g.limit, g.passed) for g in self.gates],
            top_k=self.job.top_k, scope=self.job.scope, min_score=self.job.min_score,
            version_before=self.version_before, version_after=version_after,
            rows_inserted=self.counts[INSERT] if written else 0,
            rows_updated=self.counts[UPDATE] if written else 0,
            rows_deleted=self.counts[DELETE] if written else 0,
        )


def _log_row(**values) -> tuple:
    values["attempted_at"] = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return tuple(values.get(name) for name in PUBLISH_LOG.fieldNames())


def _refuse_missing_night(spark: SparkSession, job: PublishJob) -> None:
    """Raises for a run date the reranked table has no rows for, naming its latest dates."""
    dates = [str(r[0]) for r in read_table(spark, job.reranked or "", "--reranked")
             .select("run_date").distinct().orderBy(F.col("run_date").desc()).limit(5).collect()]
    raise ValueError(f"--run-date {job.run_date}: {job.reranked} has no rows for it "
                     f"(latest run dates: {', '.join(dates) or 'none'})")


def _metric_gates(
    spark: SparkSession, job: PublishJob, floors: tuple[MetricFloor, ...], run_date: dt.date,
    index: DataFrame,
) -> list[Gate]:
    means = validate_metrics(read_table(spark, job.metrics or "", "--metrics")).where(
        F.col("qid") == ALL_QUERIES
    )
    name = job.metrics_name or _only_name(means, run_date, job.metrics or "")
    previous = None
    if job.max_drop is not None:
        previous = index.agg(F.max("run_date")).first()[0]
    nights = [d for d in (run_date, previous) if d is not None]
    values = {
        (r["run_date"], r["metric"]): r["value"]
        for r in means.where((F.col("name") == name) & F.col("run_date").isin(nights)
                             & F.col("metric").isin([str(f.metric) for f in floors])).collect()
    }
    where = f"for run date {run_date} and name {name!r} in {job.metrics}"
    gates = [metric_floor_gate(f, values.get((run_date, str(f.metric))), where) for f in floors]
    if job.max_drop is not None:
        for f in floors:
            if previous is None:  # nothing published yet: nothing to fall from
                gates.append(Gate(f"drop:{f.metric}", 0.0, job.max_drop, True))
                continue
            gates.append(metric_drop_gate(
                f.metric, values.get((run_date, str(f.metric))),
                values.get((previous, str(f.metric))), job.max_drop,
                f"for run dates {run_date} and {previous} (last published) and name {name!r} "
                f"in {job.metrics}",
            ))
    return gates


def _only_name(means: DataFrame, run_date: dt.date, ref: str) -> str:
    names = [r[0] for r in means.where(F.col("run_date") == F.lit(run_date))
             .select("name").distinct().limit(3).collect()]
    if len(names) > 1:
        raise ValueError(f"--metrics {ref} holds several runs for {run_date} "
                         f"({', '.join(sorted(names))}, ...): give --metrics-name")
    return names[0] if names else ""


def _merge(
    spark: SparkSession, job: PublishJob, index: DataFrame, top: DataFrame, night: DataFrame
) -> None:
    """One MERGE: changed rows updated, new ones inserted; stale ranks of the night's queries
    deleted, and with ``--scope full`` every row the night lacks."""
    columns = {c: F.col(f"s.{c}") for c in SERVING.fieldNames()}
    table = delta_table(spark, job.index)
    on = (F.col("t.qid") == F.col("s.qid")) & (F.col("t.rank") == F.col("s.rank"))
    if job.scope == "full":
        merge = (table.alias("t").merge(_with_fault(top).alias("s"), on)
                 .whenMatchedUpdate(condition=content_changed(), set=columns)
                 .whenNotMatchedInsert(values=columns)
                 .whenNotMatchedBySourceDelete())
    else:
        source = partial_merge_source(index, top, night)
        merge = (table.alias("t").merge(_with_fault(source).alias("s"), on)
                 .whenMatchedDelete(condition=F.col("s._delete"))
                 .whenMatchedUpdate(condition=~F.col("s._delete") & content_changed(),
                                    set=columns)
                 .whenNotMatchedInsert(condition=~F.col("s._delete"), values=columns))
    with stage(spark, f"publish: MERGE into {job.index}"):
        merge.execute()


def _with_fault(source: DataFrame) -> DataFrame:
    if os.environ.get("GROUPRANK_TEST_FAULT") != FAULT_MERGE_FAILS:
        return source

    @F.udf("boolean")
    def dies(_qid):
        raise RuntimeError("injected fault: the MERGE's job dies before its commit")

    return source.where(dies("qid"))


def _rollback(spark: SparkSession, job: PublishJob, log_ref: str, started: float) -> dict:
    if not delta_table_exists(spark, job.index):
        raise ValueError(f"--index {job.index} does not exist: nothing to roll back")
    current = _version(spark, job.index)
    target, night = job.to_version, None
    if target is None:
        target, night = _last_publish(spark, log_ref, job.index)
    if not 0 <= target < current:
        raise ValueError(f"--to-version {target} is not an earlier version of {job.index} "
                         f"(current version {current})")
    delta_table(spark, job.index).restoreToVersion(target)
    after = _version(spark, job.index)
    changes = commit_changes(_change_feed(spark, job.index, after))
    got = {r["change"]: r["count"] for r in changes.groupBy("change").count().collect()}
    counts = {c: int(got.get(c, 0)) for c in (INSERT, UPDATE, DELETE)}
    _append_log(spark, log_ref, _log_row(
        action="rollback", index=job.index, run_date=night, outcome="restored",
        version_before=current, version_after=after, rows_inserted=counts[INSERT],
        rows_updated=counts[UPDATE], rows_deleted=counts[DELETE],
    ))
    summary = {
        "job": "publish", "action": "rollback", "index": job.index, "log": log_ref,
        "outcome": "restored", "restored_version": target, "undone_run_date": night,
        "version_before": current, "version_after": after, "changes": counts,
        "seconds": round(time.time() - started, 1),
    }
    return summary


def _last_publish(spark: SparkSession, log_ref: str, index: str) -> tuple[int, dt.date]:
    """The version before the newest publish since the last rollback, and its night."""
    if not delta_table_exists(spark, log_ref):
        raise ValueError(f"no publish log at {log_ref}: give --to-version N")
    rows = read_table(spark, log_ref, "--log").where(
        (F.col("index") == index) & F.col("action").isin("publish", "rollback")
        & F.col("outcome").isin("published", "restored")
    ).orderBy(F.col("attempted_at").desc()).select("action", "version_before", "run_date")
    newest = rows.first()
    if newest is None or newest["action"] != "publish":
        raise ValueError(f"nothing published to {index} since its last rollback "
                         f"(per {log_ref}): give --to-version N")
    return int(newest["version_before"]), newest["run_date"]


def _finish(
    record: _Attempt, outcome: str, started: float, *, plan: DataFrame | None = None,
    version_after: int | None = None, message: str | None = None,
) -> dict:
    job = record.job
    summary = {
        "job": "publish", "action": "publish", "run_date": job.run_date, "index": job.index,
        "log": job.log or default_log(job.index), "outcome": outcome,
        "gates": [_gate_summary(g) for g in record.gates], "changes": record.counts,
        "version_before": record.version_before, "version_after": version_after,
        "top_k": job.top_k, "scope": job.scope, "seconds": round(time.time() - started, 1),
    }
    if message:
        summary["message"] = message
    if plan is not None:
        summary["changes_shown"] = [
            {c: r[c] for c in ("change", "qid", "rank", "docid", "score")}
            for r in plan.orderBy("qid", "rank").limit(_SHOWN_CHANGES).collect()
        ]
    return summary


def headline(summary: dict) -> str:
    """The outcome and change counts, one line per gate, and a dry run's first changes."""
    counts = summary["changes"]
    if summary["action"] == "rollback":
        return (f"rolled back {summary['index']} to version {summary['restored_version']} (now "
                f"version {summary['version_after']}; {counts[INSERT]} inserted, "
                f"{counts[UPDATE]} updated, {counts[DELETE]} deleted)")
    lines = [f"publish {summary['run_date']} -> {summary['index']}: {summary['outcome']}; "
             f"{counts[INSERT]} to insert, {counts[UPDATE]} to update, "
             f"{counts[DELETE]} to delete"]
    if summary["outcome"] in ("published", "unchanged"):
        lines[0] += f" (version {summary['version_before']} -> {summary['version_after']})"
    for g in summary["gates"]:
        value = "n/a" if g["value"] is None else f"{g['value']:.4g}"
        lines.append(f"  gate {g['gate']:<22} {value:>8}  limit {g['limit']:g}  "
                     f"{'pass' if g['passed'] else 'FAIL'}")
    if "changes_shown" in summary:
        shown = summary["changes_shown"]
        lines.append(f"  changes (first {len(shown)}):")
        lines += [f"    {r['change']:<6} {r['qid']} rank {r['rank']}: {r['docid']} "
                  f"({r['score']:.4f})" for r in shown]
    return "\n".join(lines)


def _gate_summary(gate: Gate) -> dict:
    values = asdict(gate)
    if gate.passed:
        del values["message"]  # the message explains a failure only
    return values


def _export(changes: DataFrame, path: str) -> None:
    """Writes the change rows as JSON lines to a local file (through the driver, row by row)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    columns = ["qid", "rank", "docid", "score", "change"]
    written = 0
    with target.open("w") as out:
        if "change" in changes.columns:
            for row in changes.select(*columns).orderBy("qid", "rank").toLocalIterator():
                out.write(json.dumps({c: row[c] for c in columns}) + "\n")
                written += 1
    log.info("wrote %d changed rows to %s", written, target)


def _append_log(spark: SparkSession, ref: str, row: tuple) -> None:
    writer = spark.createDataFrame([row], PUBLISH_LOG).write.format("delta").mode("append")
    if is_path(ref):
        writer.save(spark_path(ref))
    else:
        writer.saveAsTable(ref)


def _version(spark: SparkSession, ref: str) -> int:
    return int(delta_table(spark, ref).history(1).select("version").first()[0])


def _last_merge(spark: SparkSession, ref: str) -> tuple[int, dict[str, int]]:
    """The table's version after its last commit, a MERGE, and the rows that MERGE changed
    (one read of the history)."""
    last = delta_table(spark, ref).history(1).select("version", "operationMetrics").first()
    metrics = last["operationMetrics"]
    return int(last["version"]), {INSERT: int(metrics.get("numTargetRowsInserted", 0)),
                                  UPDATE: int(metrics.get("numTargetRowsUpdated", 0)),
                                  DELETE: int(metrics.get("numTargetRowsDeleted", 0))}


def _change_feed(spark: SparkSession, ref: str, version: int) -> DataFrame:
    reader = (spark.read.format("delta").option("readChangeFeed", "true")
              .option("startingVersion", version).option("endingVersion", version))
    return reader.load(spark_path(ref)) if is_path(ref) else reader.table(ref)


def _one_line(err: BaseException) -> str:
    """The error's first line, plus the Python exception line a worker failure wraps."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    cause = next((line for line in lines[1:] if _EXCEPTION_LINE.match(line)), None)
    if cause:
        first = f"{first} {cause}"
    return f"{type(err).__name__}: {first}"[:500]

