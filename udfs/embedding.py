"""The embedding UDF: distinct texts in, one normalised sentence-encoder vector each out.

Runs on the group-encoder model's own cached weights (``udfs.scoring.get_scorer``), so a worker
that embeds and then scores loads the model once. Memory per worker: the model (~0.1 GB for
MiniLM) plus one Arrow batch of texts and their vectors (1.5 KB each at 384 dimensions).
"""

from __future__ import annotations

from typing import Callable, Iterator

import pandas as pd

from grouprank.models import ModelRef
from grouprank.settings import RerankSettings
from udfs.cache import task_device


def embed_texts_udf(
    settings: RerankSettings, ref: ModelRef
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function from ``EMBEDDING_TEXTS`` rows to ``EMBEDDINGS`` rows.

    Example:
        >>> texts.mapInPandas(embed_texts_udf(settings, ref), EMBEDDINGS)  # doctest: +SKIP
    """

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from udfs.scoring import get_scorer

        scorer = None
        for batch in batches:
            if batch.empty:
                continue
            if scorer is None:
                scorer = get_scorer(settings, ref, task_device())
            vectors = scorer.embed([str(t) for t in batch["text"]])
            if len(vectors) != len(batch):
                raise RuntimeError(f"the encoder returned {len(vectors)} vectors for {len(batch)} texts")
            yield pd.DataFrame(
                {"text_digest": batch["text_digest"].to_numpy(), "vector": list(vectors.numpy())}
            )

    return embed
