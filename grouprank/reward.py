"""The group-ranking reward of GroupRank's RL stage (paper section 3.3), as plain functions.

    R = format gate(completion) -> R_G = NDCG@10 + 0.2 * Recall@10 + 0.1 * (1 - JS(P || Q))

Two choices the paper leaves open, and what this module does:

* **Relevance for NDCG and Recall.** A sample has no human labels, only the synthesized 0-10
  targets and their ranking. NDCG@10 uses the target *scores* as graded gains (linear, so a 9 is
  worth three times a 3): it rewards putting high-target documents on top, in proportion to how
  much better the targets say they are. Recall@10 counts the target's own top 10 as the relevant
  set (the documents a cut at 10 should keep). It never has an empty relevant set, and it is
  always 1 for groups of 10 or fewer, where the whole group fits in the cut; there only NDCG and
  JS tell completions apart.
* **P and Q for Jensen-Shannon.** Scores are turned into distributions over the group's documents
  by their share of the group's total (``(s + eps) / sum``), not by a softmax: a softmax depends on
  the arbitrary scale of 0-10 scores (a temperature to tune), while shares keep "all low" and "all
  high" groups distinguishable only through their relative mass, which is what alignment should
  measure. ``eps`` keeps an all-zero group defined (uniform). JS uses log base 2, so it lies in
  [0, 1] and the alignment term in [0, 0.1].

A predicted ranking sorts documents by predicted score, best first; ties keep prompt order (the
samples' prompt order is a seeded shuffle, so ties are not biased towards the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from grouprank.parsing import parse_answer
from grouprank.settings import ALIGNMENT, ALL_TERMS, NDCG, RECALL

# The reward's weights (paper: NDCG@10 + 0.2 Recall@10 + 0.1 (1 - JS)).
TERM_WEIGHTS = {NDCG: 1.0, RECALL: 0.2, ALIGNMENT: 0.1}
CUTOFF = 10
# Format gate: tags present but the JSON inside broken; no answer tags at all.
INVALID_JSON_REWARD = -0.1
NO_FORMAT_REWARD = -0.5
_EPS = 1e-3


def predicted_order(scores: Sequence[float]) -> list[int]:
    """Indices sorted best first by score; ties keep their input order.

    Example:
        >>> predicted_order([3, 9, 3, 7])
        [1, 3, 0, 2]
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def ndcg_at_k(order: Sequence[int], gains: Sequence[float], k: int = CUTOFF) -> float:
    """NDCG@k of a ranking (document indices, best first) with linear graded gains.

    Returns 0.0 when every gain is 0 (no ranking can be better than another).

    Example:
        >>> round(ndcg_at_k([1, 0], [2.0, 1.0]), 4)  # (1 + 2/log2 3) / (2 + 1/log2 3)
        0.8597
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    got = np.asarray([gains[i] for i in order[:k]], dtype=float)
    ideal = np.sort(np.asarray(gains, dtype=float))[::-1][:k]
    best = float(ideal @ discounts[: len(ideal)])
    if best <= 0.0:
        return 0.0
    return float(got @ discounts[: len(got)]) / best


def recall_at_k(order: Sequence[int], target_scores: Sequence[float], k: int = CUTOFF) -> float:
    """Share of the target's top k found in the ranking's top k (1.0 for groups of k or fewer).

    Example:
        >>> recall_at_k([0, 1, 2], [1.0, 2.0, 3.0], k=2)  # target top 2 = {2, 1}; found {1}
        0.5
    """
    relevant = set(predicted_order(target_scores)[:k])
    return len(relevant.intersection(order[:k])) / len(relevant)


def alignment(predicted: Sequence[float], target: Sequence[float]) -> float:
    """1 - Jensen-Shannon divergence (base 2) between the groups' score shares; in [0, 1].

    Example:
        >>> round(alignment([2, 4, 6], [1, 2, 3]), 4)  # same shares
        1.0
        >>> round(alignment([10, 0], [0, 10]), 3)
        0.001
    """
    p = np.asarray(predicted, dtype=float) + _EPS
    q = np.asarray(target, dtype=float) + _EPS
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    js = 0.5 * float(np.sum(p * np.log2(p / m))) + 0.5 * float(np.sum(q * np.log2(q / m)))
    return 1.0 - min(1.0, max(0.0, js))


def group_reward(
    predicted: Sequence[float],
    target: Sequence[float],
    terms: Sequence[str] = ALL_TERMS,
    order: Sequence[int] | None = None,
) -> float:
    """R_G for one group: the weighted sum of the chosen ``terms`` (ablations drop some).

    ``order`` is the predicted ranking; by default it is sorted from ``predicted``.

    Example:
        >>> round(group_reward([8, 4, 2], [4, 2, 1]), 4)  # perfect order, same shares
        1.3
    """
    unknown = set(terms) - set(ALL_TERMS)
    if unknown:
        raise ValueError(f"unknown reward terms {sorted(unknown)}; choose from {list(ALL_TERMS)}")
    if len(predicted) != len(target) or not target:
        raise ValueError(f"need one prediction per target, got {len(predicted)} for {len(target)}")
    ranking = list(order) if order is not None else predicted_order(predicted)
    value = 0.0
    if NDCG in terms:
        value += TERM_WEIGHTS[NDCG] * ndcg_at_k(ranking, target)
    if RECALL in terms:
        value += TERM_WEIGHTS[RECALL] * recall_at_k(ranking, target)
    if ALIGNMENT in terms:
        value += TERM_WEIGHTS[ALIGNMENT] * alignment(predicted, target)
    return value


def completion_reward(completion: str, target: Sequence[float], terms: Sequence[str] = ALL_TERMS) -> float:
    """The gated reward of one generated completion against its sample's 0-10 targets.

    Answer tags present and the JSON valid -> R_G, with a document the answer left out (or gave an
    out-of-range score) predicted as 0; tags present but no valid JSON -> -0.1; no tags -> -0.5.

    Example:
        >>> completion_reward('<answer>```json {"[1]": 2, "[2]": 8}```</answer>', [1.0, 9.0]) > 1
        True
        >>> completion_reward('<answer>{"[1]": 2,</answer>', [1.0, 9.0])
        -0.1
        >>> completion_reward('[1] > [2]', [1.0, 9.0])
        -0.5
    """
    parsed = parse_answer(completion, len(target))
    if not parsed.has_tags:
        return NO_FORMAT_REWARD
    if not parsed.json_valid:
        return INVALID_JSON_REWARD
    predicted = [s if s is not None else 0.0 for s in parsed.scores]
    return group_reward(predicted, target, terms)


def group_ranking_reward(
    completions: list[Any], target_scores: list[Sequence[float]], **kwargs: Any
) -> list[float]:
    """TRL reward function: one gated reward per completion, targets from the dataset column.

    Accepts plain-text completions and conversational ones (lists of chat messages, the last
    message's content is read). Pass ``reward_terms`` through ``functools.partial`` for ablations.
    """
    terms = kwargs.get("reward_terms", ALL_TERMS)
    rewards = []
    for completion, target in zip(completions, target_scores, strict=True):
        if isinstance(completion, list):
            completion = completion[-1]["content"] if completion else ""
        rewards.append(completion_reward(str(completion), list(target), terms))
    return rewards

