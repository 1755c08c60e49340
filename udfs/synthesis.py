"""The synthesis UDF: one row per query's candidates in, that query's training samples out.

Teachers load once per Python worker (cached like the reranking model) and score every pool of
an Arrow batch in one call; everything else is ``grouprank.synthesis``. With an embedding store
the pools arrive with their vectors (``query_vector``, ``vectors``), and the encoder teacher
scores from them without loading its encoder.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

import pandas as pd

from grouprank import synthesis as syn
from grouprank.backends import GroupInput
from grouprank.backends.base import check_result
from grouprank.models import ModelRef
from grouprank.parsing import OK
from grouprank.teachers import (
    ENCODER,
    FIRST_STAGE,
    TeacherSpec,
    cosine_result,
    load_teacher,
    teacher_digest,
)
from schemas.samples import FEEDBACK_TEXTS, SAMPLES
from udfs.cache import cached, task_device

_SAMPLE_COLUMNS = [c for c in SAMPLES.fieldNames() if c != "run_date"]


def synthesize_udf(
    settings: syn.SynthesisSettings,
    pointwise: TeacherSpec,
    listwise: TeacherSpec,
    chat_model: ModelRef,
    max_doc_tokens: int,
    precision: str = "auto",
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function from ``POOL_SOURCES`` rows to ``SAMPLES`` rows
    (without ``run_date``, which the transform adds); ``precision`` is the encoder teacher's."""
    teachers = json.dumps(
        {
            "pointwise": {"id": pointwise.id, "digest": teacher_digest(pointwise)},
            "listwise": {"id": listwise.id, "digest": teacher_digest(listwise)},
        },
        sort_keys=True,
    )

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            device = task_device()
            chat = cached(("chat", chat_model.spec, chat_model.digest),
                          lambda: _ChatPrompts(chat_model, max_doc_tokens))
            pools = [_pool(row, settings) for row in batch.itertuples(index=False)]
            p_scores = _teacher_scores(pointwise, pools, device, precision)
            l_scores = _teacher_scores(listwise, pools, device, precision)
            rows = []
            for pool, ps, ls in zip(pools, p_scores, l_scores, strict=True):
                rows.extend(_samples(pool, ps, ls, settings, teachers, chat))
            yield pd.DataFrame(rows, columns=_SAMPLE_COLUMNS)

    return run


class _Pool:
    def __init__(
        self, qid: str, query: str, docids: list, texts: list, scores: list, ranks: list,
        query_vector=None, vectors: list | None = None,
    ) -> None:
        self.qid, self.query = qid, query
        self.docids, self.texts, self.scores, self.ranks = docids, texts, scores, ranks
        # From the embedding store, when the job has one; None otherwise.
        self.query_vector, self.vectors = query_vector, vectors


def _pool(row, settings: syn.SynthesisSettings) -> _Pool:
    keep = syn.sample_pool(len(row.docids), row.qid, settings)
    vectors = getattr(row, "vectors", None)
    return _Pool(
        row.qid,
        row.query,
        [row.docids[i] for i in keep],
        [row.texts[i] for i in keep],
        [float(row.scores[i]) for i in keep],
        [int(row.ranks[i]) for i in keep],
        getattr(row, "query_vector", None),
        None if vectors is None else [vectors[i] for i in keep],
    )


def _teacher_scores(
    spec: TeacherSpec, pools: list[_Pool], device: str, precision: str = "auto"
) -> list[list[float | None]]:
    """0-10 scores per pooled document; None where the teacher gave none."""
    if spec.kind == FIRST_STAGE:
        return [_minmax10(p.scores) for p in pools]
    if spec.kind == ENCODER and pools[0].vectors is not None:
        results = [cosine_result(_vector(p.query_vector, p.qid), [
            _vector(v, p.qid) for v in p.vectors]) for p in pools]
    else:
        teacher = cached(("teacher", spec, precision),
                         lambda: load_teacher(spec, device, precision))
        results = teacher.score_groups([GroupInput(p.query, tuple(p.texts)) for p in pools])
    if len(results) != len(pools):
        raise RuntimeError(
            f"teacher {spec.id} returned {len(results)} results for {len(pools)} pools"
        )
    for pool, result in zip(pools, results, strict=True):
        check_result(result, len(pool.docids), f"the pool of qid {pool.qid!r}")
    return [
        [s if st == OK else None for s, st in zip(r.scores, r.statuses, strict=True)]
        for r in results
    ]


def _vector(value, qid: str):
    if value is None:  # refresh_store returns every text's vector; this would be a bug
        raise RuntimeError(f"a text of the pool of qid {qid!r} has no vector in the store")
    return value


def _minmax10(values: list[float]) -> list[float | None]:
    lo, hi = min(values), max(values)
    return [10.0 * (v - lo) / (hi - lo) if hi > lo else 10.0 for v in values]


def _samples(pool, p_scores, l_scores, settings, teachers: str, chat) -> list[tuple]:
    n = len(pool.docids)
    first_stage = list(range(n))  # pools are in first-stage order
    unscored = sum(s is None for s in p_scores) + sum(s is None for s in l_scores)
    # A document a teacher could not score ranks after every scored one (by first stage).
    p_rank = syn.ranks_from_scores([-1.0 if s is None else s for s in p_scores], first_stage)
    l_rank = syn.ranks_from_scores([-1.0 if s is None else s for s in l_scores], first_stage)
    fused = syn.fuse_ranks(p_rank, l_rank, settings.beta)
    labels = syn.ranks_from_scores(fused, p_rank)
    targets = syn.calibrated_targets(labels, [0.0 if s is None else s for s in p_scores])
    split = syn.split_of(pool.qid, settings)
    by_label = sorted(range(n), key=lambda i: labels[i])
    feedback = [pool.texts[i] for i in by_label[:FEEDBACK_TEXTS]]
    rows = []
    for k, sample in enumerate(syn.cut_samples(labels, targets, pool.qid, settings)):
        texts = [pool.texts[i] for i in sample.positions]
        rows.append(
            (
                f"{pool.qid}#{k}",
                pool.qid,
                pool.query,
                [pool.docids[i] for i in sample.positions],
                texts,
                [pool.scores[i] for i in sample.positions],
                [pool.ranks[i] for i in sample.positions],
                sample.target_scores,
                sample.target_ranks,
                len(sample.positions),
                split,
                [p_rank[i] for i in sample.positions],
                [l_rank[i] for i in sample.positions],
                feedback,
                unscored,
                teachers,
                chat.prompt(pool.query, texts),
                syn.completion_text(sample.target_scores, sample.target_ranks),
                chat.template_digest,
            )
        )
    return rows


class _ChatPrompts:
    """Renders the groupwise prompt with a chat model's template, documents cut as at inference."""

    def __init__(self, chat_model: ModelRef, max_doc_tokens: int) -> None:
        from transformers import AutoTokenizer

        from grouprank.prompts import chat_template_digest, load_template

        self.tokenizer = AutoTokenizer.from_pretrained(chat_model.path())
        self.template_digest = chat_template_digest(self.tokenizer)
        self.template = load_template()
        self.max_doc_tokens = max_doc_tokens

    def prompt(self, query: str, texts: list[str]) -> str:
        from grouprank.backends.lm import truncate_texts

        cut = truncate_texts(self.tokenizer, texts, self.max_doc_tokens)
        messages = self.template.messages(query, cut)
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
