"""Table schemas (one ``StructType`` per table) and their validation.

Every reader, writer, UDF return type and test imports these; nothing else declares column lists.
"""

from schemas.candidates import CANDIDATES, CANDIDATES_REQUIRED, validate_candidates
from schemas.reranked import GROUP_SCORES, RERANKED, SCORING_GROUPS
from schemas.validation import SchemaError, check_columns
from schemas.corpus import CORPUS, CORPUS_REQUIRED, validate_corpus
from schemas.queries import QUERIES, QUERIES_REQUIRED, validate_queries
from schemas.qrels import QRELS, QRELS_REQUIRED, validate_qrels
from schemas.metrics import ALL_QUERIES, METRICS, METRICS_REQUIRED, validate_metrics
from schemas.serving import PUBLISH_LOG, SERVING, validate_serving

__all__ = [
    "CANDIDATES",
    "CANDIDATES_REQUIRED",
    "GROUP_SCORES",
    "RERANKED",
    "SCORING_GROUPS",
    "SchemaError",
    "check_columns",
    "validate_candidates",
    "CORPUS",
    "CORPUS_REQUIRED",
    "validate_corpus",
    "QUERIES",
    "QUERIES_REQUIRED",
    "validate_queries",
    "QRELS",
    "QRELS_REQUIRED",
    "validate_qrels",
    "ALL_QUERIES",
    "METRICS",
    "METRICS_REQUIRED",
    "validate_metrics",
    "PUBLISH_LOG",
    "SERVING",
    "validate_serving",
]
