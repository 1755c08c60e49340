"""Sentence-encoder embeddings at the CPU's limit: length-sorted batches and bf16 where it pays.

Everything that embeds text with the sentence encoder (reranking, the embedding stage and store,
dense retrieval, the synthesis teacher, training features) goes through ``encode_texts``; code
that runs without Spark and meets the same texts again (the synthesis teacher in a worker, the
trainers called directly, the bench scripts) calls ``embed_in_memory``, which encodes each
distinct text once per process and keeps nothing on disk (across runs and jobs, the Delta
embedding store of ``jobs/embeddings.py`` does that):

- texts are sorted by token length (longest first) and cut into batches, so a batch pads to
  nearly its own length instead of its longest member's; the output is in input order;
- ``precision="bf16"`` runs the encoder under bf16 autocast (the result is returned as float32,
  normalised). On CPUs with native bf16 dot products (AVX512_BF16 or AMX) this roughly doubles
  the encoder's throughput; elsewhere bf16 is emulated and slower, so ``"auto"`` picks it only
  where the hardware has it (and on GPUs). See ``resolve_precision``.

An encoder is anything with the small ``SentenceEncoder`` interface: ``grouprank.lean_encoder``'s
``LeanEncoder`` (plain torch, what ``load_encoder`` gives for the shipped MiniLM) or
``SentenceTransformerEncoder`` around a ``sentence_transformers.SentenceTransformer`` (any other
model). No Spark import.

    encoder = load_sentence_encoder("minilm")
    vectors = encode_texts(encoder, ["a query", "a document"], precision="auto")
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # torch is imported where it is used: a Spark driver never needs it
    import torch


log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
DEFAULT_BATCH = 64

# Per process: (encoder, token limit, device) -> the loaded encoder, and
# (encoder, token limit, precision) -> {sha256(text): vector}. Memory only, never written.
_ENCODERS: dict[tuple[str, int, str], object] = {}
_VECTORS: dict[tuple[str, int, str], dict[str, torch.Tensor]] = {}


@functools.cache
def cpu_has_bf16() -> bool:
    """True if this CPU has native bf16 dot products (AVX512_BF16 or AMX-BF16): from the
    kernel's flags where there are any (no torch import, so a Spark driver resolving
    ``--precision auto`` stays torch-free), else from torch."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    try:
        import torch.cpu

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (ImportError, AttributeError):
        return False


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for a requested precision on ``device``.

    ``auto`` is bf16 on GPUs and on CPUs with native bf16 (``cpu_has_bf16``), else fp32.

    Example:
        >>> resolve_precision("fp32", "cuda:0"), resolve_precision("auto", "cuda:0")
        ('fp32', 'bf16')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        return "bf16"
    return "bf16" if cpu_has_bf16() else "fp32"


