"""DataFrame transforms and gate checks of the publish job; no I/O, so notebooks and tests call
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
import re
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grouprank.metrics import Metric, MetricError, parse_metric
from jobs.transforms import EMPTY_QUERY, EMPTY_TEXT
from schemas.reranked import RERANKED
from schemas.serving import SERVING, SERVING_CONTENT, SERVING_KEY
from schemas.validation import check_columns

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
