"""The one-time set-up after install: Delta Lake's jars into the jar cache, then a check.

    grouprank setup                      # what scripts/install.sh runs
    grouprank setup --no-check-session --no-jvm-archive   # fill the jar cache only

Resolves ``delta-spark``'s Maven package with Ivy once, into ``jobs.session.jar_cache_dir()``,
keeping only the jars pyspark does not ship (``jobs.session.fill_jar_cache``); every job after
that passes them with ``spark.jars`` and never runs Ivy. It then writes the driver JVM's
class-data-sharing archive (``jobs.session.write_jvm_archive``), which local jobs' JVMs start
from. Last it starts a one-core local session from both and writes and reads back a one-row
Delta table, so a jar the cache lacks shows here rather than in the first night's job. A full
cache and an existing archive are not made again.
"""

from __future__ import annotations

import logging

from jobs.configs import SetupJob
from jobs.session import (
    DeltaJarsMissing,
    cached_jars,
    check_delta,
    delta_package,
    fill_jar_cache,
    get_session,
    jar_cache_dir,
    jvm_archive,
    write_jvm_archive,
)

log = logging.getLogger("grouprank.setup")


def check(job: SetupJob) -> None:
    """Nothing to validate: the one flag is a switch."""


def run(job: SetupJob) -> dict:
    """Fills the jar cache unless it is full, writes the JVM class archive unless there is one
    (``jvm_archive``), then (``check_session``) checks a session started from both."""
    check(job)
    resolved = False
    try:
        jars = cached_jars()
    except DeltaJarsMissing:
        log.info("resolving %s into %s (once)", delta_package(), jar_cache_dir())
        fill_jar_cache()
        jars = cached_jars()
        resolved = True
    summary = {
        "job": "setup",
        "delta_package": delta_package(),
        "jar_cache": str(jar_cache_dir()),
        "jars": len(jars),
        "megabytes": round(sum(jar.stat().st_size for jar in jars) / 1e6, 1),
        "resolved_now": resolved,
        "jvm_archive": None,
        "archive_written_now": False,
        "spark_version": None,
    }
    if job.jvm_archive:
        archive = jvm_archive()
        if not archive.is_file():
            log.info("writing the JVM class archive %s (once)", archive)
            write_jvm_archive()
            summary["archive_written_now"] = True
        summary["jvm_archive"] = str(archive)
    if job.check_session:
        spark = get_session("grouprank-setup", master="local[1]")
        try:
            check_delta(spark)
            summary["spark_version"] = spark.version
        finally:
            spark.stop()
    return summary


def headline(summary: dict) -> str:
    """What the cache holds and whether a session started from it."""
    ready = (f"Spark {summary['spark_version']} with Delta Lake ready: "
             if summary["spark_version"] else "Delta Lake jar cache filled: ")
    size = f"{summary['megabytes']:.0f} MB"
    archive = f"; JVM class archive {summary['jvm_archive']}" if summary["jvm_archive"] else ""
    return f"{ready}{summary['jars']} jars ({size}) in {summary['jar_cache']}{archive}"
