"""The retrieval UDF: query rows in, each query's top-k (qid, docid, score, rank) rows out
(``mapInPandas``).

Operating limits, as for ``pyspark.ml.functions.predict_batch_udf``: the closure captures only
the ``IndexBundle`` (bytes; PySpark broadcasts a pickled function above its broadcast threshold,
so a large index is sent once per executor, not once per task). Each Python worker unpacks the
bundle once and caches it keyed by the bundle's digest (``udfs.cache.cached``); with
``spark.python.worker.reuse`` (the default) later tasks reuse it. Memory per worker is the index
(see ``grouprank.retrieval``) plus, for dense and hybrid, the 90 MB encoder and a
(batch × documents) float64 score matrix, bounded by ``chunk_queries``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd

from grouprank.retrieval import IndexBundle, Retriever
from schemas.candidates import RETRIEVED
from udfs.cache import cached, task_device


def get_retriever(bundle: IndexBundle, device: str) -> Retriever:
    """Loads a bundle once per Python worker (through the workers' shared model cache) and
    returns the cached retriever afterwards."""
    return cached(("retriever", bundle.digest, device), lambda: Retriever(bundle, device))


def retrieve_udf(
    bundle: IndexBundle, k: int, chunk_queries: int = 64
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function over rows (qid, query, excluded_ids).

    Example:
        >>> queries.mapInPandas(retrieve_udf(bundle, 100), RETRIEVED)  # doctest: +SKIP
    """

    def retrieve(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        retriever = None
        for batch in batches:
            if batch.empty:
                continue
            if retriever is None:
                retriever = get_retriever(bundle, task_device())
            for start in range(0, len(batch), chunk_queries):
                chunk = batch.iloc[start : start + chunk_queries]
                excluded = [[] if ids is None else list(ids) for ids in chunk["excluded_ids"]]
                hits = retriever.top_k(chunk["query"].fillna("").tolist(), k, excluded)
                qids = chunk["qid"].tolist()
                yield pd.DataFrame(
                    [(qids[i], docid, score, rank) for i, docid, score, rank in hits],
                    columns=RETRIEVED.fieldNames(),
                ).astype({"score": "float64", "rank": "int32"})

    return retrieve
