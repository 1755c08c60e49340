"""Naming a job's stages, so a long run says what it is doing.

    with stage(spark, f"rerank: scoring {groups:,} groups"):
        scored.count()

Spark's UI, its event log and ``spark.sparkContext.statusTracker()`` show every Spark job started
inside the block under that description; the log gets the stage's start and its seconds. (The
console progress bar itself is switched on by ``jobs.session`` for interactive runs.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
_DESCRIPTION = "spark.job.description"


@contextmanager
def stage(spark: SparkSession, description: str) -> Iterator[None]:
    """Describes the Spark jobs started inside the block as ``description`` and logs the stage.

    The previous description is restored after the block, so stages nest. Under Spark Connect
    (no SparkContext) the jobs are tagged with the description instead.

    Example:
        >>> with stage(spark, "evaluate: 3 measures on 93 queries"):  # doctest: +SKIP
        ...     metrics.collect()
    """
    started = time.monotonic()
    log.info("%s", description)
    try:
        with describe_jobs(spark, description):
            yield
    finally:
        log.info("%s: done in %.1f s", description, time.monotonic() - started)


@contextmanager
def describe_jobs(spark: SparkSession, description: str) -> Iterator[None]:
    """``stage`` without its log lines: for background work that is not a step of the job."""
    restore = _describe(spark, description)
    try:
        yield
    finally:
        restore()


def _describe(spark: SparkSession, description: str):
    """Sets the description (classic) or a tag (Connect); returns the call that undoes it."""
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect has no SparkContext
        tag = "".join(c if c.isalnum() else "-" for c in description)[:100].strip("-") or "stage"
        spark.addTag(tag)
        return lambda: spark.removeTag(tag)
    previous = context.getLocalProperty(_DESCRIPTION)
    context.setLocalProperty(_DESCRIPTION, description)
    return lambda: context.setLocalProperty(_DESCRIPTION, previous)
