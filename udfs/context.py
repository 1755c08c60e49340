"""The grouped pandas UDF that reads a query's whole candidate list once: its first-stage
agreement with the encoder and its feedback vector (``grouprank.list_context``).

It replaced SQL over the vectors (``zip_with``/``aggregate`` per element), which Spark evaluates
without code generation, one array element at a time: on 10,000 rows of 384-dim vectors the SQL
took ~10 s warm and this ~1.7 s (docs/BENCHMARKS.md, "Start-up and the test suite").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from grouprank.list_context import query_context


def query_context_udf(feedback_top: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Builds the ``applyInPandas`` function from one query's ``CONTEXT_INPUT`` rows to its one
    ``QUERY_CONTEXT`` row; the feedback vector only for ``feedback_top`` > 0.

    Example:
        >>> rows.groupBy("qid").applyInPandas(query_context_udf(5), QUERY_CONTEXT)  # doctest: +SKIP
    """

    def per_query(rows: pd.DataFrame) -> pd.DataFrame:
        # Ties (equal cosines, equal rank products) break by first-stage rank, then docid.
        rows = rows.sort_values("docid", kind="stable")
        ranks = rows["first_stage_rank"].fillna(1).to_numpy(dtype=np.int64)
        docs = np.stack(rows["vector"].to_numpy()).astype(np.float32, copy=False)
        query = np.asarray(rows["query_vector"].iloc[0], dtype=np.float32)
        agreement, vector = query_context(query, docs, ranks, feedback_top)
        return pd.DataFrame({
            "qid": [rows["qid"].iloc[0]],
            "first_stage_agreement": [None if np.isnan(agreement) else agreement],
            "context_vector": [vector],
        })

    return per_query
