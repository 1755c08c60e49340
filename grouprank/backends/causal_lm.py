"""Groupwise scoring with a causal language model, in direct or reason mode.

Direct mode (the default) generates nothing freely. The prompt is followed by the answer skeleton
``{"[1]": `` and, at each document's slot, the model's probability over the allowed scores 0-10 is
read; the score is the expected value. Scores that take two tokens ("10" is "1" + "0" for many
tokenizers) are computed exactly: one extra step reads P("0" | "1"), and P(score = 1) keeps only the
mass of "1" not followed by another digit. The most likely score is then fed back (constrained
greedy decoding) before the next slot, so each document is read in the context of the answers
before it, as in free generation. Cost: one prefill per group plus a few tokens per document, with
the KV cache; all groups of a batch advance together. Groups are batched by prompt length with a
query's groups side by side, and the prefix those groups share (system turn and query) is
prefilled once per query and batch (``grouprank.backends.lm.prefill``).

Reason mode generates the paper's ``<reason>...</reason><answer>...</answer>`` output greedily and
parses it with ``grouprank.parsing``; unusable output is marked, never scored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from grouprank.backends.base import GroupInput, GroupResult
from grouprank.backends.lm import (
    LoadedCausalLM,
    chat_prompt_ids,
    check_results,
    forward_step,
    generate_greedy,
    left_pad,
    load_causal_lm,
    prefill,
    token_batches,
    truncate_texts,
)
from grouprank.parsing import OK, OUT_OF_MEMORY, TOO_LONG, TRUNCATED, parse_answer
from grouprank.prompts import PromptTemplate

log = logging.getLogger(__name__)

SCORES = tuple(range(11))
# Documents are never cut below this many tokens to make a group fit in memory.
MIN_DOC_TOKENS = 16


@dataclass(frozen=True)
class _ScoreTokens:
    """How the scores 0-10 are spelled in tokens right after a slot."""

    # First token id of each score, aligned with SCORES.
    first: list[int]
    # For scores spelled with two tokens: index into SCORES -> second token id.
    second: dict[int, int]
    # The shared first token of the two-token scores ("1" for "10"), or None if all are single.
    prefix: int | None
    # Token ids of the single digits 0-9: a digit after `prefix` means a longer number.
    digits: list[int]


class CausalLMScorer(LoadedCausalLM):
    """A Hugging Face causal LM used as a groupwise reranker (implements ``GroupScorer``).

    Takes ``LoadedCausalLM``'s arguments (``name``, ``max_doc_tokens``, ``batch_tokens``) too.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        template: PromptTemplate,
        *,
        mode: str = "direct",
        max_new_tokens: int = 768,
        **shared,
    ) -> None:
        if mode not in ("direct", "reason"):
            raise ValueError(f"mode must be 'direct' or 'reason', got {mode!r}")
        super().__init__(model, tokenizer, template, **shared)
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self._score_tokens = _score_tokens(tokenizer, template) if mode == "direct" else None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        template: PromptTemplate,
        *,
        device: str = "cpu",
        trust_remote_code: bool = False,
        **kwargs,
    ) -> "CausalLMScorer":
        """Loads a model directory (safetensors only) onto ``device``: bf16 on GPU, fp32 on CPU."""
        model, tokenizer = load_causal_lm(path, device, trust_remote_code)
        return cls(model, tokenizer, template, **kwargs)

    # ---- the GroupScorer interface -------------------------------------------------------

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        """Scores every group; never raises for a group that is too long or too big.

        A group whose prompt would not fit the model's context window has its documents cut
        further (status ``truncated``). A batch that runs out of accelerator memory is split in
        halves and retried, down to one group; a single group that still does not fit is retried
        with its documents cut in half each time (``truncated``), down to ``MIN_DOC_TOKENS``,
        and only then marked ``out_of_memory`` without scores. Returns exactly one result per
        group, in input order, with one score and status per document (else ``RuntimeError``).
        """
        results: list[GroupResult | None] = [None] * len(groups)
        prompts: dict[int, list[int]] = {}
        budgets: dict[int, int] = {}
        for i, group in enumerate(groups):
            fitted = self._fit(group)
            if fitted is None:
                results[i] = _unscored(group, TOO_LONG)
            else:
                budgets[i], prompts[i] = fitted
        order = sorted(prompts)
        lengths = [len(prompts[i]) for i in order]
        keys = [groups[i].query for i in order]
        for batch in token_batches(lengths, self.batch_tokens, keys):
            self._score_batch([order[b] for b in batch], groups, prompts, budgets, results)
        return check_results(groups, results, self.name)

    def _score_batch(self, batch, groups, prompts, budgets, results) -> None:
        sizes = [len(groups[i].texts) for i in batch]
        try:
            with torch.inference_mode():
                ids = [prompts[i] for i in batch]
                scored = self._direct(ids, sizes) if self.mode == "direct" else self._reason(ids, sizes)
        except torch.OutOfMemoryError:
            _free_accelerator_memory()
            if len(batch) > 1:
                half = len(batch) // 2
                log.warning("out of memory on %d groups: retrying in halves", len(batch))
                self._score_batch(batch[:half], groups, prompts, budgets, results)
                self._score_batch(batch[half:], groups, prompts, budgets, results)
                return
            (i,) = batch
            if budgets[i] <= MIN_DOC_TOKENS:
                results[i] = _unscored(groups[i], OUT_OF_MEMORY)
                return
            budgets[i] = max(MIN_DOC_TOKENS, budgets[i] // 2)
            log.warning("out of memory on one group: cutting documents to %d tokens", budgets[i])
            prompts[i] = self.prompt_ids(groups[i], budgets[i])
            self._score_batch(batch, groups, prompts, budgets, results)
            return
        if len(scored) != len(batch):
            raise RuntimeError(
                f"{self.name} returned {len(scored)} results for a batch of {len(batch)} groups "
                f"(groups {batch})"
            )
        for i, result in zip(batch, scored, strict=True):
            if budgets[i] < self.max_doc_tokens and result.statuses:
                result = GroupResult(
                    result.scores,
                    [TRUNCATED if st == OK else st for st in result.statuses],
                    result.prompt_tokens,
                    result.generated_tokens,
                    result.output,
                )
            results[i] = result

    def _fit(self, group: GroupInput) -> tuple[int, list[int]] | None:
        """(tokens per document, prompt ids) keeping the prompt and its answer inside the
        context window: ``max_doc_tokens`` when that fits, fewer when the group is too long,
        None when not even one token per document fits."""
        ids = self.prompt_ids(group)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        n = len(group.texts)
        answer = n * (len(self._slot_ids(n)) + 2) + 4 if self.mode == "direct" else self.max_new_tokens
        if not limit or len(ids) + answer <= limit:
            return self.max_doc_tokens, ids
        overhead = len(self.prompt_ids(GroupInput(group.query, ("",) * n)))
        budget = min((limit - answer - overhead) // n, self.max_doc_tokens)
        return (budget, self.prompt_ids(group, budget)) if budget >= 1 else None

    # ---- prompts ---------------------------------------------------------------------------

    def prompt_ids(self, group: GroupInput, doc_tokens: int | None = None) -> list[int]:
        """Token ids of the chat prompt for one group (direct mode: plus the answer skeleton),
        each document cut to ``doc_tokens`` (default ``max_doc_tokens``)."""
        texts = truncate_texts(self.tokenizer, group.texts, doc_tokens or self.max_doc_tokens)
        messages = self.template.messages(group.query, texts)
        prefix = self.template.answer_prefix_text() if self.mode == "direct" else ""
        return chat_prompt_ids(self.tokenizer, messages, prefix)

    # ---- direct mode -----------------------------------------------------------------------

    def _direct(self, prompts: list[list[int]], sizes: list[int]) -> list[GroupResult]:
        st = self._score_tokens
        assert st is not None
        dev = self._device
        logits, mask, cache = prefill(self.model, prompts, self._pad, self._cache_arg)
        batch = len(prompts)
        expected = torch.zeros(batch, max(sizes), dtype=torch.float64)
        fed = [0] * batch
        first = torch.tensor(st.first, device=dev)
        values = torch.tensor(SCORES, dtype=torch.float64)
        for k in range(1, max(sizes) + 1):
            probs = torch.softmax(logits.float(), dim=-1)
            p = probs[:, first].double().clone()
            for row, n in enumerate(sizes):
                fed[row] += int(k <= n and st.prefix is not None)
            if st.prefix is not None:
                mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=dev)], 1)
                step = torch.full((batch, 1), st.prefix, dtype=torch.long, device=dev)
                after_logits, cache = self._forward(step, mask, cache)
                after = torch.softmax(after_logits.float(), dim=-1).double()
                p_prefix = probs[:, st.prefix].double()
                longer = after[:, st.digits].sum(-1)
                for idx, tok in enumerate(st.first):
                    if tok == st.prefix and idx not in st.second:
                        p[:, idx] = p_prefix * (1.0 - longer).clamp(min=0.0)
                for idx, second in st.second.items():
                    p[:, idx] = p_prefix * after[:, second]
            p = p.cpu()
            total = p.sum(-1, keepdim=True).clamp(min=1e-300)
            p = p / total
            expected[:, k - 1] = (p * values).sum(-1)
            if k == max(sizes):
                break
            best = p.argmax(-1).tolist()
            keep_prefix = [
                st.prefix is not None and st.first[b] == st.prefix for b in best
            ]
            if st.prefix is not None:
                mask[:, -1] = torch.tensor(keep_prefix, dtype=mask.dtype, device=dev)
            slot = self._slot_ids(k + 1)
            steps, live = [], []
            for row, b in enumerate(best):
                score_ids = [st.first[b]] + ([st.second[b]] if b in st.second else [])
                if keep_prefix[row]:
                    score_ids = score_ids[1:]
                steps.append(score_ids + slot)
                live.append(k < sizes[row])
                if live[-1]:
                    fed[row] += len(steps[-1])
            step_ids, step_mask = left_pad(steps, self._pad, dev)
            step_mask = step_mask * torch.tensor(live, dtype=step_mask.dtype, device=dev)[:, None]
            mask = torch.cat([mask, step_mask], 1)
            logits, cache = self._forward(step_ids, mask, cache)
        return [
            GroupResult(
                scores=[float(x) for x in expected[row, :n]],
                statuses=[OK] * n,
                prompt_tokens=len(prompts[row]),
                generated_tokens=fed[row],
            )
            for row, n in enumerate(sizes)
        ]

    def _slot_ids(self, index: int) -> list[int]:
        return self.tokenizer(
            self.template.slot_text(index), add_special_tokens=False
        ).input_ids

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, cache
    ) -> tuple[torch.Tensor, object]:
        return forward_step(self.model, ids, mask, cache, self._cache_arg)

    # ---- reason mode -----------------------------------------------------------------------

    def _reason(self, prompts: list[list[int]], sizes: list[int]) -> list[GroupResult]:
        generated = generate_greedy(self.model, self.tokenizer, prompts, self.max_new_tokens)
        results = []
        for row, (tokens, n) in enumerate(zip(generated, sizes, strict=True)):
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            parsed = parse_answer(text, n)
            results.append(
                GroupResult(
                    scores=parsed.scores,
                    statuses=parsed.statuses,
                    prompt_tokens=len(prompts[row]),
                    generated_tokens=len(tokens),
                    output=text,
                )
            )
        return results


