"""Prefill without waste: shared prefixes, length batching and sdpa give today's scores.

Every expectation is computed without the code under test: one plain forward pass per
probability on the unpadded prompt (``_hand_expected``, ``_next_logits``).
"""

from __future__ import annotations

import pytest
import torch

from grouprank.backends import GroupInput, GroupResult
from grouprank.backends.causal_lm import CausalLMScorer
from grouprank.backends.lm import (
    forward_step,
    load_causal_lm,
    prefill,
    shared_prefixes,
    token_batches,
)
from grouprank.backends.pointwise import YesNoScorer, join_documents
from grouprank.prompts import load_template, template_for
from grouprank.settings import RerankSettings
from tests.test_direct_mode import _hand_expected

TOLERANCE = 1e-4
# Three queries: one with three groups of different lengths, one with two, one with one; mixed
# order, so batching by length and prefix clusters must both restore the input order.
GROUPS = [
    GroupInput("what is bm25", ("a ranking function for search", "a fish", "x y z")),
    GroupInput("the lazy dog", ("the quick brown fox jumps over the lazy dog " * 3, "a dog")),
    GroupInput("what is bm25", ("bm25 bm25", "okapi")),
    GroupInput("only one", ("a single group for this query",)),
    GroupInput("what is bm25", ("the quick brown fox " * 5, "0 1 2 3", "ranking", "fish")),
    GroupInput("the lazy dog", ("dogs",)),
]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return CausalLMScorer.from_pretrained(tiny_model_dir, load_template(), name="tiny")


def _next_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def test_shared_prefixes_cluster_rows_by_their_longest_shared_prefix():
    # Rows 0, 1 and 3 share [1, 2]; row 2 shares only [1] and runs alone; row 3 is a prefix of
    # row 0, so the cut leaves it one token of suffix.
    prompts = [[1, 2, 3, 4], [1, 2, 5], [1, 7, 8], [1, 2]]
    prefixes, row_prefix, cuts = shared_prefixes(prompts)
    assert [prefixes[p] for p in row_prefix] == [[1], [1], [1, 7], [1]]
    assert cuts == [1, 1, 2, 1]
    assert shared_prefixes([[1, 2], [3, 4]]) is None
    assert shared_prefixes([[5, 6, 7]]) is None


def test_token_batches_keep_a_key_together_within_the_budget():
    lengths = [10, 40, 12, 38, 11, 9]
    keys = ["a", "b", "a", "b", "a", "c"]
    batches = token_batches(lengths, budget=100, keys=keys)
    assert sorted(i for b in batches for i in b) == list(range(6))
    flat = [keys[i] for b in batches for i in b]
    assert flat == ["c", "a", "a", "a", "b", "b"]  # keys by their longest item, each contiguous
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100


def test_prefill_with_shared_prefixes_matches_plain_forward_passes(scorer):
    prompts = [scorer.prompt_ids(g) for g in GROUPS]
    assert shared_prefixes(prompts) is not None
    model = scorer.model
    with torch.inference_mode():
        logits, mask, cache = prefill(model, prompts, scorer._pad, scorer._cache_arg)
        for row, ids in enumerate(prompts):
            assert torch.allclose(logits[row], _next_logits(model, ids), atol=TOLERANCE)
        # The cache holds every row's own prompt: one more token reads as a full forward does.
        extra = [5 + row for row in range(len(prompts))]
        step = torch.tensor(extra)[:, None]
        mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], 1)
        after, _ = forward_step(model, step, mask, cache, scorer._cache_arg)
    for row, ids in enumerate(prompts):
        assert torch.allclose(after[row], _next_logits(model, ids + [extra[row]]), atol=TOLERANCE)


def test_direct_scores_with_shared_prefixes_match_hand_computation(scorer, monkeypatch):
    widths = []
    real_forward = scorer.model.forward

    def spy(*args, **kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(scorer.model, "forward", spy)
    results = scorer.score_groups(GROUPS)
    monkeypatch.undo()
    # One batch: the first pass runs one row per prefix cluster, fewer than the six groups.
    assert widths[0][0] < len(GROUPS)
    assert len(results) == len(GROUPS)
    for group, result in zip(GROUPS, results, strict=True):
        assert result.scores == pytest.approx(_hand_expected(scorer, group), abs=TOLERANCE)
        assert result.prompt_tokens == len(scorer.prompt_ids(group))


def test_small_batches_give_the_same_scores_in_input_order(scorer):
    together = scorer.score_groups(GROUPS)
    scorer.batch_tokens = 1  # every group alone: no padding, no shared prefix
    try:
        alone = scorer.score_groups(GROUPS)
    finally:
        scorer.batch_tokens = 16384
    for a, b in zip(together, alone, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=TOLERANCE)


def test_sdpa_is_used_and_scores_as_eager_attention(tiny_model_dir, scorer):
    from transformers import AutoModelForCausalLM

    assert scorer.model.config._attn_implementation == "sdpa"
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    eager_scorer = CausalLMScorer(eager, scorer.tokenizer, scorer.template, name="eager")
    for a, b in zip(scorer.score_groups(GROUPS), eager_scorer.score_groups(GROUPS), strict=True):
        assert a.scores == pytest.approx(b.scores, abs=TOLERANCE)


def test_yes_no_with_shared_prefixes_matches_one_document_at_a_time(tiny_model_dir):
    model, tokenizer = load_causal_lm(tiny_model_dir)
    yesno = YesNoScorer(model, tokenizer, template_for(RerankSettings(paradigm="pointwise")),
                        name="tiny")
    results = yesno.score_groups(GROUPS)
    for group, result in zip(GROUPS, results, strict=True):
        expected = []
        for text in group.texts:
            logits = _next_logits(model, yesno.prompt_ids(group.query, text)).double()
            pair = torch.softmax(logits[[yesno.yes_token, yesno.no_token]], -1)
            expected.append(10.0 * float(pair[0]))
        assert result.scores == pytest.approx(expected, abs=10 * TOLERANCE)


def test_a_scorer_returning_too_few_results_or_scores_fails_naming_the_group(scorer, monkeypatch):
    real = scorer._direct
    monkeypatch.setattr(scorer, "_direct", lambda p, s: real(p, s)[:-1])
    with pytest.raises(RuntimeError, match=r"1 results for a batch of 2 groups \(groups \[\d, \d\]\)"):
        scorer.score_groups(GROUPS[:2])

    def one_score_short(prompts, sizes):
        out = real(prompts, sizes)
        first = out[0]
        out[0] = GroupResult(first.scores[:-1], first.statuses[:-1], first.prompt_tokens, 0)
        return out

    monkeypatch.setattr(scorer, "_direct", one_score_short)
    with pytest.raises(RuntimeError, match=r"of tiny's group 0 \(query 'what is bm25'\)"):
        scorer.score_groups(GROUPS[:1])
    with pytest.raises(RuntimeError, match="2 single-document results for 3 documents"):
        join_documents([GroupInput("q", ("a", "b", "c"))], [GroupResult([1.0], ["ok"], 1, 0)] * 2)
