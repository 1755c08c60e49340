"""A compact groupwise backbone for CPU clusters: a sentence encoder plus attention across a group.

Each (query, document) pair is represented by features from a frozen bi-encoder (by default the
package-shipped all-MiniLM-L6-v2): the elementwise product of the normalised query and document
embeddings, their cosine, the cosine relative to the group's mean, and the first-stage score
normalised within the group (z-score and rank percentile). A small Transformer encoder then lets
every document attend to the others of its group, with no position encoding, so a document's
score depends on what it is compared with but not on the order the group was dealt in. A head
gives each document a distribution over the integer scores 0..10, read like the LLM's direct mode:
the score is the expected value (calibrated 0-10), and RL samples from that distribution.

A checkpoint is an ordinary directory: ``grouprank.json`` (the config below) and
``head.safetensors`` (the head's weights, ~1 MB). The encoder's own weights are not copied: the
config names them (``"minilm"`` = the package-shipped MiniLM, else a directory).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from grouprank.backends.base import GroupInput, GroupResult
from grouprank.backends.group_config import (  # noqa: F401 (re-exported)
    CONFIG_FILE,
    HEAD_FILE,
    KIND,
    SHIPPED_ENCODER,
    GroupEncoderConfig,
    is_group_encoder_dir,
    load_config,
)
from grouprank.list_context import (  # noqa: F401 (re-exported)
    feedback_order,
    feedback_vector,
    first_stage_agreement,
)
from grouprank.parsing import OK

NUM_LEVELS = 11  # integer scores 0..10
_EXTRA_FEATURES = 5  # cosine, cosine - group mean, first-stage z, first-stage percentile, has first stage
_RANK_FEATURES = 3  # 1/log2(1 + rank), log(rank)/log(1000), has a rank
_RANK_SCALE = float(np.log(1000.0))
_CONTEXT_FEATURES = 2  # cosine to the query's feedback vector, and that minus the group mean
_AGREEMENT_FEATURES = 2  # the query's first-stage/cosine agreement, and whether it is known
_LATE_FEATURES = 2  # the document's MaxSim with the query, and that minus the group mean


class GroupHead(nn.Module):
    """Pair features of a padded batch of groups -> logits over the scores 0..10 per document."""

    def __init__(self, config: GroupEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.project = nn.Sequential(
            nn.Linear(config.embedding_dim + feature_count(config), config.hidden),
            nn.GELU(),
            nn.LayerNorm(config.hidden),
        )
        layer = nn.TransformerEncoderLayer(
            config.hidden, config.heads, dim_feedforward=2 * config.hidden,
            dropout=config.dropout, activation="gelu", batch_first=True, norm_first=True,
        )
        self.across = (
            nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
            if config.layers
            else None
        )
        self.out = nn.Linear(config.hidden, NUM_LEVELS)

    def forward(
        self, query: torch.Tensor, docs: torch.Tensor, first_stage: torch.Tensor,
        mask: torch.Tensor, ranks: torch.Tensor | None = None,
        context: torch.Tensor | None = None, agreement: torch.Tensor | None = None,
        late: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, N, 11) for ``query`` (B, E), ``docs`` (B, N, E), ``first_stage`` (B, N)
        (NaN where unknown), ``mask`` (B, N), True for real documents, and ``ranks`` (B, N), the
        first-stage ranks in the whole list (0 where unknown; read if ``rank_features``), and
        ``context`` (B, E), each query's feedback vector (read if ``context_top``; zeros or None
        = unknown), and ``agreement`` (B,), each query's ``first_stage_agreement`` (read if
        ``agreement_feature``; NaN or None = unknown), and ``late`` (B, N), each document's
        MaxSim with its query (read if ``late_interaction``; None = unknown, zeros)."""
        features = pair_features(query, docs, first_stage, mask)
        if self.config.rank_features:
            if ranks is None:
                ranks = torch.zeros(mask.shape)
            features = torch.cat([features, rank_features(ranks, mask)], dim=-1)
        if self.config.context_top:
            if context is None:
                context = torch.zeros(query.shape)
            features = torch.cat([features, context_features(context, docs, mask)], dim=-1)
        if self.config.agreement_feature:
            if agreement is None:
                agreement = torch.full(query.shape[:1], float("nan"))
            known = torch.isfinite(agreement)
            pair = torch.stack([torch.where(known, agreement, 0.0), known.float()], dim=-1)
            features = torch.cat(
                [features, pair[:, None, :].expand(-1, mask.shape[1], -1) * mask[..., None]],
                dim=-1,
            )
        if self.config.late_interaction:
            if late is None:
                late = torch.zeros(mask.shape)
            features = torch.cat([features, relative_features(late, mask)], dim=-1)
        hidden = self.project(features)
        if self.across is not None:
            hidden = self.across(hidden, src_key_padding_mask=~mask)
        return self.out(hidden)


