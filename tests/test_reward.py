"""The group-ranking reward against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from grouprank.reward import (
    ALIGNMENT,
    INVALID_JSON_REWARD,
    NDCG,
    NO_FORMAT_REWARD,
    RECALL,
    alignment,
    completion_reward,
    group_ranking_reward,
    group_reward,
    ndcg_at_k,
    recall_at_k,
)


def _answer(scores: dict[int, float]) -> str:
    body = ", ".join(f'"[{i}]": {s}' for i, s in scores.items())
    return f"<reason>compared</reason><answer>```json {{{body}}}```</answer>"


def test_ndcg_by_hand():
    # Gains 3, 2, 0 ranked as [2, 0, 1]: DCG = 0 + 3/log2(3) + 2/2; ideal = 3 + 2/log2(3).
    dcg = 3 / math.log2(3) + 2 / 2
    ideal = 3 + 2 / math.log2(3)
    assert ndcg_at_k([2, 0, 1], [3.0, 2.0, 0.0]) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([0, 1, 2], [3.0, 2.0, 0.0]) == pytest.approx(1.0)
    assert ndcg_at_k([1, 0], [0.0, 0.0]) == 0.0


def test_ndcg_cuts_at_ten():
    gains = [0.0] * 11 + [5.0]
    # The only useful document ranked 11th counts nothing; ranked 10th counts 1/log2(11).
    assert ndcg_at_k(list(range(12)), gains) == 0.0
    order = list(range(9)) + [11, 9, 10]
    assert ndcg_at_k(order, gains) == pytest.approx(1 / math.log2(11))


def test_recall_is_one_for_small_groups_and_counts_the_target_top_ten():
    assert recall_at_k([4, 3, 2, 1, 0], [1, 2, 3, 4, 5]) == 1.0
    target = list(range(20))  # document 19 is best; the target top 10 is 10..19
    assert recall_at_k(list(range(20)), target) == 0.0
    assert recall_at_k(list(range(5, 25)), list(range(25))) == pytest.approx(0.0)
    half = [19, 18, 17, 16, 15, 0, 1, 2, 3, 4] + list(range(5, 15))
    assert recall_at_k(half, target) == pytest.approx(0.5)


def test_alignment_by_hand():
    # P = (1, 0) vs Q = (1/2, 1/2) up to eps: M = (3/4, 1/4);
    # JS = 1/2 * log2(4/3) + 1/2 * (1/2 log2(2/3) + 1/2 log2(2)) = 0.3113.
    expected = 1 - (0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5))
    assert alignment([10, 0], [5, 5]) == pytest.approx(expected, abs=2e-3)
    assert alignment([3, 3, 3], [7, 7, 7]) == pytest.approx(1.0)


def test_group_reward_terms_and_ablations():
    predicted, target = [1.0, 9.0, 5.0], [2.0, 8.0, 6.0]
    full = group_reward(predicted, target)
    ndcg = 1.0  # same order as the target
    recall = 1.0  # group of 3 <= 10
    assert full == pytest.approx(ndcg + 0.2 * recall + 0.1 * alignment(predicted, target))
    assert group_reward(predicted, target, terms=[NDCG]) == pytest.approx(1.0)
    assert group_reward(predicted, target, terms=[RECALL]) == pytest.approx(0.2)
    assert group_reward(predicted, target, terms=[ALIGNMENT]) < 0.1
    with pytest.raises(ValueError, match="unknown reward terms"):
        group_reward(predicted, target, terms=["mrr"])
    with pytest.raises(ValueError, match="one prediction per target"):
        group_reward([1.0], target)


def test_reversed_order_scores_less_than_the_target_order():
    target = [9.0, 7.0, 5.0, 3.0, 1.0]
    assert group_reward([1, 3, 5, 7, 9], target) < group_reward([9, 7, 5, 3, 1], target)


def test_format_gate():
    target = [2.0, 9.0]
    good = completion_reward(_answer({1: 1, 2: 8}), target)
    assert good == pytest.approx(group_reward([1.0, 8.0], target))
    assert completion_reward("<answer>```json {\"[1]\": 1, </answer>", target) == INVALID_JSON_REWARD
    assert completion_reward("<reason>no answer</reason>", target) == NO_FORMAT_REWARD
    assert completion_reward("", target) == NO_FORMAT_REWARD
    # An answer that leaves out a document predicts 0 for it (here: the best one, ranked last).
    partial = completion_reward(_answer({1: 4}), target)
    assert partial == pytest.approx(group_reward([4.0, 0.0], target))
    # Out-of-range scores are not clipped into range: the document counts as 0.
    assert completion_reward(_answer({1: 1, 2: 42}), target) == pytest.approx(
        group_reward([1.0, 0.0], target)
    )


def test_trl_signature_reads_plain_and_conversational_completions():
    plain = [_answer({1: 9, 2: 1}), "nothing"]
    chat = [[{"role": "assistant", "content": plain[0]}], [{"role": "assistant", "content": "x"}]]
    targets = [[9.0, 1.0], [9.0, 1.0]]
    assert group_ranking_reward(plain, target_scores=targets) == group_ranking_reward(
        chat, target_scores=targets
    )
    rewards = group_ranking_reward(plain, target_scores=targets, reward_terms=[NDCG])
    assert rewards == [pytest.approx(1.0), NO_FORMAT_REWARD]
