"""Listwise reranking with a causal LM: RankGPT-style sliding windows of generated permutations.

Each ``GroupInput`` is one query's whole candidate list in first-stage order (the job builds it
so for ``--paradigm listwise``). Windows of ``window_size`` documents move from the bottom of the
list to the top by ``window_step`` (rank_llm's defaults 20 and 10); the model writes a ranking
like ``[3] > [1] > [2]`` for each, greedily, with a token budget just large enough for a full
permutation of the window (as rank_llm sets it). A window's output is repaired into a
permutation (``grouprank.permutation``) and applied before the next window is built, so the
windows of one query run in order; the current windows of different queries run as one padded
batch.

The final order becomes 0-10 scores with ``grouprank.permutation.rank_scores`` (10 for rank 1,
``10 / n`` for rank n). A document keeps status ``ok`` when the model named it in every window it
took part in; when repair had to place it (the model left it out, or the window's output named no
valid id at all) it is ``repaired``. Its score is still that of its place in the repaired order,
as rank_llm ranks it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch

from grouprank.backends.base import GroupInput, GroupResult
from grouprank.backends.lm import (
    LoadedCausalLM,
    chat_prompt_ids,
    check_results,
    generate_greedy,
    token_batches,
)
from grouprank.parsing import OK, REPAIRED
from grouprank.permutation import apply_permutation, parse_permutation, rank_scores, sliding_windows
from grouprank.prompts import ChatTemplate

log = logging.getLogger(__name__)


@dataclass
class _QueryRun:
    """One query's progress through its windows."""

    query: str
    texts: list[str]
    windows: list[tuple[int, int]]
    # order[r] = original position of the document currently at rank r + 1.
    order: list[int]
    statuses: list[str]
    done: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    outputs: list[str] = field(default_factory=list)


class ListwiseScorer(LoadedCausalLM):
    """A causal LM used as a sliding-window listwise reranker (implements ``GroupScorer``).

    Takes ``LoadedCausalLM``'s arguments too. ``repairs`` accumulates, over the scorer's life, how
    many windows ran and how many unknown, repeated and missing ids their outputs needed repaired.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        template: ChatTemplate,
        *,
        window_size: int = 20,
        window_step: int = 10,
        **shared,
    ) -> None:
        super().__init__(model, tokenizer, template, **shared)
        self.window_size = window_size
        self.window_step = window_step
        self.repairs: Counter[str] = Counter()

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        runs = [
            _QueryRun(
                query=g.query,
                texts=self.truncate(g.texts) if g.texts else [],
                windows=sliding_windows(len(g.texts), self.window_size, self.window_step),
                order=list(range(len(g.texts))),
                statuses=[OK] * len(g.texts),
            )
            for g in groups
        ]
        while True:
            live = [run for run in runs if run.done < len(run.windows)]
            if not live:
                break
            self._advance(live)
        results = [
            GroupResult(
                scores=rank_scores(run.order),
                statuses=run.statuses,
                prompt_tokens=run.prompt_tokens,
                generated_tokens=run.generated_tokens,
                output="\n".join(run.outputs),
            )
            for run in runs
        ]
        return check_results(groups, results, self.name)

    def prompt_ids(self, query: str, texts: Sequence[str]) -> list[int]:
        """Token ids of the prompt for one window (texts already truncated, in current order)."""
        messages = self.template.messages(query, texts)
        return chat_prompt_ids(self.tokenizer, messages, self.template.answer_prefix.format())

    def output_budget(self, n: int) -> int:
        """New tokens allowed for a window of ``n``: a full ``[1] > ... > [n]`` plus EOS.

        Example:
            >>> scorer.output_budget(20)  # doctest: +SKIP
            100
        """
        ranking = " > ".join(f"[{i}]" for i in range(1, n + 1))
        return len(self.tokenizer(ranking, add_special_tokens=False).input_ids) + 1

    def _advance(self, runs: list[_QueryRun]) -> None:
        """Runs the next window of every run, as padded batches, and applies the outputs."""
        spans = [run.windows[run.done] for run in runs]
        prompts = [
            self.prompt_ids(run.query, [run.texts[i] for i in run.order[start:end]])
            for run, (start, end) in zip(runs, spans)
        ]
        for batch in token_batches([len(p) for p in prompts], self.batch_tokens):
            budget = max(self.output_budget(spans[i][1] - spans[i][0]) for i in batch)
            with torch.inference_mode():
                generated = generate_greedy(
                    self.model, self.tokenizer, [prompts[i] for i in batch], budget
                )
            for i, tokens in zip(batch, generated):
                run, (start, end) = runs[i], spans[i]
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                permutation, repair = parse_permutation(text, end - start)
                window = run.order[start:end]
                for local in permutation[len(permutation) - repair.missing :]:
                    if run.statuses[window[local]] == OK:
                        run.statuses[window[local]] = REPAIRED
                run.order = apply_permutation(run.order, start, end, permutation)
                run.prompt_tokens += len(prompts[i])
                run.generated_tokens += len(tokens)
                run.outputs.append(text)
                run.done += 1
                self.repairs.update(
                    windows=1, unknown=repair.unknown, repeated=repair.repeated,
                    missing=repair.missing, repaired_windows=int(repair.total > 0),
                )
