"""Pointwise scoring: every document judged alone, one model call per (query, document).

Two scorers behind ``GroupScorer``; the groups the job passes in only decide which documents
arrive together, never how they are scored. Every document of every group is scored in one pool,
sorted by prompt length (a query's documents side by side) and cut into padded batches of at most
``batch_tokens`` tokens, so a batch mixes documents of several queries (the batching the
Qwen3-Reranker and rank_llm pointwise examples use). The prefix a query's documents share in a
batch (system turn and query) is prefilled once, as in the groupwise scorer
(``grouprank.backends.lm.prefill``), so neither paradigm pays for the other's savings.

- ``YesNoScorer``: one forward pass per document; the score is
  ``10 * P(yes) / (P(yes) + P(no))`` from the next-token logits of the two answer words.
- ``PointwiseScoreScorer``: the 0-10 score of a one-document prompt, read at the answer slot
  exactly as groupwise direct mode reads it (it *is* ``CausalLMScorer`` in direct mode on
  one-document groups).
"""

from __future__ import annotations

from typing import Sequence

import torch

from grouprank.backends.base import GroupInput, GroupResult
from grouprank.backends.causal_lm import CausalLMScorer
from grouprank.backends.lm import (
    LoadedCausalLM,
    chat_prompt_ids,
    check_results,
    prefill,
    token_batches,
)
from grouprank.parsing import OK
from grouprank.prompts import PromptTemplate, YesNoTemplate


class YesNoScorer(LoadedCausalLM):
    """Pointwise relevance as the probability of "yes" against "no" (implements ``GroupScorer``).

    Takes ``LoadedCausalLM``'s arguments, with a ``YesNoTemplate``.
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer, template: YesNoTemplate, **shared
    ) -> None:
        super().__init__(model, tokenizer, template, **shared)
        self.yes_token = _answer_token(tokenizer, template, template.yes)
        self.no_token = _answer_token(tokenizer, template, template.no)
        if self.yes_token == self.no_token:
            raise ValueError(
                f"the answer words {template.yes!r} and {template.no!r} start with the same token; "
                "change `yes`/`no` in the pointwise template"
            )

    def prompt_ids(self, query: str, text: str) -> list[int]:
        """Token ids of the judgement prompt for one (query, document), answer position last."""
        (cut,) = self.truncate([text])
        messages = self.template.messages(query, [cut])
        return chat_prompt_ids(self.tokenizer, messages, self.template.answer_prefix.format())

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        singles = split_documents(groups)
        prompts = [self.prompt_ids(g.query, g.texts[0]) for g in singles]
        queries = [g.query for g in singles]
        p_yes = [0.0] * len(prompts)
        for batch in token_batches([len(p) for p in prompts], self.batch_tokens, queries):
            with torch.inference_mode():
                logits, _, _ = prefill(
                    self.model, [prompts[i] for i in batch], self._pad, self._cache_arg
                )
            pair = logits[:, [self.yes_token, self.no_token]].double()
            for i, p in zip(batch, torch.softmax(pair, dim=-1)[:, 0].tolist(), strict=True):
                p_yes[i] = p
        per_document = [
            GroupResult(scores=[10.0 * p], statuses=[OK], prompt_tokens=len(ids),
                        generated_tokens=0)
            for p, ids in zip(p_yes, prompts, strict=True)
        ]
        return check_results(groups, join_documents(groups, per_document), self.name)


class PointwiseScoreScorer:
    """Pointwise 0-10 scores read like groupwise direct mode (implements ``GroupScorer``).

    Takes ``LoadedCausalLM``'s arguments, with a ``PromptTemplate`` for one document.
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer, template: PromptTemplate, **shared
    ) -> None:
        self._direct = CausalLMScorer(model, tokenizer, template, mode="direct", **shared)
        self.name = self._direct.name

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        joined = join_documents(groups, self._direct.score_groups(split_documents(groups)))
        return check_results(groups, joined, self.name)


def split_documents(groups: Sequence[GroupInput]) -> list[GroupInput]:
    """One single-document group per document, in group order then document order.

    Example:
        >>> groups = [GroupInput("q", ("a", "b")), GroupInput("r", ("c",))]
        >>> [g.texts for g in split_documents(groups)]
        [('a',), ('b',), ('c',)]
    """
    return [GroupInput(g.query, (text,)) for g in groups for text in g.texts]


def join_documents(
    groups: Sequence[GroupInput], per_document: Sequence[GroupResult]
) -> list[GroupResult]:
    """Gathers single-document results (``split_documents`` order) back into one per group.

    Token counts add up over the group's documents: they are the cost of the group's calls.
    Raises ``RuntimeError`` unless there is exactly one result per document.

    Example:
        >>> one = lambda s: GroupResult([s], ["ok"], 10, 1)
        >>> r = join_documents([GroupInput("q", ("a", "b"))], [one(2.0), one(7.0)])
        >>> r[0].scores, r[0].prompt_tokens, r[0].generated_tokens
        ([2.0, 7.0], 20, 2)
    """
    expected = sum(len(g.texts) for g in groups)
    if len(per_document) != expected:
        raise RuntimeError(
            f"{len(per_document)} single-document results for {expected} documents"
        )
    results, start = [], 0
    for group in groups:
        part = per_document[start : start + len(group.texts)]
        start += len(group.texts)
        results.append(
            GroupResult(
                scores=[r.scores[0] for r in part],
                statuses=[r.statuses[0] for r in part],
                prompt_tokens=sum(r.prompt_tokens for r in part),
                generated_tokens=sum(r.generated_tokens for r in part),
            )
        )
    return results


def _answer_token(tokenizer, template: YesNoTemplate, word: str) -> int:
    """The first token of ``word`` as the model would write it right after the answer prefix."""
    prefix = template.answer_prefix.format()
    base = tokenizer(prefix, add_special_tokens=False).input_ids if prefix else []
    ids = tokenizer(prefix + word, add_special_tokens=False).input_ids
    if ids[: len(base)] != base or len(ids) == len(base):
        raise ValueError(f"the answer word {word!r} merges with the answer prefix {prefix!r}")
    return ids[len(base)]
