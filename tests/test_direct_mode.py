"""Direct and reason decoding on a tiny random Llama, against a hand computation."""

from __future__ import annotations

import pytest
import torch

from grouprank.backends import GroupInput
from grouprank.backends.causal_lm import CausalLMScorer
from grouprank.backends.lm import token_batches
from grouprank.parsing import OK, UNPARSED
from grouprank.prompts import load_template

GROUPS = [
    GroupInput("what is bm25", ("a ranking function for search", "a fish", "x y z", "bm25 bm25")),
    GroupInput("second query", ("only one document here",)),
    GroupInput("third", ("alpha", "beta")),
]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return CausalLMScorer.from_pretrained(tiny_model_dir, load_template(), name="tiny")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def _next_probs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits.double(), -1)


def _hand_expected(scorer: CausalLMScorer, group: GroupInput) -> list[float]:
    """Exact expected scores, one full forward per probability, no cache and no padding."""
    tok, model = scorer.tokenizer, scorer.model
    digit = {d: _ids(tok, str(d))[0] for d in range(10)}
    ids = scorer.prompt_ids(group)
    expected = []
    for k in range(1, len(group.texts) + 1):
        p1 = _next_probs(model, ids)
        p2 = _next_probs(model, ids + [digit[1]])
        longer = sum(p2[digit[d]] for d in range(10))
        p = {s: p1[digit[s]] for s in range(10)}
        p[1] = p1[digit[1]] * (1 - longer)
        p[10] = p1[digit[1]] * p2[digit[0]]
        total = sum(p.values())
        expected.append(float(sum(s * v / total for s, v in p.items())))
        best = max(p, key=lambda s: float(p[s]))
        ids = ids + _ids(tok, str(best)) + _ids(tok, scorer.template.slot_text(k + 1))
    return expected


def test_ten_is_two_tokens_in_the_tiny_tokenizer(scorer):
    assert len(_ids(scorer.tokenizer, "10")) == 2


def test_direct_scores_match_hand_computation_in_a_padded_batch(scorer):
    results = scorer.score_groups(GROUPS)
    for group, result in zip(GROUPS, results):
        assert result.statuses == [OK] * len(group.texts)
        assert result.scores == pytest.approx(_hand_expected(scorer, group), abs=1e-4)
        assert all(0.0 <= s <= 10.0 for s in result.scores)


def test_direct_scores_do_not_depend_on_batching(scorer):
    together = scorer.score_groups(GROUPS)
    alone = [scorer.score_groups([g])[0] for g in GROUPS]
    for a, b in zip(together, alone):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)


def test_scores_differ_between_documents(scorer):
    # Guards against a scorer that returns one constant.
    scores = scorer.score_groups(GROUPS[:1])[0].scores
    assert max(scores) - min(scores) > 0.01


def test_truncation_limits_document_tokens(tiny_model_dir):
    short = CausalLMScorer.from_pretrained(
        tiny_model_dir, load_template(), name="tiny", max_doc_tokens=3
    )
    long_text = "the quick brown fox jumps over the lazy dog " * 20
    (cut,) = short.truncate([long_text])
    assert len(_ids(short.tokenizer, cut)) <= 3
    assert short.truncate(["fox"]) == ["fox"]


def test_reason_mode_marks_unusable_output_unparsed(tiny_model_dir):
    reason = CausalLMScorer.from_pretrained(
        tiny_model_dir, load_template(), name="tiny", mode="reason", max_new_tokens=8
    )
    (result,) = reason.score_groups(GROUPS[2:])
    # A random model does not produce the answer format: no score may be invented.
    assert result.scores == [None, None]
    assert result.statuses == [UNPARSED, UNPARSED]
    assert 0 < result.generated_tokens <= 8
    assert result.output is not None


def test_token_batches_respect_the_budget():
    lengths = [5, 100, 6, 7, 50, 50]
    batches = token_batches(lengths, budget=100)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= 100


def test_groups_longer_than_the_context_window_are_cut_to_fit(tiny_model_dir):
    scorer = CausalLMScorer.from_pretrained(
        tiny_model_dir, load_template(), name="tiny", max_doc_tokens=2000
    )
    limit = scorer.model.config.max_position_embeddings
    long_doc = "the quick brown fox jumps over the lazy dog " * 300  # ~2,700 tokens each
    group = GroupInput("fox", tuple([long_doc] * 6))
    (result,) = scorer.score_groups([group])
    assert result.statuses == ["truncated"] * 6
    assert all(0 <= s <= 10 for s in result.scores)
    assert result.prompt_tokens + result.generated_tokens <= limit
    # A group that cannot fit even at one token per document is marked, not crashed on.
    huge = GroupInput("fox", tuple(["fox"] * (limit // 2)))
    (too_long,) = scorer.score_groups([huge])
    assert too_long.scores == [None] * len(huge.texts)
    assert set(too_long.statuses) == {"too_long"}


def test_out_of_memory_splits_batches_then_cuts_documents(tiny_model_dir, monkeypatch):
    # No GPU here: simulate an accelerator that holds one group of at most 700 prompt tokens.
    scorer = CausalLMScorer.from_pretrained(tiny_model_dir, load_template(), name="tiny")
    real = scorer._direct
    calls = []

    def limited(prompts, sizes):
        calls.append((len(prompts), max(len(p) for p in prompts)))
        if len(prompts) > 1 or max(len(p) for p in prompts) > 700:
            raise torch.OutOfMemoryError("simulated")
        return real(prompts, sizes)

    monkeypatch.setattr(scorer, "_direct", limited)
    long_doc = "the quick brown fox jumps over the lazy dog " * 40
    groups = [GroupInput("q", ("a short one",)), GroupInput("q", (long_doc, long_doc, long_doc))]
    short, long = scorer.score_groups(groups)
    assert short.statuses == ["ok"] and short.scores[0] is not None
    assert long.statuses == ["truncated"] * 3 and None not in long.scores
    assert calls[0][0] == 2  # tried together first, then split, then cut
    assert any(n == 1 and length <= 700 for n, length in calls[1:])
    # A device that never has room: every level is tried, then the group is marked.
    monkeypatch.setattr(scorer, "_direct", lambda p, s: (_ for _ in ()).throw(torch.OutOfMemoryError()))
    (oom,) = scorer.score_groups(groups[1:])
    assert oom.statuses == ["out_of_memory"] * 3 and oom.scores == [None] * 3
