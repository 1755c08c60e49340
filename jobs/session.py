"""Getting a SparkSession with Delta Lake, locally or on a cluster.

    python -m jobs.session --warm     # fetch the Delta jars into Spark's Ivy cache once

On Databricks, under spark-submit with its own ``--packages``, or under Spark Connect, the session
that exists is used as it is. A plain local Python process gets a local session whose Delta jars
Spark resolves from Maven Central into ``~/.ivy2.5.2`` the first time (see DEVELOPERS.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Small-machine settings for local runs only; clusters keep their own.
_LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "8",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "4g",
}


def get_session(
    app_name: str = "grouprank", master: str | None = None, conf: dict[str, str] | None = None
) -> SparkSession:
    """Returns the active session, or builds one with Delta Lake configured.

    ``conf`` entries are applied last (over the local defaults) when a session is built.

    Example:
        >>> spark = get_session("rerank")  # doctest: +SKIP
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from pyspark import SparkConf

    overrides, conf = conf or {}, SparkConf()
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    resolved_master = master or conf.get("spark.master", "local[*]")
    for key, value in _DELTA_CONF.items():
        if not conf.contains(key):
            builder = builder.config(key, value)
    if resolved_master.startswith("local"):
        # Local Python workers must run this interpreter (the project's venv), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for key, value in _LOCAL_CONF.items():
            if not conf.contains(key):
                builder = builder.config(key, value)
    for key, value in overrides.items():
        builder = builder.config(key, value)
    packages = conf.get("spark.jars.packages", "") or ""
    if "delta-spark" not in packages and "DATABRICKS_RUNTIME_VERSION" not in os.environ:
        from delta import configure_spark_with_delta_pip

        others = [p for p in packages.split(",") if p]
        builder = configure_spark_with_delta_pip(builder, extra_packages=others)
    return builder.getOrCreate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="start a session once and stop it")
    args = parser.parse_args(argv)
    if args.warm:
        spark = get_session("grouprank-warm", master="local[1]")
        print(f"Spark {spark.version} with Delta Lake ready")
        spark.stop()


if __name__ == "__main__":
    main()
