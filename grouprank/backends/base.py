"""The model interface every groupwise backbone implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class GroupInput:
    """One model call's worth of work: a query and the texts of its group, in prompt order."""

    query: str
    texts: tuple[str, ...]
    # First-stage scores aligned with ``texts`` (higher is better), or empty when unknown. LLM
    # backbones ignore them; the group-encoder backbone reads them as features.
    first_stage: tuple[float, ...] = ()


@dataclass(frozen=True)
class GroupResult:
    """Scores for one group, aligned with ``GroupInput.texts``."""

    # 0-10, or None where the model gave no usable score (see ``statuses``).
    scores: list[float | None]
    # One of grouprank.parsing's per-document statuses for each document.
    statuses: list[str]
    prompt_tokens: int
    generated_tokens: int
    # Raw generated text in reason mode, for debugging; None in direct mode.
    output: str | None = None


class GroupScorer(Protocol):
    """A loaded groupwise model. Implementations are loaded once per worker and reused."""

    # A short identifier written to the output's `model` column.
    name: str

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        """Scores every document of every group; one result per group, in input order."""
        ...
