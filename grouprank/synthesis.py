"""Answer-free training-data synthesis (GroupRank section 3.2, Algorithm 1), without Spark.

Per query: sample a candidate pool (the first-stage top plus random hard negatives), rank it with
a pointwise and a listwise teacher, fuse the two rankings, give each document a calibrated 0-10
target, and cut sub-lists of several sizes from the fused ranking. No relevance labels are read.

Calibration rule (why): the fused order decides *which* document is better, but the absolute
level of a score should still say *how good* it is. So the pointwise teacher's own 0-10 scores
are sorted and handed out again in fused order: the best fused document gets the highest
pointwise score, and so on. Targets keep the fused order exactly (non-increasing along it) and
the pointwise teacher's distribution of levels (a pool with nothing useful stays low).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from grouprank.settings import SynthesisSettings, parse_group_sizes

SFT, RL = "sft", "rl"


def query_rng(seed: int, qid: str, purpose: str) -> np.random.Generator:
    """A generator that depends only on (seed, qid, purpose): same on every worker and rerun."""
    digest = hashlib.blake2b(f"{seed}\x00{qid}\x00{purpose}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def split_of(qid: str, settings: SynthesisSettings) -> str:
    """``rl`` for a seeded ``rl_fraction`` of queries, else ``sft``: a query is never in both."""
    return RL if query_rng(settings.seed, qid, "split").random() < settings.rl_fraction else SFT


def sample_pool(num_candidates: int, qid: str, settings: SynthesisSettings) -> list[int]:
    """Indices (0-based first-stage positions) of a query's pool, in first-stage order.

    The top ``pool_top`` always; then ``pool_size - pool_top`` drawn without replacement from
    positions ``pool_top .. pool_depth - 1``. A query with fewer candidates than the pool size
    keeps them all.

    Example:
        >>> sample_pool(8, "q1", SynthesisSettings(pool_size=5, pool_top=2, pool_depth=8))[:2]
        [0, 1]
    """
    available = min(num_candidates, settings.pool_depth)
    if available <= settings.pool_size:
        return list(range(available))
    rng = query_rng(settings.seed, qid, "pool")
    tail = rng.choice(
        np.arange(settings.pool_top, available), settings.pool_size - settings.pool_top, replace=False
    )
    return list(range(settings.pool_top)) + sorted(int(i) for i in tail)


def ranks_from_scores(scores: Sequence[float], tiebreak: Sequence[int]) -> list[int]:
    """1-based ranks by score descending; ties go to the smaller ``tiebreak`` value.

    Example:
        >>> ranks_from_scores([0.2, 0.9, 0.2], tiebreak=[1, 2, 3])
        [2, 1, 3]
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], tiebreak[i]))
    ranks = [0] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def fuse_ranks(pointwise: Sequence[int], listwise: Sequence[int], beta: float) -> list[float]:
    """S(d) = -beta * log L_p(d) - (1 - beta) * log L_l(d); higher is better.

    Example:
        >>> [round(s, 4) for s in fuse_ranks([1, 2], [2, 1], 0.5)]
        [-0.3466, -0.3466]
    """
    return [-beta * math.log(p) - (1 - beta) * math.log(l) for p, l in zip(pointwise, listwise)]


def calibrated_targets(fused_ranks: Sequence[int], pointwise_scores: Sequence[float]) -> list[float]:
    """The pointwise scores, sorted, handed out in fused order (see the module docstring).

    Example:
        >>> calibrated_targets([2, 1, 3], [9.0, 4.0, 1.0])
        [4.0, 9.0, 1.0]
    """
    levels = sorted(pointwise_scores, reverse=True)
    return [levels[r - 1] for r in fused_ranks]


def interval_sample(pool: int, size: int, rng: np.random.Generator) -> list[int]:
    """``size`` positions of a ranking of ``pool`` items, one per equal-width interval.

    A random offset inside the first interval, then a fixed stride, so every sample spans the
    whole ranking from the best to the worst documents.

    Example:
        >>> interval_sample(10, 5, np.random.default_rng(0))
        [1, 3, 5, 7, 9]
    """
    stride = pool / size
    offset = rng.uniform(0, stride)
    return [min(pool - 1, int(offset + i * stride)) for i in range(size)]


@dataclass(frozen=True)
class Sample:
    """One training sample: documents in prompt order with their targets."""

    positions: list[int]  # indices into the pool, in prompt order
    target_scores: list[float]
    target_ranks: list[int]


def cut_samples(
    label_ranks: Sequence[int], targets: Sequence[float], qid: str, settings: SynthesisSettings
) -> list[Sample]:
    """Cuts sub-lists of the configured sizes from a pool's fused label ranking.

    Each sample's target ranking is the global ranking projected onto its documents; the prompt
    order is a seeded shuffle so the position of a document says nothing about its label.
    Sizes larger than the pool are skipped.
    """
    pool = len(label_ranks)
    by_label = sorted(range(pool), key=lambda i: label_ranks[i])
    rng = query_rng(settings.seed, qid, "samples")
    sizes = [s for s in parse_group_sizes(settings.group_sizes) if s <= pool]
    if not sizes:
        return []
    rng.shuffle(sizes)
    samples = []
    for k in range(settings.samples_per_query):
        size = sizes[k % len(sizes)]
        chosen = [by_label[p] for p in interval_sample(pool, size, rng)]
        order = [chosen[i] for i in rng.permutation(len(chosen))]
        projected = ranks_from_scores([-label_ranks[i] for i in order], tiebreak=order)
        samples.append(Sample(order, [targets[i] for i in order], projected))
    return samples


def completion_text(target_scores: Sequence[float], target_ranks: Sequence[int]) -> str:
    """The SFT completion in the paper's format, with integer scores and a short ordering.

    Example:
        >>> completion_text([7.2, 1.0], [1, 2])
        '<reason>From most to least useful: [1] > [2].</reason><answer>```json {"[1]": 7, "[2]": 1}```</answer>'
    """
    order = sorted(range(len(target_ranks)), key=lambda i: target_ranks[i])
    reason = "From most to least useful: " + " > ".join(f"[{i + 1}]" for i in order) + "."
    answer = json.dumps({f"[{i + 1}]": int(round(s)) for i, s in enumerate(target_scores)})
    return f"<reason>{reason}</reason><answer>```json {answer}```</answer>"
