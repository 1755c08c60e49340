"""Tolerant parsing of a groupwise answer into one 0-10 score per document.

A document gets ``None`` and a status instead of a score whenever the output does not give it a
usable one: an unusable answer is marked and counted, never scored as something else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

# Per-document statuses: one meaning each, whatever the paradigm. STATUSES is the one list the
# README, the schema docs and the job summary are written from.
OK = "ok"
UNPARSED = "unparsed"
MISSING_SCORE = "missing_score"
OUT_OF_RANGE = "out_of_range"
TRUNCATED = "truncated"
REPAIRED = "repaired"
TOO_LONG = "too_long"
OUT_OF_MEMORY = "out_of_memory"
PARTIAL = "partial"
EMPTY_TEXT = "empty_text"
EMPTY_QUERY = "empty_query"

STATUSES: dict[str, str] = {
    OK: "scored by the model in every repeat",
    PARTIAL: "scored in some repeats; the others gave no usable score",
    TRUNCATED: "scored, but the group's documents were cut below --max-doc-tokens to fit the "
    "model's context window or the accelerator's memory",
    REPAIRED: "scored (listwise): the model's permutation left it out and repair placed it",
    UNPARSED: "no score: no answer could be read from the model's output",
    MISSING_SCORE: "no score: the answer gave none for this document",
    OUT_OF_RANGE: "no score: the answer's score is outside 0-10 or not a number",
    TOO_LONG: "no score: the group cannot fit the context window even cut to one token",
    OUT_OF_MEMORY: "no score: alone and cut to the minimum, the group still ran out of memory",
    EMPTY_TEXT: "not sent to the model: blank document text (model score 0)",
    EMPTY_QUERY: "not sent to the model: blank query (model score 0)",
}
# Statuses whose documents carry a model score.
SCORED = frozenset({OK, PARTIAL, TRUNCATED, REPAIRED, EMPTY_TEXT, EMPTY_QUERY})

SCORE_MIN, SCORE_MAX = 0.0, 10.0

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*(?:```|$)", re.DOTALL | re.IGNORECASE)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
# `"[3]": 7`, `[3]: 7.5`, `"3": "7"`: an identifier, a colon and a number.
_PAIR = re.compile(r"""["']?\[?\s*(\d+)\s*\]?["']?\s*:\s*["']?(-?\d+(?:\.\d+)?)""")


@dataclass(frozen=True)
class ParsedAnswer:
    """Scores read from one group's output, aligned with the group's documents."""

    scores: list[float | None]
    statuses: list[str]
    # For the RL format gate: the answer tags were present / the JSON object was valid.
    has_tags: bool
    json_valid: bool

    @property
    def group_status(self) -> str:
        """``ok`` if every document got a score, ``unparsed`` if none did, else ``partial``."""
        good = sum(s == OK for s in self.statuses)
        if good == len(self.statuses):
            return OK
        return UNPARSED if good == 0 else "partial"


def parse_answer(output: str, num_docs: int) -> ParsedAnswer:
    """Reads the ``{"[i]": score}`` answer of a group of ``num_docs`` documents.

    Looks inside ``<answer>`` (or the whole output when the tags are missing), prefers a JSON
    object, and falls back to ``[i]: n`` pairs when the JSON is broken. Identifiers outside
    1..num_docs are ignored; a score outside 0-10 is marked ``out_of_range``, not clipped.

    Example:
        >>> p = parse_answer('<reason>x</reason><answer>```json {"[1]": 7, "[2]": 11}```</answer>', 3)
        >>> p.scores, p.statuses
        ([7.0, None, None], ['ok', 'out_of_range', 'missing_score'])
    """
    text = output or ""
    answer = _ANSWER.search(text)
    has_tags = answer is not None and "</answer>" in text.lower()
    body = answer.group(1) if answer else text
    fence = _FENCE.search(body)
    if fence:
        body = fence.group(1)
    raw, json_valid = _json_pairs(body)
    if raw is None:
        raw = {int(k): v for k, v in _PAIR.findall(body)}
    if not raw:
        return ParsedAnswer([None] * num_docs, [UNPARSED] * num_docs, has_tags, json_valid)
    scores: list[float | None] = []
    statuses: list[str] = []
    for index in range(1, num_docs + 1):
        if index not in raw:
            scores.append(None)
            statuses.append(MISSING_SCORE)
            continue
        value = _as_score(raw[index])
        scores.append(value)
        statuses.append(OK if value is not None else OUT_OF_RANGE)
    return ParsedAnswer(scores, statuses, has_tags, json_valid)


def _json_pairs(body: str) -> tuple[dict[int, object] | None, bool]:
    match = _OBJECT.search(body)
    if not match:
        return None, False
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None, False
    if not isinstance(data, dict):
        return None, False
    pairs: dict[int, object] = {}
    for key, value in data.items():
        digits = str(key).strip().strip("[]").strip()
        if digits.isdigit():
            pairs[int(digits)] = value
    return pairs, True


def _as_score(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or not SCORE_MIN <= number <= SCORE_MAX:
        return None
    return number
