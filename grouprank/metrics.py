"""Retrieval metrics as parsed values, computed with trec_eval's semantics; no Spark import.

A metric is a hashable value parsed from its name, as in ir_measures: ``parse_metric("ndcg@10")``
gives ``Metric("nDCG", 10)``, printed and stored as ``nDCG@10``; a typo fails loudly. Per-query
values follow trec_eval (and so pytrec_eval):

- the run is ordered by score descending, ties by docid descending; its own ranks are ignored;
- a document is relevant when its judgement is >= 1; unjudged documents count as non-relevant;
- nDCG uses the judgement itself as the gain (graded, linear), a log2(rank + 1) discount, and an
  ideal DCG computed from every judged document of the query, retrieved or not;
- Recall@k divides by every relevant document of the query; P@k divides by k; MRR@k is 1 / rank of
  the first relevant document within the top k; MAP(@k) divides by every relevant document.

``jobs/stages/evaluate.py`` orders and joins in Spark and calls ``query_value`` per query, so these
definitions are the only ones in the project.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

# Canonical name -> accepted spellings (lower case). Stored and printed with the canonical name.
_ALIASES: dict[str, tuple[str, ...]] = {
    "nDCG": ("ndcg", "ndcg_cut"),
    "Recall": ("recall", "r"),
    "P": ("p", "precision"),
    "MRR": ("mrr", "rr", "recip_rank"),
    "MAP": ("map", "ap", "map_cut"),
}
_BY_ALIAS = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
# Metrics that are undefined without a cutoff.
_NEEDS_CUTOFF = {"Recall", "P"}
_SPELLING = re.compile(r"^\s*([A-Za-z_]+)\s*(?:[@.]\s*(\S+))?\s*$")

RELEVANCE_LEVEL = 1
"""Judgements at or above this level count as relevant for the binary metrics (trec_eval -l 1)."""


class MetricError(ValueError):
    """A metric name that cannot be parsed."""


@dataclass(frozen=True, order=True)
class Metric:
    """A parsed metric: a canonical name and an optional rank cutoff.

    Example:
        >>> str(Metric("nDCG", 10)), str(Metric("MAP"))
        ('nDCG@10', 'MAP')
    """

    # One of nDCG, Recall, P, MRR, MAP.
    name: str
    # Only the top `cutoff` documents count; None = the whole ranking.
    cutoff: int | None = None

    def __post_init__(self) -> None:
        if self.name not in _ALIASES:
            raise MetricError(f"unknown metric {self.name!r}; known: {', '.join(_ALIASES)}")
        if self.cutoff is not None and self.cutoff < 1:
            raise MetricError(f"{self.name} cutoff must be >= 1, got {self.cutoff}")
        if self.cutoff is None and self.name in _NEEDS_CUTOFF:
            raise MetricError(f"{self.name} needs a cutoff, e.g. {self.name}@10")

    def __str__(self) -> str:
        return self.name if self.cutoff is None else f"{self.name}@{self.cutoff}"


def parse_metric(text: str) -> Metric:
    """Parses a metric name, case-insensitively, with ``@`` or ``.`` before the cutoff.

    Example:
        >>> parse_metric("ndcg@10"), str(parse_metric("recip_rank.10")), str(parse_metric("map"))
        (Metric(name='nDCG', cutoff=10), 'MRR@10', 'MAP')
    """
    match = _SPELLING.match(text or "")
    if not match:
        raise MetricError(f"cannot parse metric {text!r}; write e.g. ndcg@10, recall@100, map")
    alias, cutoff = match.group(1).lower(), match.group(2)
    if alias not in _BY_ALIAS:
        raise MetricError(
            f"unknown metric {match.group(1)!r} in {text!r}; known: "
            + ", ".join(f"{n} ({'/'.join(a)})" for n, a in _ALIASES.items())
        )
    if cutoff is not None and not cutoff.isdigit():
        raise MetricError(f"cutoff {cutoff!r} in {text!r} is not a positive integer")
    return Metric(_BY_ALIAS[alias], int(cutoff) if cutoff is not None else None)


def parse_metrics(text: str) -> tuple[Metric, ...]:
    """Parses a comma-separated list, keeping order and dropping repeats.

    Example:
        >>> [str(m) for m in parse_metrics("ndcg@10, recall@100,NDCG@10")]
        ['nDCG@10', 'Recall@100']
    """
    metrics = [parse_metric(part) for part in text.split(",") if part.strip()]
    if not metrics:
        raise MetricError(f"no metric in {text!r}")
    return tuple(dict.fromkeys(metrics))


def deepest_cutoff(metrics: Sequence[Metric]) -> int | None:
    """The deepest rank any metric reads, or None when one reads the whole ranking.

    Example:
        >>> deepest_cutoff(parse_metrics("ndcg@10,recall@100")), deepest_cutoff([Metric("MAP")])
        (100, None)
    """
    if any(m.cutoff is None for m in metrics):
        return None
    return max(m.cutoff for m in metrics)  # type: ignore[type-var]


def query_value(metric: Metric, ranked: Sequence[int], judged: Sequence[int]) -> float:
    """One query's value of ``metric``.

    Args:
        metric: what to compute.
        ranked: the judgement of each retrieved document in trec_eval order (score descending,
            ties by docid descending), 0 for unjudged documents.
        judged: every judgement the qrels hold for the query (any order, zeros included).

    Example:
        >>> round(query_value(parse_metric("ndcg@3"), [0, 2, 1], [2, 1, 0]), 6)  # by hand below
        0.669672
        >>> (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3))  # doctest: +ELLIPSIS
        0.6696...
    """
    top = ranked if metric.cutoff is None else ranked[: metric.cutoff]
    num_rel = sum(1 for rel in judged if rel >= RELEVANCE_LEVEL)
    if metric.name == "nDCG":
        ideal = _dcg(sorted(judged, reverse=True)[: metric.cutoff])
        return _dcg(top) / ideal if ideal > 0 else 0.0
    if metric.name == "Recall":
        return _hits(top) / num_rel if num_rel else 0.0
    if metric.name == "P":
        return _hits(top) / metric.cutoff  # type: ignore[operator]
    if metric.name == "MRR":
        return next((1.0 / i for i, rel in enumerate(top, 1) if rel >= RELEVANCE_LEVEL), 0.0)
    # MAP: precision at each relevant retrieved document, over every relevant document.
    hits, total = 0, 0.0
    for i, rel in enumerate(top, 1):
        if rel >= RELEVANCE_LEVEL:
            hits += 1
            total += hits / i
    return total / num_rel if num_rel else 0.0


def _dcg(gains: Sequence[int]) -> float:
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, 1) if g > 0)


def _hits(rels: Sequence[int]) -> int:
    return sum(1 for rel in rels if rel >= RELEVANCE_LEVEL)


MODEL_SCORE_MAX = 10.0
"""Model scores run from 0 to this; calibration reads ``score / MODEL_SCORE_MAX`` as the
predicted chance that a document is relevant."""


@dataclass(frozen=True)
class CalibrationBin:
    """The documents whose model score fell in one bin: how many, their mean predicted chance of
    relevance (score / 10) and the share of them judged relevant (unjudged count as not)."""

    # 0-based; bin b of n covers model scores [10 b / n, 10 (b + 1) / n), the last one with 10.
    index: int
    documents: int
    confidence: float
    relevant_share: float


def calibration_bin(score: float, bins: int) -> int:
    """The bin of a 0-10 model score among ``bins`` equal bins (10 falls in the last one).

    Example:
        >>> calibration_bin(0.0, 10), calibration_bin(3.99, 10), calibration_bin(10.0, 10)
        (0, 3, 9)
    """
    return min(max(int(score / MODEL_SCORE_MAX * bins), 0), bins - 1)


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float:
    """ECE: the document-weighted mean gap between the predicted chance and the relevant share.

    Example:
        >>> expected_calibration_error([CalibrationBin(2, 3, 0.25, 0.0),
        ...                             CalibrationBin(8, 1, 0.85, 1.0)])  # (3*.25 + .15) / 4
        0.225
    """
    total = sum(b.documents for b in bins)
    if not total:
        return 0.0
    gaps = sum(b.documents * abs(b.relevant_share - b.confidence) for b in bins)
    return round(gaps / total, 12)


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two runs on one metric, over the queries both were scored on."""

    metric: str
    queries: int
    # Mean of (run - baseline) over the paired queries.
    mean_difference: float
    wins: int
    ties: int
    losses: int
    # Two-sided p-value of the paired test; 1.0 when every difference is zero.
    p_value: float
    test: str


