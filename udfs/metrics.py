"""The metric UDF: one row per query (its judgements in rank order, and all its judgements) in,
one row per (query, metric) out (``mapInPandas``).

The metric definitions are ``grouprank.metrics``'s; this only adapts Arrow batches to them. A
query's arrays are as long as its judged list and its ranking up to the deepest cutoff, so memory
per batch is small; no model or index is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pandas as pd

from schemas.metrics import QUERY_METRICS


def query_metrics_udf(
    metrics: Sequence[str],
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Builds the ``mapInPandas`` function over rows (qid, ranked array<int>, judged array<int>).

    ``ranked`` holds the judgement of each retrieved document in trec_eval order (null or empty
    when the query retrieved nothing); ``judged`` every judgement of the query.

    Example:
        >>> per_query.mapInPandas(query_metrics_udf(["nDCG@10"]), QUERY_METRICS)  # doctest: +SKIP
    """
    names = list(metrics)

    def compute(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from grouprank.metrics import parse_metric, query_value

        parsed = [(name, parse_metric(name)) for name in names]
        for batch in batches:
            rows = []
            for qid, ranked, judged in batch[["qid", "ranked", "judged"]].itertuples(index=False):
                ranked = [] if ranked is None else ranked.tolist()
                judged = [] if judged is None else judged.tolist()
                rows.extend((qid, name, query_value(m, ranked, judged)) for name, m in parsed)
            yield pd.DataFrame(rows, columns=QUERY_METRICS.fieldNames())

    return compute