def pair_features(
    query: torch.Tensor, docs: torch.Tensor, first_stage: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The per-document input features (see the module docstring); padding rows are zeros."""
    query = nn.functional.normalize(query, dim=-1)
    docs = nn.functional.normalize(docs, dim=-1)
    product = docs * query[:, None, :]
    cosine = product.sum(-1)
    weight = mask.float()
    count = weight.sum(-1, keepdim=True).clamp(min=1)
    relative = (cosine - (cosine * weight).sum(-1, keepdim=True) / count) * weight
    known = torch.isfinite(first_stage) & mask
    z, percentile = _first_stage_features(first_stage, known)
    extra = torch.stack([cosine, relative, z, percentile, known.float()], dim=-1)
    return torch.cat([product, extra], dim=-1) * weight[..., None]


def feature_count(config: GroupEncoderConfig) -> int:
    """Per-document input features besides the embedding product."""
    return (
        _EXTRA_FEATURES
        + (_RANK_FEATURES if config.rank_features else 0)
        + (_CONTEXT_FEATURES if config.context_top else 0)
        + (_AGREEMENT_FEATURES if config.agreement_feature else 0)
        + (_LATE_FEATURES if config.late_interaction else 0)
    )


def relative_features(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, 2): a per-document value (B, N) and that value minus its group's mean; zeros on
    padding."""
    weight = mask.float()
    values = torch.nan_to_num(values.float()) * weight
    count = weight.sum(-1, keepdim=True).clamp(min=1)
    relative = values - values.sum(-1, keepdim=True) / count
    return torch.stack([values, relative], dim=-1) * weight[..., None]


def context_features(
    context: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(B, N, 2): each document's cosine to its query's feedback vector ``context`` (B, E), and
    that cosine minus the group's mean; zeros where ``context`` is all zeros (unknown)."""
    context = nn.functional.normalize(context, dim=-1)
    docs = nn.functional.normalize(docs, dim=-1)
    return relative_features((docs * context[:, None, :]).sum(-1), mask)


def rank_features(ranks: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) features of 1-based first-stage ranks (0 = unknown): the DCG discount
    1/log2(1 + rank), log(rank)/log(1000) capped at 1, and whether the rank is known. Ranks say
    where a document stood in the whole candidate list whatever the scores' scale (BM25, dot
    products, probabilities), which the within-group score features cannot."""
    known = (ranks > 0) & mask
    r = ranks.clamp(min=1).float()
    discount = 1.0 / torch.log2(1.0 + r)
    depth = (torch.log(r) / _RANK_SCALE).clamp(max=1.0)
    weight = known.float()
    return torch.stack([discount * weight, depth * weight, weight], dim=-1)


def _first_stage_features(
    scores: torch.Tensor, known: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Within-group z-score and rank percentile (1 = best) of the first-stage scores."""
    weight = known.float()
    values = torch.where(known, scores, torch.zeros_like(scores))
    count = weight.sum(-1, keepdim=True).clamp(min=1)
    mean = values.sum(-1, keepdim=True) / count
    var = (((values - mean) * weight) ** 2).sum(-1, keepdim=True) / count
    z = torch.where(var > 0, (values - mean) / var.clamp(min=1e-12).sqrt(), 0.0) * weight
    # Percentile: the share of the group's other known documents this one beats.
    beats = (values[..., :, None] > values[..., None, :]) & known[..., None, :]
    percentile = beats.float().sum(-1) / (count - 1).clamp(min=1) * weight
    return z, percentile


def expected_scores(logits: torch.Tensor) -> torch.Tensor:
    """The expected value of each document's 0..10 distribution."""
    levels = torch.arange(NUM_LEVELS, dtype=logits.dtype, device=logits.device)
    return logits.softmax(-1) @ levels


def load_sentence_encoder(name: str, device: str = "cpu", max_doc_tokens: int = 256):
    """The config's sentence encoder, loaded offline."""
    from grouprank.retrieval import load_encoder

    encoder = load_encoder(device, None if name == SHIPPED_ENCODER else name)
    encoder.max_seq_length = max_doc_tokens
    return encoder


def save_head(head: GroupHead, path: str | Path) -> None:
    """Writes ``grouprank.json`` and ``head.safetensors`` into ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path / HEAD_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(asdict(head.config), indent=2) + "\n")


def load_head(path: str | Path, device: str = "cpu") -> GroupHead:
    """Reads a head saved by ``save_head`` (safetensors only; no pickle is ever loaded)."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    head = GroupHead(load_config(path))
    head.load_state_dict(load_file(str(path / HEAD_FILE)))
    return head.to(device).eval()


def pad_groups(
    queries: torch.Tensor,
    docs: Sequence[torch.Tensor],
    first_stage: Sequence[Sequence[float]],
    ranks: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pads groups of different sizes into (query, docs, first_stage, mask, ranks) tensors.

    ``first_stage[i]`` may be empty (unknown): its entries become NaN; ``ranks[i]`` (or all
    ranks, when None) may be empty too: its entries become 0.
    """
    size = max(len(d) for d in docs)
    batch, dim = len(docs), queries.shape[-1]
    padded = torch.zeros(batch, size, dim, dtype=queries.dtype)
    scores = torch.full((batch, size), float("nan"))
    mask = torch.zeros(batch, size, dtype=torch.bool)
    rank_tensor = torch.zeros(batch, size, dtype=torch.long)
    for i, (block, fs) in enumerate(zip(docs, first_stage, strict=True)):
        padded[i, : len(block)] = block
        mask[i, : len(block)] = True
        if len(fs):
            scores[i, : len(fs)] = torch.as_tensor(list(fs), dtype=torch.float32)
        if ranks is not None and len(ranks[i]):
            rank_tensor[i, : len(ranks[i])] = torch.as_tensor(list(ranks[i]), dtype=torch.long)
    return queries, padded, scores, mask, rank_tensor


class GroupEncoderScorer:
    """The group-encoder backbone behind the ``GroupScorer`` interface of the reranking job.

    Documents and queries are embedded each on its own (``precomputed_embeddings``), so the job
    can embed each distinct text once and pass the vectors in ``GroupInput``; groups without
    vectors are embedded here. The encoder runs at ``precision`` (``grouprank.encoding``); the
    head always runs in fp32.
    """

    precomputed_embeddings = True

    def __init__(
        self, path: str | Path, device: str = "cpu", name: str | None = None,
        precision: str = "fp32",
    ) -> None:
        self.head = load_head(path, device)
        config = self.head.config
        self.encoder = load_sentence_encoder(config.encoder, device, config.max_doc_tokens)
        self.device = device
        self.name = name or Path(path).expanduser().name
        self.precision = precision

    def with_precision(self, precision: str) -> GroupEncoderScorer:
        """The same loaded weights, encoding at ``precision`` (no copy of the model)."""
        other = copy.copy(self)
        other.precision = precision
        return other

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised encoder embeddings of ``texts`` (what ``GroupInput.vectors`` holds)."""
        from grouprank.encoding import encode_texts

        return encode_texts(self.encoder, list(texts), self.precision)

    def embed_with_late(
        self, texts: Sequence[str], queries: Sequence[Sequence[str]]
    ) -> tuple[torch.Tensor, list[list[float]]]:
        """``embed(texts)``, and each text's MaxSim with each of its ``queries`` (aligned lists),
        from the one encoder pass that pools the vectors: what the embedding stage gives a head
        that reads MaxSim, so its documents are not encoded a second time to score them."""
        from grouprank.late_interaction import encode_with_tokens, maxsim

        vectors, tokens = encode_with_tokens(self.encoder, list(texts), self.precision,
                                             windows=self.head.config.late_windows)
        wanted = list(dict.fromkeys(q for block in queries for q in block))
        query_tokens = dict(zip(wanted, self._query_tokens(wanted), strict=True))
        late = [[maxsim(query_tokens[q], doc) for q in block]
                for doc, block in zip(tokens, queries, strict=True)]
        return vectors, late

    def _query_tokens(self, queries: list[str]) -> list[torch.Tensor]:
        """The queries' token vectors, each query encoded once per process (a bounded memo:
        queries are few and short beside the documents)."""
        from grouprank.late_interaction import token_vectors

        # Shared with with_precision's copies (a shallow copy), hence the precision in the key.
        memo = self.__dict__.setdefault("_query_memo", {})
        missing = [q for q in queries if (self.precision, q) not in memo]
        if missing:
            if len(memo) + len(missing) > _QUERY_MEMO:
                memo.clear()
            vectors = token_vectors(self.encoder, missing, self.precision)
            memo.update(zip([(self.precision, q) for q in missing], vectors, strict=True))
        return [memo[self.precision, q] for q in queries]

    @torch.inference_mode()
    def score_groups(self, groups: Sequence[GroupInput]) -> list[GroupResult]:
        if not groups:
            return []
        queries, blocks = self._vectors(groups)
        batch = pad_groups(
            queries, blocks, [g.first_stage for g in groups],
            [g.first_stage_rank for g in groups],
        )
        context = self._contexts(groups, queries, blocks)
        agreement = self._agreements(groups, queries, blocks)
        late = self._late(groups, batch[3].shape)
        logits = self.head(*(t.to(self.device) for t in batch), context=context,
                           agreement=agreement, late=late)
        scores = expected_scores(logits).cpu()
        return [
            GroupResult(
                scores=[float(s) for s in scores[i, : len(g.texts)]],
                statuses=[OK] * len(g.texts),
                prompt_tokens=0,
                generated_tokens=0,
            )
            for i, g in enumerate(groups)
        ]

    def _contexts(
        self, groups: Sequence[GroupInput], queries: torch.Tensor, blocks: list[torch.Tensor]
    ) -> torch.Tensor | None:
        """Each group's feedback vector: given (computed by the job over the whole list), else
        made from the group's own documents (an approximation: a group is part of the list)."""
        top = self.head.config.context_top
        if not top:
            return None
        rows = []
        for group, query, docs in zip(groups, queries, blocks, strict=True):
            if group.context_vector is not None:
                rows.append(torch.as_tensor(_stack(group.context_vector), dtype=torch.float32))
                continue
            ranks = np.asarray(group.first_stage_rank or range(1, len(docs) + 1))
            rows.append(torch.from_numpy(feedback_vector(query.numpy(), docs.numpy(), ranks, top)))
        return torch.stack(rows).to(self.device)

    def _agreements(
        self, groups: Sequence[GroupInput], queries: torch.Tensor, blocks: list[torch.Tensor]
    ) -> torch.Tensor | None:
        """Each group's ``first_stage_agreement``: given (computed by the job over the whole
        list), else measured on the group's own documents (an approximation)."""
        if not self.head.config.agreement_feature:
            return None
        values = []
        for group, query, docs in zip(groups, queries, blocks, strict=True):
            if group.first_stage_agreement is not None:
                values.append(float(group.first_stage_agreement))
                continue
            ranks = np.asarray(group.first_stage_rank or range(1, len(docs) + 1))
            values.append(first_stage_agreement(ranks, docs.numpy() @ query.numpy()))
        return torch.tensor(values, dtype=torch.float32).to(self.device)

    def _late(self, groups: Sequence[GroupInput], shape: torch.Size) -> torch.Tensor | None:
        """Each document's MaxSim with its group's query (B, N), for a head that reads it: as
        given (``GroupInput.late_scores``, from the embedding stage), else computed here from
        the texts with the scorer's encoder."""
        if not self.head.config.late_interaction:
            return None
        from grouprank.late_interaction import maxsim, token_vectors

        late = torch.zeros(shape)
        missing = []  # (group, position) of each document without a given MaxSim
        for i, group in enumerate(groups):
            given = group.late_scores or (None,) * len(group.texts)
            if len(given) != len(group.texts):
                raise ValueError(f"{len(given)} MaxSim scores for a group of "
                                 f"{len(group.texts)} documents")
            for j, value in enumerate(given):
                if value is None or value != value:  # None or NaN: not given
                    missing.append((i, j))
                else:
                    late[i, j] = float(value)
        if missing:
            queries = list(dict.fromkeys(groups[i].query for i, _ in missing))
            query_vectors = dict(zip(queries, self._query_tokens(queries), strict=True))
            docs = token_vectors(self.encoder, [groups[i].texts[j] for i, j in missing],
                                 self.precision, windows=self.head.config.late_windows)
            for (i, j), doc in zip(missing, docs, strict=True):
                late[i, j] = maxsim(query_vectors[groups[i].query], doc)
        return late.to(self.device)

    def _vectors(self, groups: Sequence[GroupInput]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Query vectors (B, E) and each group's document vectors, given or embedded here."""
        given = [g.vectors is not None and g.query_vector is not None for g in groups]
        need = [g for g, has in zip(groups, given, strict=True) if not has]
        queries = iter(self.embed([g.query for g in need]) if need else [])
        flat = self.embed([t for g in need for t in g.texts]) if need else None
        start, query_rows, blocks = 0, [], []
        for group, has in zip(groups, given, strict=True):
            n = len(group.texts)
            if has:
                docs = torch.as_tensor(_stack(group.vectors), dtype=torch.float32)
                if docs.shape[0] != n:
                    raise ValueError(f"{docs.shape[0]} vectors for a group of {n} documents")
                query_rows.append(torch.as_tensor(_stack(group.query_vector), dtype=torch.float32))
                blocks.append(docs)
            else:
                query_rows.append(next(queries))
                blocks.append(flat[start : start + n])
                start += n
        return torch.stack(query_rows), blocks


# Queries whose token vectors a scorer keeps (``GroupEncoderScorer._query_tokens``): ~20 tokens of
# 384 floats each, ~30 KB a query, so at most ~60 MB.
_QUERY_MEMO = 2_000


def _stack(value) -> np.ndarray:
    """A vector or a sequence of vectors (lists, arrays, Arrow-made object arrays) as float32."""
    array = np.asarray(value)
    if array.dtype == object:
        return np.stack([np.asarray(v, dtype=np.float32) for v in value])
    # A copy: Arrow hands read-only buffers, which torch will not wrap.
    return np.array(array, dtype=np.float32)