def compare_runs(
    metric: str,
    run: Mapping[str, float],
    baseline: Mapping[str, float],
    test: Literal["randomisation", "t-test"] = "randomisation",
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compares per-query values of a run with a baseline's: mean difference, wins/ties/losses,
    and a paired two-sided test (scipy's paired permutation test, or its paired t-test).

    Only queries present in both mappings are paired; there must be at least two.

    Example:
        >>> c = compare_runs("nDCG@10", {"1": .5, "2": .7, "3": .2}, {"1": .4, "2": .7, "3": .1})
        >>> (c.wins, c.ties, c.losses, round(c.mean_difference, 6))
        (2, 1, 0, 0.066667)
    """
    from scipy import stats

    if test not in ("randomisation", "t-test"):
        raise ValueError(f"test must be 'randomisation' or 't-test', got {test!r}")
    qids = sorted(set(run) & set(baseline))
    if len(qids) < 2:
        raise ValueError(f"{metric}: need at least 2 queries scored in both runs, got {len(qids)}")
    diffs = [run[q] - baseline[q] for q in qids]
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    if not wins and not losses:
        p_value = 1.0
    elif test == "t-test":
        p_value = float(stats.ttest_rel([run[q] for q in qids], [baseline[q] for q in qids]).pvalue)
    else:
        result = stats.permutation_test(
            ([run[q] for q in qids], [baseline[q] for q in qids]),
            lambda a, b, axis: (a - b).mean(axis=axis),
            permutation_type="samples",
            n_resamples=resamples,
            alternative="two-sided",
            random_state=seed,
        )
        p_value = float(result.pvalue)
    return Comparison(
        metric=metric,
        queries=len(qids),
        mean_difference=sum(diffs) / len(diffs),
        wins=wins,
        ties=len(qids) - wins - losses,
        losses=losses,
        p_value=p_value,
        test=test,
    )
