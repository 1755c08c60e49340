"""Sentence-encoder embeddings at the CPU's limit: length-sorted batches and bf16 where it pays.

Everything that embeds text with the sentence encoder (reranking, the embedding stage and store,
dense retrieval, the synthesis teacher, training features) goes through ``encode_texts``:

- texts are sorted by token length (longest first) and cut into batches, so a batch pads to
  nearly its own length instead of its longest member's; the output is in input order;
- ``precision="bf16"`` runs the encoder under bf16 autocast (the result is returned as float32,
  normalised). On CPUs with native bf16 dot products (AVX512_BF16 or AMX) this roughly doubles
  the encoder's throughput; elsewhere bf16 is emulated and slower, so ``"auto"`` picks it only
  where the hardware has it (and on GPUs). See ``resolve_precision``.

No Spark import.

    encoder = load_sentence_encoder("minilm")
    vectors = encode_texts(encoder, ["a query", "a document"], precision="auto")
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
DEFAULT_BATCH = 64


@functools.cache
def cpu_has_bf16() -> bool:
    """True if this CPU has native bf16 dot products (AVX512_BF16 or AMX-BF16)."""
    try:
        import torch.cpu

        if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
            return True
    except AttributeError:  # older torch: read the kernel's flags instead
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def token_lengths(encoder, texts: Sequence[str]) -> list[int]:
    """Tokens each text takes in the encoder (special tokens included, cut at its limit)."""
    ids = encoder.tokenizer(
        list(texts), truncation=True, max_length=encoder.max_seq_length, add_special_tokens=True
    )["input_ids"]
    return [len(i) for i in ids]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices into ``lengths`` in batches of ``batch_size``, longest first (ties: input order).

    Example:
        >>> length_sorted_batches([3, 9, 1, 9, 4], 2)
        [[1, 3], [4, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode_texts(
    encoder,
    texts: Sequence[str],
    precision: str = "fp32",
    batch_size: int = DEFAULT_BATCH,
    sort_by_length: bool = True,
) -> torch.Tensor:
    """Normalised float32 embeddings of ``texts`` (one row each, in input order).

    ``encoder`` is a loaded ``sentence_transformers.SentenceTransformer``; ``precision`` is
    ``fp32``, ``bf16`` or ``auto`` (see ``resolve_precision``). ``sort_by_length=False`` batches
    in input order (what ``bench/encoder_limit.py`` compares against).

    Example:
        >>> encode_texts(encoder, ["a", "b c"], "fp32").shape  # doctest: +SKIP
        torch.Size([2, 384])
    """
    device = str(encoder.device)
    chosen = resolve_precision(precision, device)
    dimension = getattr(encoder, "get_embedding_dimension", None)
    dim = dimension() if dimension else encoder.get_sentence_embedding_dimension()
    out = torch.empty(len(texts), dim, dtype=torch.float32)
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
            features = _preprocess(encoder, [texts[i] for i in batch])
            features = {
                k: v.to(encoder.device) if isinstance(v, torch.Tensor) else v
                for k, v in features.items()
            }
            embedded = encoder(features)["sentence_embedding"].float()
            out[batch] = torch.nn.functional.normalize(embedded, dim=-1).cpu()
    return out


def _preprocess(encoder, texts: list[str]) -> dict:
    # sentence-transformers 6 renamed tokenize to preprocess.
    preprocess = getattr(encoder, "preprocess", None) or encoder.tokenize
    return preprocess(texts)


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Tokens computed (each batch padded to its longest) per real token.

    Example:
        >>> padding_ratio([4, 2, 3, 1], [[0, 1], [2, 3]])
        1.4
    """
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return padded / max(1, sum(lengths))
