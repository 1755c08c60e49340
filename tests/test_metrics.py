"""grouprank.metrics: parsing, hand-computed values, pytrec_eval parity, paired comparison."""

from __future__ import annotations

import math

import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from grouprank.metrics import (
    Metric,
    MetricError,
    compare_runs,
    deepest_cutoff,
    parse_metric,
    parse_metrics,
    query_value,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ndcg@10", "nDCG@10"),
        ("NDCG_CUT.5", "nDCG@5"),
        ("recall@100", "Recall@100"),
        ("R@10", "Recall@10"),
        ("mrr@10", "MRR@10"),
        ("recip_rank", "MRR"),
        ("map", "MAP"),
        ("AP@100", "MAP@100"),
        ("p@5", "P@5"),
        (" ndcg ", "nDCG"),
    ],
)
def test_parse_metric_canonical_names(text, expected):
    assert str(parse_metric(text)) == expected


def test_metric_is_a_hashable_value():
    assert parse_metric("ndcg@10") == Metric(name="nDCG", cutoff=10)
    assert len({parse_metric("ndcg@10"), parse_metric("NDCG.10")}) == 1


@pytest.mark.parametrize("text", ["ndgc@10", "ndcg@ten", "ndcg@0", "recall", "p", "", "ndcg@10x"])
def test_parse_metric_typos_fail_loudly(text):
    with pytest.raises(MetricError):
        parse_metric(text)


def test_parse_metrics_keeps_order_and_drops_repeats():
    assert [str(m) for m in parse_metrics("map, ndcg@10,NDCG@10")] == ["MAP", "nDCG@10"]
    with pytest.raises(MetricError):
        parse_metrics(" , ")


def test_deepest_cutoff():
    assert deepest_cutoff(parse_metrics("ndcg@10,recall@100")) == 100
    assert deepest_cutoff(parse_metrics("ndcg@10,map")) is None


def test_values_by_hand():
    # Ranked judgements [0, 2, 1, 0]; judged {2, 1, 1, 0}: three relevant documents.
    ranked, judged = [0, 2, 1, 0], [2, 1, 1, 0]
    dcg3 = 2 / math.log2(3) + 1 / math.log2(4)
    idcg3 = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert query_value(parse_metric("ndcg@3"), ranked, judged) == pytest.approx(dcg3 / idcg3)
    assert query_value(parse_metric("recall@2"), ranked, judged) == pytest.approx(1 / 3)
    assert query_value(parse_metric("p@4"), ranked, judged) == pytest.approx(2 / 4)
    assert query_value(parse_metric("mrr@10"), ranked, judged) == pytest.approx(1 / 2)
    assert query_value(parse_metric("mrr@1"), ranked, judged) == 0.0
    assert query_value(parse_metric("map"), ranked, judged) == pytest.approx((1 / 2 + 2 / 3) / 3)
    # Nothing retrieved, or nothing relevant: 0, not a division error.
    assert query_value(parse_metric("ndcg@10"), [], judged) == 0.0
    assert query_value(parse_metric("map"), [0, 0], [0, 0]) == 0.0


def _trec_order(run: dict[str, float]) -> list[str]:
    """trec_eval's order, written out independently: score desc, then docid desc."""
    return sorted(run, key=lambda d: (run[d], d), reverse=True)


_PYTREC = {
    "nDCG@5": "ndcg_cut_5", "nDCG@10": "ndcg_cut_10", "nDCG": "ndcg", "Recall@5": "recall_5",
    "Recall@100": "recall_100", "P@5": "P_5", "MAP": "map", "MAP@10": "map_cut_10",
}


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.25]), min_size=1, max_size=25),
    grades=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=30),
)
def test_parity_with_pytrec_eval(scores, grades):
    # Tied scores on purpose; judgements cover some retrieved and some unretrieved documents.
    run = {f"d{i:02d}": s for i, s in enumerate(scores)}
    qrels = {f"d{2 * i:02d}": g for i, g in enumerate(grades)}
    evaluator = pytrec_eval.RelevanceEvaluator(
        {"q": qrels}, {"ndcg_cut.5,10", "ndcg", "recall.5,100", "P.5", "map", "map_cut.10"}
    )
    expected = evaluator.evaluate({"q": run})["q"]
    ranked = [qrels.get(d, 0) for d in _trec_order(run)]
    for name, key in _PYTREC.items():
        got = query_value(parse_metric(name), ranked, list(qrels.values()))
        assert got == pytest.approx(expected[key], abs=1e-9), name
    # MRR@k: pytrec_eval's recip_rank over the run cut to its top 3.
    top3 = {d: run[d] for d in _trec_order(run)[:3]}
    rr = pytrec_eval.RelevanceEvaluator({"q": qrels}, {"recip_rank"}).evaluate({"q": top3})
    assert query_value(parse_metric("mrr@3"), ranked, list(qrels.values())) == pytest.approx(
        rr["q"]["recip_rank"], abs=1e-9
    )


def test_compare_runs_counts_and_tests():
    run = {"1": 0.5, "2": 0.7, "3": 0.2, "4": 0.9, "5": 0.4}
    base = {"1": 0.4, "2": 0.7, "3": 0.1, "4": 0.6, "5": 0.5, "only-base": 1.0}
    c = compare_runs("nDCG@10", run, base, test="t-test")
    assert (c.queries, c.wins, c.ties, c.losses) == (5, 3, 1, 1)
    assert c.mean_difference == pytest.approx((0.1 + 0 + 0.1 + 0.3 - 0.1) / 5)
    # Paired t by hand: differences d, t = mean / (sd / sqrt(n)) with 4 degrees of freedom.
    from scipy.stats import t as student_t

    d = [0.1, 0.0, 0.1, 0.3, -0.1]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    assert c.p_value == pytest.approx(2 * student_t.sf(mean / (sd / math.sqrt(5)), 4))
    # Exact randomisation test: 2^5 sign flips of |d|; p = share with |mean| >= observed.
    r = compare_runs("nDCG@10", run, base, test="randomisation")
    flips = [[s * abs(x) for s, x in zip(signs, d)] for signs in
             [[1 - 2 * ((k >> i) & 1) for i in range(5)] for k in range(32)]]
    extreme = sum(abs(sum(f) / 5) >= abs(mean) - 1e-12 for f in flips)
    assert r.p_value == pytest.approx(extreme / 32)


def test_compare_runs_edge_cases():
    same = compare_runs("MAP", {"1": 0.3, "2": 0.4}, {"1": 0.3, "2": 0.4})
    assert (same.ties, same.p_value) == (2, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        compare_runs("MAP", {"1": 0.3}, {"1": 0.2})
    with pytest.raises(ValueError, match="test must be"):
        compare_runs("MAP", {"1": 0.3, "2": 0.1}, {"1": 0.2, "2": 0.1}, test="wilcoxon")