def _score_tokens(tokenizer, template: PromptTemplate) -> _ScoreTokens:
    """Finds how each score 0-10 is tokenized after a slot, failing early if direct mode can't work."""
    context = template.answer_prefix_text()
    base = tokenizer(context, add_special_tokens=False).input_ids
    spelled: list[list[int]] = []
    for score in SCORES:
        ids = tokenizer(context + str(score), add_special_tokens=False).input_ids
        if ids[: len(base)] != base or not 1 <= len(ids) - len(base) <= 2:
            raise ValueError(
                f"direct mode needs the score {score} to follow the answer slot as 1 or 2 separate "
                f"tokens, but this tokenizer merges them; use --mode reason or change the template"
            )
        spelled.append(ids[len(base) :])
    singles = {ids[0]: s for s, ids in zip(SCORES, spelled) if len(ids) == 1}
    second = {s: ids[1] for s, ids in zip(SCORES, spelled) if len(ids) == 2}
    prefixes = {spelled[s][0] for s in second}
    if len(prefixes) > 1 or any(p not in singles for p in prefixes):
        raise ValueError(
            "direct mode supports two-token scores only when they share a first token that is "
            "itself a score (as '1' + '0'); use --mode reason with this tokenizer"
        )
    return _ScoreTokens(
        first=[ids[0] for ids in spelled],
        second=second,
        prefix=next(iter(prefixes)) if prefixes else None,
        digits=[spelled[d][0] for d in range(10) if len(spelled[d]) == 1],
    )


def _unscored(group: GroupInput, status: str) -> GroupResult:
    n = len(group.texts)
    return GroupResult([None] * n, [status] * n, prompt_tokens=0, generated_tokens=0)


def _free_accelerator_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
