"""Late interaction over a sentence encoder's token states: MaxSim (issue 21).

A bi-encoder's one pooled vector per text averages away which words matched. MaxSim keeps them:
every query token finds its most similar document token (cosine of the encoder's last-layer
token states), and the document's score is the mean of those best matches over the query's
tokens. The encoder is the one the group head already runs (MiniLM by default), never trained
for this; on the dev collections its MaxSim alone ranked above its pooled cosine on every BM25
list (docs/BENCHMARKS.md, "Late interaction"). A head whose config sets ``late_interaction`` reads
each document's MaxSim as a feature; the scorer computes it from the group's texts, so the job
needs nothing more than the texts it already sends.

Special tokens ([CLS], [SEP]) and padding take no part. No Spark import.

A document longer than the encoder's token limit is read in ``windows``: its tokens cut into
consecutive windows of the limit (each with its own [CLS] and [SEP]), encoded as one batch, their
token states joined, so MaxSim can match a query's words anywhere in the first ``windows`` x
limit tokens. The pooled vector stays the first window's, exactly as without windows; a text
within the limit is one window either way.

    encoder = load_sentence_encoder("minilm")
    maxsim_scores(encoder, "solar panels", ["roof solar cells", "bread"], "fp32")  # [0.71, 0.2]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from grouprank.encoding import DEFAULT_BATCH, length_sorted_batches, resolve_precision, text_digest

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Per process: (encoder, token limit, precision, windows) -> {(query digest, text digest): MaxSim}.
# Scores only (8 bytes a pair), never token states: a worker may meet millions of texts.
_PAIRS: dict[tuple[str, int, str, int], dict[tuple[str, str], float]] = {}


def token_vectors(encoder, texts: Sequence[str], precision: str = "fp32",
                  batch_size: int = DEFAULT_BATCH, windows: int = 1) -> list[torch.Tensor]:
    """Each text's normalised token states (tokens, hidden), special tokens left out, float32 on
    the CPU, in input order; batches sorted by length as ``grouprank.encoding.encode_texts``;
    a long text's first ``windows`` windows joined (module docstring)."""
    return _encode(encoder, texts, precision, batch_size, pooled=False, windows=windows)[1]


