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

That model still gives a weak first stage 14-21% of the blend, where the head alone is better
on every BM25 list. ``logistic_weight`` is the other rule a checkpoint can carry
(``fusion_center``, ``fusion_slope``): the head alone below the agreement ``center``, a fast
hand-over to the first stage above it. ``FusionRule`` is whichever of the two a checkpoint
carries; the held-out benchmark chooses between them per fold on the other collections. Either
can carry an ``echo`` threshold: a first stage that agrees with the encoder at or above it is the
encoder's own ranking, whose information the head already reads (a head with MaxSim beats MiniLM's
own dense ranking alone), so the head scores alone.

The first stage enters the fusion by its rank (``rank_prior``), never its score's scale or
distribution: BM25 scores, dot products and calibrated probabilities of one order fuse alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def logistic_weight(agreement: float, center: float, slope: float) -> float:
    """The reranker's fusion weight by a logistic step in the ``agreement``: 1/2 at ``center``,
    towards 1 (the head alone) below it and towards 0 (the first stage) above, ``slope`` setting
    how fast.

    Example:
        >>> [round(logistic_weight(a, 0.65, 20), 3) for a in (0.4, 0.65, 0.75, 1.0)]
        [0.993, 0.5, 0.119, 0.001]
    """
    return 1.0 / (1.0 + math.exp(min(slope * (agreement - center), 700.0)))


@dataclass(frozen=True)
class FusionRule:
    """How a checkpoint sets its fusion weight from a table's mean first-stage agreement:
    ``agreement_weight`` at ``reliability``, or ``logistic_weight`` at ``center`` and ``slope``
    (exactly one of the two forms).

    Example:
        >>> FusionRule(center=0.65, slope=20).weight(0.4) > FusionRule(reliability=0.85).weight(0.4)
        True
        >>> FusionRule(reliability=0.85, center=0.6, slope=10)
        Traceback (most recent call last):
        ...
        ValueError: a fusion rule is fusion_reliability or fusion_center with fusion_slope, not both
    """

    reliability: float | None = None
    center: float | None = None
    slope: float | None = None
    # At or above this agreement the head scores alone (weight 1); None = never.
    echo: float | None = None

    def __post_init__(self) -> None:
        if (self.center is None) != (self.slope is None):
            raise ValueError("fusion_center and fusion_slope are set together")
        if self.reliability is not None and self.center is not None:
            raise ValueError("a fusion rule is fusion_reliability or fusion_center with "
                             "fusion_slope, not both")
        if self.reliability is None and self.center is None:
            raise ValueError("a fusion rule needs fusion_reliability or fusion_center and "
                             "fusion_slope")
        if self.reliability is not None and not 0.0 < self.reliability < 1.0:
            raise ValueError(f"fusion_reliability must be in (0, 1), got {self.reliability}")
        if self.center is not None and not -1.0 <= self.center <= 1.0:
            raise ValueError(f"fusion_center must be in [-1, 1], got {self.center}")
        if self.slope is not None and not self.slope > 0.0:
            raise ValueError(f"fusion_slope must be > 0, got {self.slope}")
        if self.echo is not None and not 0.0 < self.echo <= 1.0:
            raise ValueError(f"fusion_echo must be in (0, 1], got {self.echo}")

    @classmethod
    def from_config(cls, config) -> FusionRule | None:
        """The rule a group-encoder config carries (``fusion_reliability``, ``fusion_center``,
        ``fusion_slope``), or None for a fixed fusion weight."""
        values = {"reliability": getattr(config, "fusion_reliability", None),
                  "center": getattr(config, "fusion_center", None),
                  "slope": getattr(config, "fusion_slope", None)}
        echo = getattr(config, "fusion_echo", None)
        if not any(v is not None for v in values.values()):
            if echo is not None:
                raise ValueError("fusion_echo needs a rule: fusion_reliability or fusion_center "
                                 "with fusion_slope")
            return None
        return cls(**values, echo=echo)

    def weight(self, agreement: float) -> float:
        """The reranker's fusion weight for a table of mean first-stage ``agreement``."""
        if self.echo is not None and agreement >= self.echo:
            return 1.0
        if self.reliability is not None:
            return agreement_weight(agreement, self.reliability)
        return logistic_weight(agreement, self.center, self.slope)

    def describe(self) -> dict:
        """The rule's parameters, as the job summary records them."""
        echo = {} if self.echo is None else {"echo": self.echo}
        if self.reliability is not None:
            return {"rule": "reliability", "reliability": self.reliability, **echo}
        return {"rule": "logistic", "center": self.center, "slope": self.slope, **echo}


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
