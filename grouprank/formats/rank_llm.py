"""rank_llm's request JSONL (and its older retrieve-results JSON list), read and written as a
candidates frame (qid, query, docid, text, score, rank).

    from grouprank.formats.rank_llm import read_rank_llm
    candidates = read_rank_llm("requests.jsonl")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from grouprank.formats.common import (
    FormatError,
    _field,
    _frame,
    _id,
    _jsonl,
    _text,
    _unique,
    open_text,
)


def read_rank_llm(path: str | Path) -> pd.DataFrame:
    """Reads rank_llm requests as a candidates frame (qid, query, docid, text, score, rank).

    Accepts rank_llm's JSONL ``Request`` rows
    ``{"query": {"text", "qid"}, "candidates": [{"docid", "score", "doc": {...}}]}`` (the text is
    the doc's ``contents``, ``text``, ``segment`` or ``body``, with ``title`` prefixed), and its
    older retrieve-results JSON list ``[{"query": str, "hits": [{"qid", "docid", "score",
    "rank", "content"}]}]``. Ranks are the candidates' order within each request.
    """
    rows: list[tuple] = []
    for number, record in _rank_llm_records(path):
        if isinstance(record.get("query"), dict):
            query = record["query"]
            qid = _id(query, "qid", path, number)
            text = _text(query, "text", path, number)
            hits = _field(record, "candidates", path, number)
        else:
            text = _text(record, "query", path, number)
            hits = _field(record, "hits", path, number)
            qid = _id(hits[0], "qid", path, number) if hits else None
        if not isinstance(hits, list):
            raise FormatError(path, number, "candidates/hits is not a list")
        for rank, hit in enumerate(hits, 1):
            if not isinstance(hit, dict):
                raise FormatError(path, number, f"candidate {rank} is not an object")
            score = _field(hit, "score", path, number)
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                raise FormatError(path, number, f"candidate {rank} score is not a number")
            rows.append((qid, text, _id(hit, "docid", path, number),
                         _hit_text(hit, path, number), float(score), rank))
    df = _frame(rows, ["qid", "query", "docid", "text", "score", "rank"], path, "candidates")
    return _unique(df, ["qid", "docid"], path)


def _rank_llm_records(path: str | Path) -> Iterator[tuple[int | None, dict]]:
    with open_text(path) as handle:
        is_list = handle.read(4096).lstrip().startswith("[")
    if not is_list:
        yield from _jsonl(path)
        return
    with open_text(path) as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as err:
            raise FormatError(path, err.lineno, f"invalid JSON ({err.msg})") from None
    for record in records:
        if not isinstance(record, dict):
            raise FormatError(path, None, "expected a list of JSON objects")
        yield None, record


def _hit_text(hit: dict, path: str | Path, line: int | None) -> str:
    if isinstance(hit.get("content"), str):
        return hit["content"]
    doc = hit.get("doc")
    if not isinstance(doc, dict):
        raise FormatError(path, line, f"candidate {hit.get('docid')!r} has no doc text")
    for key in ("contents", "text", "segment", "body"):
        if isinstance(doc.get(key), str):
            title = doc.get("title")
            return f"{title} {doc[key]}" if isinstance(title, str) and title else doc[key]
    raise FormatError(path, line, f"candidate {hit.get('docid')!r} has no doc text")


def write_rank_llm(candidates: pd.DataFrame, path: str | Path) -> None:
    """Writes a candidates frame (qid, query, docid, text, score, rank) as rank_llm JSONL requests,
    one line per query with its candidates in rank order.

    Example:
        >>> write_rank_llm(candidates_pdf, "requests.jsonl")  # doctest: +SKIP
    """
    ordered = candidates.sort_values(["qid", "rank"], kind="stable")
    with open(path, "w", encoding="utf-8") as handle:
        for qid, group in ordered.groupby("qid", sort=True):
            handle.write(json.dumps(_request(str(qid), group), ensure_ascii=False) + "\n")


def _request(qid: str, group: pd.DataFrame) -> dict:
    return {
        "query": {"text": str(group["query"].iloc[0]), "qid": qid},
        "candidates": [
            {"docid": str(docid), "score": float(score), "doc": {"contents": str(text)}}
            for docid, score, text in group[["docid", "score", "text"]].itertuples(index=False)
        ],
    }
