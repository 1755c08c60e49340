"""Table schemas (one ``StructType`` per table) and their validation.

Every reader, writer, UDF return type and test imports these; nothing else declares column lists.
"""

from schemas.candidates import CANDIDATES, CANDIDATES_REQUIRED, validate_candidates
from schemas.reranked import GROUP_SCORES, RERANKED, SCORING_GROUPS
from schemas.validation import SchemaError, check_columns

__all__ = [
    "CANDIDATES",
    "CANDIDATES_REQUIRED",
    "GROUP_SCORES",
    "RERANKED",
    "SCORING_GROUPS",
    "SchemaError",
    "check_columns",
    "validate_candidates",
]
