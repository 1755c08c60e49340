"""How far to trust the first stage: the fusion weight set by its agreement with the encoder.

A reranker over a weak first stage (BM25) should lean on its own scores; over a strong one
(SPLADE++, a hybrid) it should defer. The two can be told apart without judgments: a strong
first stage agrees more with the encoder's cosine (``first_stage_agreement``, the correlation of
log first-stage rank and log cosine rank, averaged over a table's queries: 0.35-0.47 for BM25 on
the dev collections, 0.60-0.65 for SPLADE++ and hybrids, 1.0 for the encoder's own dense
retrieval). ``agreement_weight`` turns that mean into the fusion weight.

The model: the first stage and the reranker are two noisy views of relevance. If their errors
were independent, the first stage's correlation with the encoder would be the product of each
one's correlation with relevance; taking the encoder side's as ``reliability``, the first
stage's is ``agreement / reliability``, and an optimal linear blend of two such views weights
each by ``ρ / (1 - ρ²)``. ``reliability`` is the one parameter, chosen leave-one-collection-out
(docs/BENCHMARKS.md) and saved in the checkpoint (``GroupEncoderConfig.fusion_reliability``).

The first stage enters the fusion by its rank (``rank_prior``), never its score's scale or
distribution: BM25 scores, dot products and calibrated probabilities of one order fuse alike.
"""

from __future__ import annotations

import numpy as np


def first_stage_share(agreement: float, reliability: float) -> float:
    """The first stage's share of a blend with a view of ``reliability``, given their
    ``agreement``.

    Example:
        >>> round(first_stage_share(0.35, 0.8), 2), round(first_stage_share(0.65, 0.8), 2)
        (0.2, 0.52)
    """
    if not 0.0 < reliability < 1.0:
        raise ValueError(f"reliability must be in (0, 1), got {reliability}")
    first = min(max(agreement / reliability, 0.0), 0.999)
    weight = first / (1 - first**2)
    return weight / (weight + reliability / (1 - reliability**2))


def agreement_weight(agreement: float, reliability: float) -> float:
    """The reranker's fusion weight (its share; the first stage gets the rest) for a table whose
    mean first-stage agreement is ``agreement``.

    Example:
        >>> round(agreement_weight(0.35, 0.8), 2), round(agreement_weight(0.65, 0.8), 2)
        (0.8, 0.48)
        >>> round(agreement_weight(1.0, 0.8), 3)  # the first stage is the encoder's own cosine
        0.004
    """
    return 1.0 - first_stage_share(agreement, reliability)


def rank_prior(rank, count):
    """The first stage's side of the fusion, read from its rank alone: ``1 - ln(rank) /
    ln(count)`` (1 for the top document, 0 for the last; 1 for a query of one document), where
    ``rank`` is the document's rank by first-stage score in its query (tied scores share the
    best rank) and ``count`` the query's documents. A rank, unlike the score, means the same
    for BM25 scores, dot products and calibrated probabilities, so the fusion does too. The
    reranking job computes the same in SQL (``jobs.stages.rerank.fuse_and_rank``).

    Example:
        >>> [round(float(p), 3) for p in rank_prior(np.array([1, 10, 100]), 100)]
        [1.0, 0.5, 0.0]
    """
    rank, count = np.asarray(rank, dtype=float), np.asarray(count, dtype=float)
    return np.where(count > 1, 1.0 - np.log(rank) / np.log(np.maximum(count, 2.0)), 1.0)