def encode_with_tokens(
    encoder, texts: Sequence[str], precision: str = "fp32", batch_size: int = DEFAULT_BATCH,
    windows: int = 1,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``encode_texts`` and ``token_vectors`` of ``texts`` from one forward pass each: the
    embedding stage of a head that reads MaxSim pays for its texts' encoder pass once."""
    return _encode(encoder, texts, precision, batch_size, pooled=True, windows=windows)


def text_windows(encoder, texts: Sequence[str], windows: int) -> list[list[list[int]]]:
    """Each text's token ids cut into at most ``windows`` windows of the encoder's limit, each
    with the text's first and last special tokens ([CLS], [SEP]); the first window is exactly
    ``encoder.token_ids(text)``.

    Example (a limit of 4: two tokens of text a window):
        >>> text_windows(encoder, ["a b c d e"], 2)  # doctest: +SKIP
        [[[101, 1037, 1038, 102], [101, 1039, 1040, 102]]]
    """
    limit = encoder.max_seq_length
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    width = limit - 2
    out = []
    for ids in encoder.token_ids(texts, limit=2 + width * windows):
        if len(ids) <= limit:
            out.append([ids])
            continue
        first, body, last = ids[0], ids[1:-1], ids[-1]
        out.append([[first, *body[i : i + width], last] for i in range(0, len(body), width)])
    return out


def _encode(encoder, texts: Sequence[str], precision: str, batch_size: int,
            pooled: bool, windows: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Every window of every text (``text_windows``: one a text within the limit) in batches
    sorted by length; a text's pooled vector is its first window's, its token states its
    windows' joined in order."""
    import torch

    device = str(encoder.device)
    chosen = resolve_precision(precision, device)
    vectors = torch.empty(len(texts) if pooled else 0, encoder.dimension, dtype=torch.float32)
    if not texts:
        return vectors, []
    cut = text_windows(encoder, texts, windows)
    flat = [(i, w, ids) for i, text in enumerate(cut) for w, ids in enumerate(text)]
    parts: list[list[torch.Tensor | None]] = [[None] * len(text) for text in cut]
    autocast = torch.autocast("cuda" if device.startswith("cuda") else "cpu",
                              dtype=torch.bfloat16, enabled=chosen == "bf16")
    with torch.inference_mode(), autocast:
        for batch in length_sorted_batches([len(ids) for _, _, ids in flat], batch_size):
            embedded, states, mask = encoder.embed_ids([flat[k][2] for k in batch])
            states = torch.nn.functional.normalize(states.float(), dim=-1).cpu()
            real = mask.sum(-1).tolist()
            for row, k in enumerate(batch):
                i, w, _ = flat[k]
                if pooled and w == 0:
                    vectors[i] = torch.nn.functional.normalize(embedded[row].float(), dim=-1).cpu()
                # [CLS] first and [SEP] last; a text of nothing but them keeps them.
                n = int(real[row])
                parts[i][w] = states[row, 1 : n - 1] if n > 2 else states[row, :n]
    return vectors, [torch.cat(p) if len(p) > 1 else p[0] for p in parts]  # type: ignore[misc]


def _query_and_docs(encoder, query: str, texts: Sequence[str], precision: str,
                    windows: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The query's token vectors (one window, as the scorer reads queries) and each text's (up
    to ``windows`` windows); with one window, one pass over both."""
    if windows == 1:
        query_tokens, *docs = token_vectors(encoder, [query, *texts], precision)
        return query_tokens, docs
    return (token_vectors(encoder, [query], precision)[0],
            token_vectors(encoder, texts, precision, windows=windows))


def maxsim(query: torch.Tensor, doc: torch.Tensor) -> float:
    """Mean over the query's tokens of the best cosine with any of the document's tokens
    (both normalised token vectors, (tokens, hidden)); 0.0 if either has no tokens.

    Example:
        >>> import torch
        >>> q = torch.eye(3)[:2]; d = torch.eye(3)[1:]
        >>> maxsim(q, d)  # token 0 matches nothing, token 1 matches exactly
        0.5
    """
    if not len(query) or not len(doc):
        return 0.0
    return float((query @ doc.T).max(dim=1).values.mean())


def maxsim_scores(encoder, query: str, texts: Sequence[str], precision: str = "fp32",
                  windows: int = 1) -> list[float]:
    """Each text's MaxSim against ``query`` with a loaded ``SentenceEncoder``, each text read in
    up to ``windows`` windows (the query in one)."""
    query_tokens, docs = _query_and_docs(encoder, query, texts, precision, windows)
    return [maxsim(query_tokens, doc) for doc in docs]


def maxsim_in_memory(
    encoder_name: str,
    pairs: Sequence[tuple[str, str]],
    max_tokens: int = 256,
    device: str = "cpu",
    precision: str = "auto",
    windows: int = 1,
) -> list[float]:
    """MaxSim of each (query, text) pair, each distinct pair scored once per process (the scores
    are kept in memory, the token states are not). ``encoder_name`` as
    ``grouprank.encoding.embed_in_memory``; the encoder loaded there is reused; each text read
    in up to ``windows`` windows of ``max_tokens``."""
    from grouprank.encoding import loaded_encoder

    chosen = resolve_precision(precision, device)
    memory = _PAIRS.setdefault((encoder_name, max_tokens, chosen, windows), {})
    keys = [(text_digest(q), text_digest(t)) for q, t in pairs]
    by_query: dict[str, dict[str, str]] = {}
    queries: dict[str, str] = {}
    for (qk, tk), (q, t) in zip(keys, pairs, strict=True):
        if (qk, tk) not in memory:
            queries[qk] = q
            by_query.setdefault(qk, {})[tk] = t
    if by_query:
        encoder = loaded_encoder(encoder_name, max_tokens, device)
        log.info("MaxSim of %d pairs (%d already in memory)",
                 sum(len(v) for v in by_query.values()), len(memory))
        # A query at a time: its token states and its texts' (a pool), then only the scores kept.
        for qk, block in by_query.items():
            query, docs = _query_and_docs(encoder, queries[qk], list(block.values()), chosen,
                                          windows)
            for tk, doc in zip(block, docs, strict=True):
                memory[qk, tk] = maxsim(query, doc)
    return [memory[k] for k in keys]
