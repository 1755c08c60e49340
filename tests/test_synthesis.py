"""Synthesis math: pools, fusion, calibrated targets, multi-scale sub-lists, splits, SFT text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grouprank import synthesis as syn
from grouprank.parsing import parse_answer
from grouprank.teachers import parse_teacher

S = syn.SynthesisSettings()


def test_pool_takes_the_top_and_hard_negatives_from_the_depth():
    pool = syn.sample_pool(300, "q1", S)
    assert len(pool) == 50 and len(set(pool)) == 50
    assert pool[:10] == list(range(10))
    assert all(10 <= i < 200 for i in pool[10:])
    assert pool == sorted(pool)


def test_pool_is_reproducible_and_seeded():
    assert syn.sample_pool(300, "q1", S) == syn.sample_pool(300, "q1", S)
    assert syn.sample_pool(300, "q1", S) != syn.sample_pool(300, "q2", S)
    assert syn.sample_pool(300, "q1", S) != syn.sample_pool(300, "q1", syn.SynthesisSettings(seed=1))


@pytest.mark.parametrize("n", [1, 7, 49, 50])
def test_small_candidate_lists_keep_everything(n):
    assert syn.sample_pool(n, "q", S) == list(range(n))


def test_fusion_matches_hand_computation():
    fused = syn.fuse_ranks([1, 2, 3], [3, 1, 2], beta=0.5)
    hand = [-0.5 * math.log(3), -0.5 * math.log(2), -0.5 * (math.log(3) + math.log(2))]
    assert fused == pytest.approx(hand)
    assert syn.ranks_from_scores(fused, tiebreak=[1, 2, 3]) == [2, 1, 3]
    # beta = 1 is the pointwise ranking alone.
    only_p = syn.fuse_ranks([2, 1, 3], [1, 2, 3], beta=1.0)
    assert syn.ranks_from_scores(only_p, [1, 2, 3]) == [2, 1, 3]


def test_calibrated_targets_keep_fused_order_and_levels():
    rng = np.random.default_rng(0)
    pointwise = list(rng.uniform(0, 10, 30))
    labels = list(rng.permutation(30) + 1)
    targets = syn.calibrated_targets(labels, pointwise)
    along = [targets[labels.index(r)] for r in range(1, 31)]
    assert along == sorted(along, reverse=True)
    assert sorted(targets) == sorted(pointwise)


def test_samples_project_the_global_ranking():
    labels = list(np.random.default_rng(1).permutation(40) + 1)
    targets = [10.0 - 0.2 * r for r in labels]
    settings = syn.SynthesisSettings(group_sizes="5,10,20", samples_per_query=6)
    samples = syn.cut_samples(labels, targets, "q7", settings)
    assert len(samples) == 6
    assert sorted({len(s.positions) for s in samples}) == [5, 10, 20]
    for s in samples:
        assert len(set(s.positions)) == len(s.positions)
        # target rank order == global label order of the chosen documents
        by_target = sorted(range(len(s.positions)), key=lambda i: s.target_ranks[i])
        assert [labels[s.positions[i]] for i in by_target] == sorted(labels[p] for p in s.positions)
        assert s.target_scores == [targets[p] for p in s.positions]
        # interval sampling spans the ranking: something from the best and the worst interval
        chosen = sorted(labels[p] for p in s.positions)
        stride = 40 / len(s.positions)
        assert chosen[0] <= math.ceil(stride) and chosen[-1] > 40 - math.ceil(stride) - 1


def test_sizes_larger_than_the_pool_are_skipped():
    assert syn.cut_samples([1, 2, 3], [9.0, 5.0, 1.0], "q", S) == []
    small = syn.cut_samples([2, 1, 3], [5.0, 9.0, 1.0], "q", syn.SynthesisSettings(group_sizes="2-5"))
    assert {len(s.positions) for s in small} <= {2, 3}


def test_split_is_by_query():
    settings = syn.SynthesisSettings(rl_fraction=0.3)
    splits = {f"q{i}": syn.split_of(f"q{i}", settings) for i in range(1000)}
    assert all(syn.split_of(q, settings) == s for q, s in splits.items())
    share = sum(s == syn.RL for s in splits.values()) / 1000
    assert 0.25 < share < 0.35


def test_completion_parses_back_with_the_reranker_parser():
    scores, ranks = [7.4, 0.2, 10.0, 3.5], [2, 4, 1, 3]
    text = syn.completion_text(scores, ranks)
    parsed = parse_answer(text, 4)
    assert parsed.scores == [7.0, 0.0, 10.0, 4.0]
    assert parsed.has_tags and parsed.json_valid
    assert "[3] > [1] > [4] > [2]" in text


@pytest.mark.parametrize(
    "spec, kind, model, paradigm, scorer",
    [
        ("first-stage", "first-stage", None, None, None),
        ("encoder", "encoder", None, None, None),
        ("encoder:/models/e5", "encoder", "/models/e5", None, None),
        ("llm:default:listwise", "llm", "default", "listwise", None),
        ("llm:/m/q:pointwise:yesno", "llm", "/m/q", "pointwise", "yesno"),
    ],
)
def test_teacher_specs(spec, kind, model, paradigm, scorer):
    t = parse_teacher(spec)
    assert (t.kind, t.model, t.paradigm, t.scorer) == (kind, model, paradigm, scorer)
    assert t.id == spec


@pytest.mark.parametrize("spec", ["bm25", "llm:default", "llm:/m:sideways", ""])
def test_bad_teacher_specs_fail(spec):
    with pytest.raises(ValueError, match="first-stage | encoder"):
        parse_teacher(spec)


@pytest.mark.parametrize("kwargs", [{"pool_top": 60}, {"beta": 2.0}, {"group_sizes": "five"}])
def test_bad_settings_fail(kwargs):
    with pytest.raises(ValueError, match="invalid synthesis settings"):
        syn.SynthesisSettings(**kwargs)


@pytest.mark.parametrize("paradigm", ["pointwise:yesno", "pointwise:score", "listwise"])
def test_llm_teachers_score_a_whole_pool(tiny_model_dir, paradigm):
    from grouprank.backends import GroupInput
    from grouprank.teachers import load_teacher

    teacher = load_teacher(parse_teacher(f"llm:{tiny_model_dir}:{paradigm}"))
    pool = GroupInput("a query", tuple(f"document number {i}" for i in range(25)))
    (result,) = teacher.score_groups([pool])
    assert len(result.scores) == len(result.statuses) == 25
    assert sum(s is not None for s in result.scores) > 0
    for score, status in zip(result.scores, result.statuses):
        if status == "ok":
            assert score is not None
        if score is not None:
            assert 0.0 <= score <= 10.0
