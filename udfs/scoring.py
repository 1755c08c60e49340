"""The scoring UDF: group rows in, one row per scored document out (``mapInPandas``).

Operating limits, as for ``pyspark.ml.functions.predict_batch_udf``: the model is loaded inside
the Python worker by a factory and cached there, keyed by its settings, so with
``spark.python.worker.reuse`` (the default) each worker loads it once and keeps it for every
later task. Memory per worker is one model plus one batch of groups: budget
``spark.executor.pyspark.memory`` (or the executor memory overhead) for the model weights
(~0.6 GB for the default, ~15 GB for a 7B model in bf16) plus activations bounded by
``--batch-tokens``. On GPU clusters each task uses the GPU Spark assigned to it.
"""

from __future__ import annotations

import logging
import os
import resource
from typing import Callable, Hashable, Iterator, TypeVar

import pandas as pd

from grouprank.backends import GroupInput, GroupScorer
from grouprank.settings import RerankSettings
from schemas.reranked import GROUP_SCORES

log = logging.getLogger(__name__)
T = TypeVar("T")

# Per-worker model cache and a load counter (benchmarks read it to prove one load per worker).
_MODELS: dict[Hashable, object] = {}
_LOADS = 0


def task_device() -> str:
    """The device for this task: the GPU Spark assigned, else the first visible GPU, else CPU."""
    import torch
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    if gpus is not None and gpus.addresses and torch.cuda.is_available():
        return f"cuda:{gpus.addresses[0]}"
    if torch.cuda.is_available():
        return "cuda:0"
    # On CPU use the cores Spark gave this task (spark.task.cpus), not every core of the host.
    cpus = context.cpus() if context is not None else os.cpu_count() or 1
    torch.set_num_threads(max(1, cpus))
    return "cpu"


def cached(key: Hashable, factory: Callable[[], T]) -> T:
    """Returns the object cached in this Python worker under ``key``, building it once.

    Every model a UDF uses (reranker, teacher, encoder) goes through here, so each worker loads
    each model once and ``worker_model_loads`` counts the loads.
    """
    global _LOADS
    if key not in _MODELS:
        _MODELS[key] = factory()
        _LOADS += 1
    return _MODELS[key]


def get_scorer(settings: RerankSettings, device: str) -> GroupScorer:
    """Loads the reranking scorer once per Python worker and returns the cached one afterwards."""
    from grouprank.models import load_scorer

    return cached((settings.scorer_key(), device), lambda: load_scorer(settings, device))


def score_groups_udf(
    settings: RerankSettings, chunk_groups: int = 64
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function that scores rows of ``schemas.SCORING_GROUPS``.

    The returned closure captures only the settings (a small frozen dataclass); the model is
    loaded in the worker. Its output follows ``schemas.GROUP_SCORES``.

    Example:
        >>> groups.mapInPandas(score_groups_udf(settings), GROUP_SCORES)  # doctest: +SKIP
    """

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = None
        for batch in batches:
            if batch.empty:
                continue
            if scorer is None:
                scorer = get_scorer(settings, task_device())
            for start in range(0, len(batch), chunk_groups):
                yield _score_chunk(scorer, batch.iloc[start : start + chunk_groups])

    return score


def _score_chunk(scorer: GroupScorer, chunk: pd.DataFrame) -> pd.DataFrame:
    groups = [
        GroupInput(
            query=str(query),
            texts=tuple(str(t) for t in texts),
            first_stage=tuple(float(s) for s in scores),
        )
        for query, texts, scores in zip(chunk["query"], chunk["texts"], chunk["scores"])
    ]
    results = scorer.score_groups(groups)
    pid = os.getpid()
    # ru_maxrss is in KiB on Linux.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    rows = []
    for (qid, repeat, group, docids), result in zip(
        chunk[["qid", "repeat", "group", "docids"]].itertuples(index=False), results
    ):
        for docid, score, status in zip(docids, result.scores, result.statuses):
            rows.append(
                (qid, repeat, group, docid, score, status, result.prompt_tokens,
                 result.generated_tokens, pid, _LOADS, peak_mb)
            )
    frame = pd.DataFrame(rows, columns=GROUP_SCORES.fieldNames())
    frame["model_score"] = frame["model_score"].astype("float64")
    return frame
