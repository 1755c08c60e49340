"""Loading the model into a Python worker while the driver validates the input.

A job in a session it has just started pays for its first Python worker (process start, torch
import, weights) inside its first model stage, after the input's validation. On a local
machine that is most of a small job: 3.5 of the demo's 4.2 s embedding stage. The job instead
starts a one-task Spark job that loads the model, in a background thread, before validating,
and waits for it before its first model stage; that stage's first task then takes the idle
warmed worker, the model already cached (``udfs.cache``), instead of starting another worker
beside it that would load a second copy. Only for the first job of a local session this
process built (``jobs.session.first_job_in_new_local_session``): elsewhere workers may already
be warm, or a cluster's executors hold GPUs a worker left idle would keep a copy of the model on.
"""

from __future__ import annotations

import logging
import threading

from pyspark.sql import SparkSession

from grouprank.models import ModelRef
from grouprank.settings import RerankSettings
from jobs.embeddings import driver_precision
from jobs.progress import describe_jobs
from jobs.session import first_job_in_new_local_session
from schemas.reranked import WORKER_WARM_UP
from udfs.cache import warm_model_udf

log = logging.getLogger(__name__)
# The warm-up started in this process and not yet waited for (``wait_for_warm_worker``).
_PENDING: threading.Thread | None = None


def warm_a_worker(
    spark: SparkSession, settings: RerankSettings, ref: ModelRef
) -> threading.Thread:
    """Starts (and returns) the background thread whose one-task job loads ``ref`` in a Python
    worker; the job waits for it before its first model stage (``wait_for_warm_worker``). Its
    failure is only logged: the job's own stages load the model again and report any error
    there."""

    def load() -> None:
        try:
            with describe_jobs(spark, f"{ref.name}: loading the model in a worker"):
                spark.range(1, numPartitions=1).mapInPandas(
                    warm_model_udf(settings, ref), WORKER_WARM_UP).collect()
        except Exception as error:  # the session stopped first, or the model failed to load
            log.debug("warming a worker failed: %s", error)

    global _PENDING
    thread = threading.Thread(target=load, name="grouprank-warm-worker", daemon=True)
    thread.start()
    _PENDING = thread
    return thread


def warm_if_new_session(spark: SparkSession, settings: RerankSettings, ref: ModelRef) -> None:
    """``warm_a_worker`` at the precision the job will use, for the first job of a new local
    session only (``jobs.session.first_job_in_new_local_session``); otherwise nothing."""
    if first_job_in_new_local_session(spark):
        warm_a_worker(spark, driver_precision(settings, spark), ref)


def wait_for_warm_worker() -> None:
    """Waits for the warm-up this process started, if any, before the job's first model stage:
    its worker is then idle, so the stage's first task takes it with the model loaded instead of
    starting (and loading into) another worker beside it, which would hold a second copy."""
    global _PENDING
    if _PENDING is not None:
        _PENDING.join()
        _PENDING = None
