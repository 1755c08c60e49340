"""What a query's whole candidate list says about each of its groups, in numpy (no torch).

The group head scores one group at a time, but two of its inputs are read off the query's whole
list: its feedback vector (the normalised mean of its best documents' embeddings, by first-stage
rank and cosine fused) and how far its first stage agrees with the encoder. Training computes
them here; the reranking job too, once per query in a grouped pandas UDF
(``udfs.context.query_context_udf``), so both read the same numbers.
"""

from __future__ import annotations

import numpy as np


def feedback_order(ranks: np.ndarray, cosines: np.ndarray) -> np.ndarray:
    """Positions of a query's documents, best first, by ``-log(rank) - log(cosine rank)``
    (first-stage rank and cosine rank fused as the synthesis fuses its teachers with beta 0.5),
    computed exactly as the product of the two ranks; ties by first-stage rank, then position."""
    ranks = np.maximum(np.asarray(ranks, dtype=np.int64), 1)
    position = np.arange(len(cosines))
    return np.lexsort((position, ranks, ranks * _cosine_ranks(ranks, cosines)))


def _cosine_ranks(ranks: np.ndarray, cosines: np.ndarray) -> np.ndarray:
    """1-based ranks by cosine, highest first; ties by first-stage rank, then position."""
    position = np.arange(len(cosines))
    cos_rank = np.empty(len(cosines), dtype=np.int64)
    cos_rank[np.lexsort((position, ranks, -np.asarray(cosines)))] = position + 1
    return cos_rank


def first_stage_agreement(ranks: np.ndarray, cosines: np.ndarray) -> float:
    """How far a query's first stage agrees with the encoder over its documents: the Pearson
    correlation of log first-stage rank and log cosine rank (cosine ties by first-stage rank,
    then position, as ``feedback_order``); NaN for fewer than 3 documents or a constant side.

    Example:
        >>> round(first_stage_agreement(np.array([1, 2, 3]), np.array([0.9, 0.5, 0.1])), 3)
        1.0
    """
    ranks = np.maximum(np.asarray(ranks, dtype=np.int64), 1)
    if len(ranks) < 3:
        return float("nan")
    a, b = np.log(ranks), np.log(_cosine_ranks(ranks, cosines))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def feedback_vector(
    query: np.ndarray, docs: np.ndarray, ranks: np.ndarray, top: int
) -> np.ndarray:
    """The query's feedback vector: the normalised mean of the normalised embeddings of its
    ``top`` best documents by ``feedback_order`` (``docs`` (N, E), ``ranks`` (N,) 1-based)."""
    docs = docs / np.maximum(np.linalg.norm(docs, axis=-1, keepdims=True), 1e-12)
    q = query / max(float(np.linalg.norm(query)), 1e-12)
    chosen = feedback_order(ranks, docs @ q)[:top]
    mean = docs[chosen].mean(0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def query_context(
    query: np.ndarray, docs: np.ndarray, ranks: np.ndarray, top: int
) -> tuple[float, np.ndarray | None]:
    """A query's ``first_stage_agreement`` (over raw dot products, as the scorer computes it)
    and, for ``top`` > 0, its ``feedback_vector`` (else None), from its whole list: ``docs``
    (N, E) in the order that breaks ties, ``ranks`` (N,) 1-based first-stage ranks."""
    agreement = first_stage_agreement(ranks, docs @ query)
    return agreement, (feedback_vector(query, docs, ranks, top) if top else None)
