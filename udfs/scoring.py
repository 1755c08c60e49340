"""The scoring UDF: group rows in, one row per scored document out (``mapInPandas``).

Operating limits, as for ``pyspark.ml.functions.predict_batch_udf``: the model is loaded inside
the Python worker by a factory and cached there (``udfs.cache``), keyed by the model's identity,
device and ``trust_remote_code``, so with ``spark.python.worker.reuse`` (the default) each worker
loads it once and keeps it for every later task; scoring knobs apply per call. Memory per worker
is one model plus one batch of groups: budget the executor memory overhead for the model weights
(~0.6 GB for the default, ~15 GB for a 7B model in bf16) plus activations bounded by
``--batch-tokens``. On GPU clusters each task uses the GPU Spark assigned to it.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Callable, Iterator

import pandas as pd

from grouprank.backends import GroupInput, GroupScorer
from grouprank.backends.base import check_result
from grouprank.models import ModelRef
from grouprank.settings import RerankSettings
from schemas.reranked import GROUP_SCORES
from udfs.cache import cached, loads, task_device

log = logging.getLogger(__name__)
# How often a worker logs its scoring rate.
_PROGRESS_SECONDS = 30.0


def get_scorer(settings: RerankSettings, ref: ModelRef, device: str) -> GroupScorer:
    """The scorer for ``settings`` on the weights this worker has cached for ``ref``."""
    from grouprank.models import load_backbone, scorer_for

    key = ("backbone", ref.spec, ref.digest, device, settings.trust_remote_code)
    backbone = cached(key, lambda: load_backbone(ref, device, settings.trust_remote_code))
    return scorer_for(backbone, ref, settings)


def score_groups_udf(
    settings: RerankSettings, ref: ModelRef, chunk_groups: int = 64
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function that scores rows of ``schemas.SCORING_GROUPS``.

    The returned closure captures only the settings and the model reference (small frozen
    dataclasses); the model is loaded in the worker. Its output follows ``schemas.GROUP_SCORES``.

    Example:
        >>> groups.mapInPandas(score_groups_udf(settings, ref), GROUP_SCORES)  # doctest: +SKIP
    """

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = None
        progress = _Progress()
        for batch in batches:
            if batch.empty:
                continue
            if scorer is None:
                scorer = get_scorer(settings, ref, task_device())
            for start in range(0, len(batch), chunk_groups):
                frame = _score_chunk(scorer, batch.iloc[start : start + chunk_groups])
                progress.add(len(frame))
                yield frame

    return score


class _Progress:
    """Logs this worker's documents scored and rate about every 30 s of a long task."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= _PROGRESS_SECONDS:
            self.last = now
            log.info("worker %d: %d documents scored, %.1f/s", os.getpid(), self.rows,
                     self.rows / (now - self.started))


def group_inputs(groups: pd.DataFrame) -> list[GroupInput]:
    """The model calls for rows of ``schemas.SCORING_GROUPS`` (its optional columns included)."""
    absent = [None] * len(groups)
    query_vectors = groups["query_vector"] if "query_vector" in groups.columns else absent
    vectors = groups["vectors"] if "vectors" in groups.columns else absent
    ranks = groups["ranks"] if "ranks" in groups.columns else [()] * len(groups)
    contexts = groups["context_vector"] if "context_vector" in groups.columns else absent
    agreements = (groups["first_stage_agreement"] if "first_stage_agreement" in groups.columns
                  else absent)
    lates = groups["lates"] if "lates" in groups.columns else absent
    return [
        GroupInput(
            query=str(query),
            texts=tuple(str(t) for t in texts),
            first_stage=tuple(float(s) for s in scores),
            first_stage_rank=tuple(int(r) for r in group_ranks),
            query_vector=query_vector,
            vectors=group_vectors,
            context_vector=context,
            first_stage_agreement=None if agreement is None or pd.isna(agreement)
            else float(agreement),
            late_scores=None if late is None
            else tuple(None if pd.isna(v) else float(v) for v in late),
        )
        for query, texts, scores, group_ranks, query_vector, group_vectors, context, agreement,
        late in zip(
            groups["query"], groups["texts"], groups["scores"], ranks, query_vectors, vectors,
            contexts, agreements, lates, strict=True,
        )
    ]


def _score_chunk(scorer: GroupScorer, chunk: pd.DataFrame) -> pd.DataFrame:
    groups = group_inputs(chunk)
    results = scorer.score_groups(groups)
    keys = chunk[["qid", "repeat", "group", "docids"]].itertuples(index=False)
    if len(results) != len(groups):
        raise RuntimeError(
            f"the scorer returned {len(results)} results for {len(groups)} groups"
        )
    pid = os.getpid()
    # ru_maxrss is in KiB on Linux.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    rows = []
    for (qid, repeat, group, docids), result in zip(keys, results, strict=True):
        check_result(result, len(docids), f"(qid {qid!r}, repeat {repeat}, group {group})")
        for docid, score, status in zip(docids, result.scores, result.statuses, strict=True):
            rows.append(
                (qid, repeat, group, docid, score, status, result.prompt_tokens,
                 result.generated_tokens, pid, loads(), peak_mb)
            )
    frame = pd.DataFrame(rows, columns=GROUP_SCORES.fieldNames())
    frame["model_score"] = frame["model_score"].astype("float64")
    return frame

