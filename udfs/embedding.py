"""The embedding UDF: distinct texts in, one normalised sentence-encoder vector each out.

For a group-encoder model it runs on the model's own cached weights (``udfs.scoring.get_scorer``),
so a worker that embeds and then scores loads the model once; for a sentence-encoder training
base (train-sft on minilm: no head yet) on the encoder alone, cached per worker the same way
(``udfs/cache.py``). Memory per worker: the model (~0.1 GB for MiniLM) plus one Arrow batch of
texts and their vectors (1.5 KB each at 384 dimensions).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd

from grouprank.encoding import text_digest

from grouprank.models import SENTENCE_ENCODER, ModelRef
from grouprank.settings import RerankSettings
from udfs.cache import cached, task_device


def embed_texts_udf(
    settings: RerankSettings, ref: ModelRef
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function from ``EMBEDDING_TEXTS`` rows to ``EMBEDDINGS`` rows,
    or from ``LATE_TEXTS`` to ``LATE_EMBEDDINGS`` (a head that reads MaxSim: ``ref.encoder.late``).

    Only ``settings.precision`` (resolved) and ``trust_remote_code`` are read.

    Example:
        >>> texts.mapInPandas(embed_texts_udf(settings, ref), EMBEDDINGS)  # doctest: +SKIP
    """

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encode = None
        for batch in batches:
            if batch.empty:
                continue
            if encode is None:
                late = "queries" in batch.columns
                encode = text_encoder(settings, ref, task_device(), late)
            yield _embed_batch(encode, batch)

    return embed


def text_encoder(settings: RerankSettings, ref: ModelRef, device: str, late: bool = False):
    """``texts -> vectors`` on the weights this worker has cached for ``ref``; with ``late``
    (a group encoder's head that reads MaxSim), ``(texts, queries) -> (vectors, MaxSims)``."""
    if ref.kind != SENTENCE_ENCODER:
        from udfs.scoring import get_scorer

        scorer = get_scorer(settings, ref, device)
        return scorer.embed_with_late if late else scorer.embed
    from grouprank.backends.group_encoder import load_sentence_encoder
    from grouprank.encoding import encode_texts, resolve_precision

    encoder_ref = ref.encoder
    key = ("sentence-encoder", encoder_ref.name, encoder_ref.digest, encoder_ref.max_tokens, device)
    encoder = cached(key, lambda: load_sentence_encoder(encoder_ref.name, device,
                                                        encoder_ref.max_tokens))
    precision = resolve_precision(settings.precision, device)
    return lambda texts: encode_texts(encoder, texts, precision)


def _embed_batch(encode, batch: pd.DataFrame) -> pd.DataFrame:
    """One Arrow batch of texts embedded (the fault injector wraps this)."""
    texts = [str(t) for t in batch["text"]]
    late = "queries" in batch.columns
    if late:
        queries = [[str(q) for q in block] for block in batch["queries"]]
        vectors, scores = encode(texts, queries)
    else:
        vectors = encode(texts)
    if len(vectors) != len(batch):
        raise RuntimeError(f"the encoder returned {len(vectors)} vectors for {len(batch)} texts")
    out = pd.DataFrame(
        {"text_digest": batch["text_digest"].to_numpy(), "vector": list(vectors.numpy())}
    )
    if late:
        out["late_queries"] = [[text_digest(q) for q in block] for block in queries]
        out["late_scores"] = [np.asarray(block, dtype=np.float32) for block in scores]
    return out