class SentenceEncoder(Protocol):
    """What ``encode_texts`` needs from a loaded sentence encoder."""

    # Where the weights are; inputs are moved there.
    device: torch.device
    # Width of one embedding.
    dimension: int
    # Token limit per text, special tokens included (settable).
    max_seq_length: int

    def token_ids(self, texts: Sequence[str], limit: int | None = None) -> list[list[int]]:
        """Each text's token ids, special tokens added, cut at ``limit`` (default
        ``max_seq_length``), unpadded."""
        ...

    def embed_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """One batch's sentence embeddings (padded to its longest text), on ``device``."""
        ...

    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch's last-layer token states (batch, tokens, hidden) and attention mask,
        special tokens included (what ``grouprank.late_interaction`` reads)."""
        ...

    def embed_with_states(
        self, texts: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``embed_batch`` and ``token_states`` of one batch from one forward pass."""
        ...

    def embed_ids(
        self, ids: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``embed_with_states`` of sequences already tokenised (special tokens included, each
        within ``max_seq_length``): the windows of a long text (``grouprank.late_interaction``)."""
        ...


class SentenceTransformerEncoder:
    """A ``sentence_transformers.SentenceTransformer`` behind ``SentenceEncoder``."""

    def __init__(self, model) -> None:
        self.model = model
        # sentence-transformers 6 renamed get_sentence_embedding_dimension.
        dimension = getattr(model, "get_embedding_dimension", None)
        self.dimension = dimension() if dimension else model.get_sentence_embedding_dimension()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_seq_length(self) -> int:
        return self.model.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.model.max_seq_length = value

    def token_ids(self, texts: Sequence[str], limit: int | None = None) -> list[list[int]]:
        return self.model.tokenizer(
            list(texts), truncation=True, max_length=limit or self.max_seq_length,
            add_special_tokens=True,
        )["input_ids"]

    def embed_batch(self, texts: Sequence[str]) -> torch.Tensor:
        return self._forward(texts)["sentence_embedding"]

    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._forward(texts)
        return out["token_embeddings"], out["attention_mask"]

    def embed_with_states(
        self, texts: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self._forward(texts)
        return out["sentence_embedding"], out["token_embeddings"], out["attention_mask"]

    def embed_ids(
        self, ids: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        input_ids, mask = padded_ids(ids, self.model.tokenizer.pad_token_id or 0, self.device)
        features = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.model.tokenizer.model_input_names:  # BERT's, not RoBERTa's
            features["token_type_ids"] = torch.zeros_like(input_ids)
        out = self.model(features)
        return out["sentence_embedding"], out["token_embeddings"], out["attention_mask"]

    def _forward(self, texts: Sequence[str]) -> dict:
        # sentence-transformers 6 renamed tokenize to preprocess.
        import torch

        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v
            for k, v in preprocess(list(texts)).items()
        }
        return self.model(features)


def padded_ids(ids: Sequence[Sequence[int]], pad_id: int,
               device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id sequences as one batch on ``device``: ids padded with ``pad_id`` to the longest,
    and the attention mask (1 = a real token)."""
    import torch

    longest = max(len(i) for i in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), longest, dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(list(seq))
        mask[row, : len(seq)] = 1
    return input_ids.to(device), mask.to(device)


def token_lengths(encoder: SentenceEncoder, texts: Sequence[str]) -> list[int]:
    """Tokens each text takes in the encoder (special tokens included, cut at its limit)."""
    return [len(i) for i in encoder.token_ids(texts)]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices into ``lengths`` in batches of ``batch_size``, longest first (ties: input order).

    Example:
        >>> length_sorted_batches([3, 9, 1, 9, 4], 2)
        [[1, 3], [4, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode_texts(
    encoder: SentenceEncoder,
    texts: Sequence[str],
    precision: str = "fp32",
    batch_size: int = DEFAULT_BATCH,
    sort_by_length: bool = True,
) -> torch.Tensor:
    """Normalised float32 embeddings of ``texts`` (one row each, in input order).

    ``encoder`` is a loaded ``SentenceEncoder`` (``grouprank.retrieval.load_encoder``);
    ``precision`` is ``fp32``, ``bf16`` or ``auto`` (see ``resolve_precision``). ``sort_by_length=False`` batches
    in input order (what ``bench/encoder_limit.py`` compares against).

    Example:
        >>> encode_texts(encoder, ["a", "b c"], "fp32").shape  # doctest: +SKIP
        torch.Size([2, 384])
    """
    device = str(encoder.device)
    chosen = resolve_precision(precision, device)
    import torch

    out = torch.empty(len(texts), encoder.dimension, dtype=torch.float32)
    if not texts:
        return out
    if sort_by_length:
        batches = length_sorted_batches(token_lengths(encoder, texts), batch_size)
    else:
        batches = [list(range(i, min(i + batch_size, len(texts))))
                   for i in range(0, len(texts), batch_size)]
    autocast = torch.autocast(
        "cuda" if device.startswith("cuda") else "cpu",
        dtype=torch.bfloat16,
        enabled=chosen == "bf16",
    )
    with torch.inference_mode(), autocast:
        for batch in batches:
            embedded = encoder.embed_batch([texts[i] for i in batch]).float()
            out[batch] = torch.nn.functional.normalize(embedded, dim=-1).cpu()
    return out


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Tokens computed (each batch padded to its longest) per real token.

    Example:
        >>> padding_ratio([4, 2, 3, 1], [[0, 1], [2, 3]])
        1.4
    """
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return padded / max(1, sum(lengths))


def text_digest(text: str) -> str:
    """The sha256 (hex) of a text: the store's key, what Spark's ``sha2(text, 256)`` gives.

    Example:
        >>> text_digest("a")[:12]
        'ca978112ca1b'
    """
    return hashlib.sha256(text.encode()).hexdigest()


def embed_in_memory(
    encoder_name: str,
    texts: Sequence[str],
    max_tokens: int = 256,
    device: str = "cpu",
    precision: str = "auto",
) -> torch.Tensor:
    """Normalised embeddings of ``texts`` (one row each), each distinct text encoded once per
    process: the encoder is loaded on first use and the vectors kept in memory (1.5 KB a text at
    384 dimensions), never on disk.

    ``encoder_name`` is ``"minilm"`` (the package-shipped all-MiniLM-L6-v2) or an encoder
    directory; ``precision`` is resolved on ``device`` and is part of the memo's key, so fp32 and
    bf16 vectors are never mixed.

    Example:
        >>> embed_in_memory("minilm", ["a query", "a document"]).shape  # doctest: +SKIP
        torch.Size([2, 384])
    """
    import torch

    chosen = resolve_precision(precision, device)
    memory = _VECTORS.setdefault((encoder_name, max_tokens, chosen), {})
    keys = [text_digest(t) for t in texts]
    missing = {k: t for k, t in zip(keys, texts) if k not in memory}
    if missing:
        log.info("encoding %d texts (%d already in memory)", len(missing), len(memory))
        encoder = loaded_encoder(encoder_name, max_tokens, device)
        vectors = encode_texts(encoder, list(missing.values()), chosen)
        memory.update(zip(missing, vectors))
    if not keys:
        return torch.zeros(0, 0)
    return torch.stack([memory[k] for k in keys])


def loaded_encoder(encoder_name: str, max_tokens: int = 256, device: str = "cpu"):
    """The sentence encoder ``encoder_name`` (``"minilm"`` or a directory), loaded once per
    process and token limit and kept for every later call."""
    key = (encoder_name, max_tokens, device)
    if key not in _ENCODERS:
        from grouprank.backends.group_encoder import load_sentence_encoder

        _ENCODERS[key] = load_sentence_encoder(encoder_name, device, max_tokens)
    return _ENCODERS[key]
