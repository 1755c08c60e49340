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
    # 1-based first-stage ranks of ``texts`` within the query's whole candidate list (not just
    # this group), or empty when unknown: a group sees only a random share of the list, and the
    # rank is what says where a document stood in all of it, whatever the scores' scale.
    first_stage_rank: tuple[int, ...] = ()
    # Precomputed embeddings, for backbones that declare ``precomputed_embeddings``: the query's
    # vector (E,) and the documents' (N, E), numpy or torch; None = encode ``query``/``texts``.
    query_vector: object | None = None
    vectors: object | None = None
    # The query's feedback vector (E,) over its whole candidate list, for backbones that read
    # one (the group encoder's ``context_top``); None = the backbone makes it from this group.
    context_vector: object | None = None
    # The query's first-stage agreement with the encoder over its whole list (the group
    # encoder's ``agreement_feature``); None = the backbone measures it on this group.
    first_stage_agreement: float | None = None
    # Each document's MaxSim with the query (the group encoder's ``late_interaction``), aligned
    # with ``texts``; None (all or some) = the backbone computes it from the texts.
    late_scores: tuple[float | None, ...] | None = None


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
    # Optional class attribute, False when absent: True if documents and queries are embedded
    # each on its own (independent of the rest of the group), so the job can embed each distinct
    # text once and pass ``GroupInput.vectors`` (``embedding_key`` then names the embedding space).
    #   precomputed_embeddings: bool

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        """Scores every document of every group; one result per group, in input order."""
        ...


def check_result(result: GroupResult, documents: int, where: str) -> None:
    """Fails loudly, naming the group, unless a result has one score and one status per document.

    Example:
        >>> check_result(GroupResult([1.0], ["ok"], 0, 0), 2, "group 3")
        Traceback (most recent call last):
        ...
        RuntimeError: the scorer returned 1 scores and 1 statuses for the 2 documents of group 3
    """
    if len(result.scores) != documents or len(result.statuses) != documents:
        raise RuntimeError(
            f"the scorer returned {len(result.scores)} scores and {len(result.statuses)} "
            f"statuses for the {documents} documents of {where}"
        )
