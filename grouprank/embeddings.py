"""Sentence-encoder embeddings cached on disk, so a text is encoded once across jobs and runs.

Encoding is the expensive part of everything the MiniLM encoder does on a CPU (~0.1-0.2 s per
256-token document per core), and the same documents come back again and again: in the pools
of different queries, in SFT, RL and ablation runs, in evaluations. The cache is one safetensors
file per (encoder, token limit) under ``GROUPRANK_CACHE``/embeddings (default
~/.cache/grouprank), keyed by the SHA-1 of each text, guarded by a file lock so processes on one
machine can share it; each process also keeps what it read in memory.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from grouprank.encoding import encode_texts, resolve_precision

log = logging.getLogger(__name__)

# Per process: (encoder, token limit, precision) -> {sha1(text): vector}.
_MEMORY: dict[tuple[str, int, str], dict[str, torch.Tensor]] = {}
# Per process: (encoder, token limit, device) -> the loaded encoder, so a long-lived worker that
# keeps meeting new texts loads it once.
_ENCODERS: dict[tuple[str, int, str], object] = {}


def embed_cached(
    encoder_name: str,
    texts: list[str],
    max_doc_tokens: int = 256,
    device: str = "cpu",
    precision: str = "auto",
) -> torch.Tensor:
    """Normalised embeddings of ``texts`` (one row each), encoding only texts never seen before.

    ``encoder_name`` is ``"minilm"`` (the package-shipped all-MiniLM-L6-v2) or an encoder
    directory; ``precision`` is resolved on this machine (``grouprank.encoding``) and is part of
    the cache key, so fp32 and bf16 vectors are never mixed.

    Example:
        >>> embed_cached("minilm", ["a query", "a document"]).shape  # doctest: +SKIP
        torch.Size([2, 384])
    """
    precision = resolve_precision(precision, device)
    memory = _MEMORY.setdefault((encoder_name, max_doc_tokens, precision), {})
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    if any(k not in memory for k in keys):
        _fill(memory, encoder_name, max_doc_tokens, dict(zip(keys, texts)), device, precision)
    if not keys:
        return torch.zeros(0, 0)
    return torch.stack([memory[k] for k in keys])


def _fill(
    memory: dict,
    encoder_name: str,
    max_doc_tokens: int,
    wanted: dict[str, str],
    device: str,
    precision: str,
) -> None:
    from filelock import FileLock
    from safetensors.torch import load_file, save_file

    from grouprank.backends.group_encoder import load_sentence_encoder
    from grouprank.models import cache_dir

    # fp32 keeps the tag of caches written before precision was a choice.
    suffix = "" if precision == "fp32" else f"|{precision}"
    tag = hashlib.sha1(f"{encoder_name}|{max_doc_tokens}{suffix}".encode()).hexdigest()[:12]
    path = cache_dir() / "embeddings" / f"{tag}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            memory.update(load_file(str(path)))
        missing = sorted((k, t) for k, t in wanted.items() if k not in memory)
        if not missing:
            return
        log.info("encoding %d texts (%d cached)", len(missing), len(memory))
        key = (encoder_name, max_doc_tokens, device)
        if key not in _ENCODERS:
            _ENCODERS[key] = load_sentence_encoder(encoder_name, device, max_doc_tokens)
        vectors = encode_texts(_ENCODERS[key], [t for _, t in missing], precision)
        memory.update({k: v.clone() for (k, _), v in zip(missing, vectors)})
        save_file(memory, str(path))
