"""Teachers for answer-free synthesis: what labels each pool, from a SPEC string.

    first-stage                      the first-stage ranking of the pool
    encoder[:DIR]                    sentence-encoder cosine, 10 * max(0, cos) (default MiniLM)
    llm:MODEL:PARADIGM[:SCORER]      a causal LM reranker, e.g. llm:/models/qwen-32b:listwise,
                                     llm:default:pointwise:yesno (MODEL may be 'default')

Every teacher gives each pooled document a 0-10 score; its ranking sorts by that score (the
first-stage teacher by first-stage rank).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from grouprank.backends.base import GroupInput, GroupResult
from grouprank.parsing import OK

FIRST_STAGE, ENCODER, LLM = "first-stage", "encoder", "llm"


@dataclass(frozen=True)
class TeacherSpec:
    """A parsed teacher SPEC."""

    kind: str
    model: str | None = None
    paradigm: str | None = None
    scorer: str | None = None

    @property
    def id(self) -> str:
        """The canonical SPEC string (recorded in the samples' ``teachers`` column)."""
        parts = [self.kind] + [p for p in (self.model, self.paradigm, self.scorer) if p]
        return ":".join(parts)


def parse_teacher(spec: str) -> TeacherSpec:
    """Parses a teacher SPEC, failing with the accepted forms on anything else.

    Example:
        >>> parse_teacher("llm:/m/qwen:pointwise:yesno")
        TeacherSpec(kind='llm', model='/m/qwen', paradigm='pointwise', scorer='yesno')
        >>> parse_teacher("encoder").id
        'encoder'
    """
    if spec == FIRST_STAGE:
        return TeacherSpec(FIRST_STAGE)
    if spec == ENCODER or spec.startswith(ENCODER + ":"):
        return TeacherSpec(ENCODER, spec.partition(":")[2] or None)
    if spec.startswith(LLM + ":"):
        rest = spec[len(LLM) + 1 :]
        parts = rest.rsplit(":", 2)
        if len(parts) >= 2 and parts[-2] in ("groupwise", "pointwise", "listwise"):
            model, paradigm, scorer = ":".join(parts[:-2]), parts[-2], parts[-1]
        else:
            model, _, paradigm = rest.rpartition(":")
            scorer = None
        if model and paradigm in ("groupwise", "pointwise", "listwise"):
            return TeacherSpec(LLM, model, paradigm, scorer)
    raise ValueError(
        f"teacher {spec!r} is not one of: first-stage | encoder[:DIR] | "
        "llm:MODEL:groupwise|pointwise|listwise[:SCORER]"
    )


class EncoderTeacher:
    """Cosine similarity of a sentence encoder, mapped to 0-10 (implements ``GroupScorer``)."""

    def __init__(
        self, model_dir: str | None = None, device: str = "cpu", precision: str = "auto"
    ) -> None:
        from grouprank.backends.group_encoder import SHIPPED_ENCODER
        from grouprank.retrieval import encoder_dir

        # Embeddings are kept in this process's memory (grouprank.encoding.embed_in_memory):
        # the pools of different queries a worker teaches share most documents.
        self.encoder_name = model_dir or SHIPPED_ENCODER
        self.device, self.precision = device, precision
        path = model_dir or str(encoder_dir())
        self.name = f"encoder:{path.rstrip('/').split('/')[-1]}"

    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        from grouprank.encoding import embed_in_memory

        texts = [t for g in groups for t in g.texts]
        vectors = embed_in_memory(
            self.encoder_name, [g.query for g in groups] + texts, device=self.device,
            precision=self.precision,
        ).numpy()
        queries, docs = vectors[: len(groups)], vectors[len(groups) :]
        results, start = [], 0
        for query, group in zip(queries, groups):
            results.append(cosine_result(query, docs[start : start + len(group.texts)]))
            start += len(group.texts)
        return results


def cosine_result(query_vector, doc_vectors) -> GroupResult:
    """The encoder teacher's 0-10 scores from normalised vectors: 10 × max(0, cosine).

    ``EncoderTeacher`` calls it on the vectors it encodes; the synthesis job calls it on vectors
    read from an embedding store (``--embedding-store``), so both give the same scores.
    """
    import numpy as np

    cosine = np.asarray(doc_vectors, dtype=np.float32) @ np.asarray(query_vector, dtype=np.float32)
    return GroupResult(
        scores=[float(10.0 * max(0.0, c)) for c in cosine],
        statuses=[OK] * len(cosine),
        prompt_tokens=0,
        generated_tokens=0,
    )


def encoder_ref(spec: TeacherSpec):
    """The ``ModelRef`` of an encoder teacher's sentence encoder (its embedding store key)."""
    from grouprank.models import base_ref

    if spec.kind != ENCODER:
        raise ValueError(f"teacher {spec.id} is not an encoder teacher")
    return base_ref(spec.model or "minilm")


def load_teacher(spec: TeacherSpec, device: str = "cpu", precision: str = "auto"):
    """Loads an encoder or LLM teacher as a ``GroupScorer`` (first-stage needs no model).
    ``precision`` is the encoder teacher's (LLM teachers run fp32 on CPU, bf16 on GPU)."""
    if spec.kind == ENCODER:
        return EncoderTeacher(spec.model, device, precision)
    if spec.kind == LLM:
        from grouprank.models import load_scorer
        from grouprank.settings import RerankSettings

        extra = {"pointwise_scorer": spec.scorer} if spec.scorer else {}
        settings = RerankSettings(model=spec.model, paradigm=spec.paradigm, **extra)
        return load_scorer(settings, device)
    raise ValueError(f"teacher {spec.id} loads no model")


def teacher_digest(spec: TeacherSpec) -> str:
    """A short hash identifying the teacher and, for LLM teachers, its weights
    (``ModelRef.digest``) and prompt template text."""
    text = spec.id
    if spec.kind == LLM:
        from grouprank.models import model_ref
        from grouprank.prompts import load_template

        text += model_ref(spec.model).digest + load_template().source_text
    return hashlib.sha256(text.encode()).hexdigest()[:12]
