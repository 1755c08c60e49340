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
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.entry import print_summary, run_job
from jobs.publish_transforms import (
    DELETE,
    INSERT,
    UPDATE,
    Gate,
    MetricFloor,
    check_gates,
    commit_changes,
    content_changed,
    empty_index,
    merge_plan,
    metric_drop_gate,
    metric_floor_gate,
    night_partition,
    night_stats,
    parse_gates,
    partial_merge_source,
    plan_counts,
    query_churn,
    select_top_k,
)
from jobs.session import get_session
from jobs.tables import check_table_ref, is_path, parse_run_date, read_table, spark_path
from schemas.metrics import ALL_QUERIES, validate_metrics
from schemas.serving import PUBLISH_LOG, SERVING, validate_serving

log = logging.getLogger("grouprank.publish")

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


@dataclass(frozen=True)
class PublishJob:
    """What to publish, where, and the gates it must pass."""

    # Serving index Delta table (path or name); created on the first publish.
    index: str
    # Reranked table (path or name) holding the night; required unless --rollback.
    reranked: str | None = None
    # Run date (YYYY-MM-DD) of the night to publish; required unless --rollback.
    run_date: str | None = None
    # Documents per query in the index.
    top_k: int = 10
    # Drop documents whose 0-10 model score is below this (and unscored ones); none: keep all.
    min_score: float | None = None
    # full: queries the night lacks are deleted from the index; partial: they are kept.
    scope: Literal["full", "partial"] = "full"
    # Gate: largest fraction of documents sent to the model that got no model score.
    max_unscored: float = 0.01
    # Gate: largest share of published queries whose top-k document set changes.
    max_churn: float = 0.5
    # Metrics table (evaluate's output) that the --gate and --max-drop gates read.
    metrics: str | None = None
    # Run name in --metrics to gate on; default: the only name it holds for the run date.
    metrics_name: str | None = None
    # Metric gates on the night's means, comma-separated METRIC>=VALUE, e.g. nDCG@10>=0.40.
    gate: str | None = None
    # Gate: largest drop of each --gate metric from the night the index last published.
    max_drop: float | None = None
    # Publish log Delta table (path or name); default: the index's path or name + _publish_log.
    log: str | None = None
    # Print the changes and the gates, and write nothing.
    dry_run: bool = False
    # Local file to write the committed changes to as JSON lines (qid, rank, docid, score, change).
    export_changes: str | None = None
    # Restore the index to the version before the last publish (Delta RESTORE), and log it.
    rollback: bool = False
    # With --rollback: the index version to restore instead.
    to_version: int | None = None

    def __post_init__(self) -> None:
        check_table_ref(self.index, "--index")
        if self.log is not None:
            check_table_ref(self.log, "--log")
        if self.rollback:
            given = [flag for flag, value in (("--reranked", self.reranked),
                                              ("--run-date", self.run_date),
                                              ("--export-changes", self.export_changes))
                     if value is not None] + (["--dry-run"] if self.dry_run else [])
            if given:
                raise ValueError(f"--rollback takes only --index, --to-version and --log, "
                                 f"not {', '.join(given)}")
            if self.to_version is not None and self.to_version < 0:
                raise ValueError(f"--to-version must be >= 0, got {self.to_version}")
            return
        if self.to_version is not None:
            raise ValueError("--to-version needs --rollback")
        if not self.reranked or not self.run_date:
            raise ValueError("publish needs --reranked and --run-date (or --rollback)")
        check_table_ref(self.reranked, "--reranked")
        parse_run_date(self.run_date)
        if self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ValueError(f"--min-score must be a finite number, got {self.min_score}")
        for flag, value in (("--max-unscored", self.max_unscored),
                            ("--max-churn", self.max_churn)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{flag} must be between 0 and 1, got {value}")
        if self.scope not in ("full", "partial"):
            raise ValueError(f"--scope must be full or partial, got {self.scope!r}")
        if self.max_drop is not None and not self.max_drop >= 0:
            raise ValueError(f"--max-drop must be >= 0, got {self.max_drop}")
        floors = parse_gates(self.gate)
        if (floors or self.max_drop is not None) and not self.metrics:
            raise ValueError("--gate and --max-drop read the metrics table: give --metrics")
        if self.max_drop is not None and not floors:
            raise ValueError("--max-drop applies to the --gate metrics: give --gate")
        if self.metrics:
            check_table_ref(self.metrics, "--metrics")
            if not floors:
                raise ValueError("--metrics is read only for --gate: give --gate")
        if self.export_changes and "://" in self.export_changes:
            raise ValueError(f"--export-changes {self.export_changes!r} must be a local file")


class GateFailed(RuntimeError):
    """A publish gate failed: nothing was written to the index."""


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
        _check_night_exists(night, job)
        exists = _index_exists(spark, job.index)
        index = validate_serving(read_table(spark, job.index, "--index")) if exists \
            else empty_index(spark)
        version_before = _version(spark, job.index) if exists else None
        published_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        top = select_top_k(night, job.top_k, job.min_score, run_date, published_at).persist()
        churn = query_churn(index, top, night, job.scope)
        metric_gates = _metric_gates(spark, job, floors, run_date, index) if floors else []
        gates = check_gates(night_stats(night), churn, job.max_unscored, job.max_churn,
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
            _finish(record, "blocked", started, message=message)
            raise GateFailed(message + "; nothing written to the index")
        if not any(counts.values()):
            _append_log(spark, log_ref, record.row("unchanged", None, version_before))
            if job.export_changes:
                _export(spark.createDataFrame([], "qid string"), job.export_changes)
            return _finish(record, "unchanged", started, version_after=version_before)
        if not exists:
            _create_index(spark, job.index)
            record = record.with_version_before(_version(spark, job.index))
        try:
            _merge(spark, job, index, top, night)
        except Exception as err:  # logged, then raised: the index is as it was
            _append_log(spark, log_ref, record.row("failed", _one_line(err),
                                                   _version(spark, job.index)))
            raise
        version_after = _version(spark, job.index)
        committed = _merge_metrics(spark, job.index)
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


def _check_night_exists(night: DataFrame, job: PublishJob) -> None:
    if night.limit(1).count():
        return
    spark = night.sparkSession
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
    table = _delta_table(spark, job.index)
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
    spark.sparkContext.setJobDescription(f"publish: MERGE into {job.index}")
    merge.execute()


def _with_fault(source: DataFrame) -> DataFrame:
    if os.environ.get("GROUPRANK_TEST_FAULT") != FAULT_MERGE_FAILS:
        return source

    @F.udf("boolean")
    def dies(_qid):
        raise RuntimeError("injected fault: the MERGE's job dies before its commit")

    return source.where(dies("qid"))


def _rollback(spark: SparkSession, job: PublishJob, log_ref: str, started: float) -> dict:
    if not _index_exists(spark, job.index):
        raise ValueError(f"--index {job.index} does not exist: nothing to roll back")
    current = _version(spark, job.index)
    target, night = job.to_version, None
    if target is None:
        target, night = _last_publish(spark, log_ref, job.index)
    if not 0 <= target < current:
        raise ValueError(f"--to-version {target} is not an earlier version of {job.index} "
                         f"(current version {current})")
    _delta_table(spark, job.index).restoreToVersion(target)
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
    print_summary(f"rolled back {job.index} to version {target} (now version {after}; "
                  f"{counts[INSERT]} inserted, {counts[UPDATE]} updated, "
                  f"{counts[DELETE]} deleted)", summary)
    return summary


def _last_publish(spark: SparkSession, log_ref: str, index: str) -> tuple[int, dt.date]:
    """The version before the newest publish since the last rollback, and its night."""
    if not _index_exists(spark, log_ref):
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
    lines = [f"publish {job.run_date} -> {job.index}: {outcome}; "
             f"{record.counts[INSERT]} to insert, {record.counts[UPDATE]} to update, "
             f"{record.counts[DELETE]} to delete"]
    if outcome in ("published", "unchanged"):
        lines[0] += f" (version {record.version_before} -> {version_after})"
    for g in record.gates:
        value = "n/a" if g.value is None else f"{g.value:.4g}"
        lines.append(f"  gate {g.gate:<22} {value:>8}  limit {g.limit:g}  "
                     f"{'pass' if g.passed else 'FAIL'}")
    if plan is not None:
        shown = plan.orderBy("qid", "rank").limit(_SHOWN_CHANGES).collect()
        lines.append(f"  changes (first {len(shown)}):")
        lines += [f"    {r['change']:<6} {r['qid']} rank {r['rank']}: {r['docid']} "
                  f"({r['score']:.4f})" for r in shown]
    print_summary("\n".join(lines), summary)
    return summary


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


def _index_exists(spark: SparkSession, ref: str) -> bool:
    from delta.tables import DeltaTable

    if is_path(ref):
        return DeltaTable.isDeltaTable(spark, spark_path(ref))
    return spark.catalog.tableExists(ref)


def _delta_table(spark: SparkSession, ref: str):
    from delta.tables import DeltaTable

    if is_path(ref):
        return DeltaTable.forPath(spark, spark_path(ref))
    return DeltaTable.forName(spark, ref)


def _create_index(spark: SparkSession, ref: str) -> None:
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).addColumns(SERVING)
    builder = builder.location(spark_path(ref)) if is_path(ref) else builder.tableName(ref)
    for key, value in _TABLE_PROPERTIES.items():
        builder = builder.property(key, value)
    builder.execute()


def _version(spark: SparkSession, ref: str) -> int:
    return int(_delta_table(spark, ref).history(1).select("version").first()[0])


def _merge_metrics(spark: SparkSession, ref: str) -> dict[str, int]:
    metrics = _delta_table(spark, ref).history(1).select("operationMetrics").first()[0]
    return {INSERT: int(metrics.get("numTargetRowsInserted", 0)),
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


def main(argv: list[str] | None = None) -> int:
    return run_job("publish", PublishJob, run, argv, __doc__,
                   errors=(ValueError, FileNotFoundError, GateFailed))


if __name__ == "__main__":
    sys.exit(main())
