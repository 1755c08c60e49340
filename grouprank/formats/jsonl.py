"""BEIR-style tables: one id and one text per JSON line, as BEIR, BRIGHT, R2MED and Anserini
publish their corpora and queries, and the qrels those releases ship beside them.

The readers of id/text tables differ only in their field names; ``read_id_text`` reads them all.

    from grouprank.formats.jsonl import read_beir_corpus
    corpus = read_beir_corpus("../shared/data/scifact/corpus.jsonl.gz")
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from grouprank.formats.common import (
    FormatError,
    _field,
    _frame,
    _id,
    _id_list,
    _int,
    _jsonl,
    _judgements,
    _lines,
    _records,
    _text,
    _unique,
)

# The project's columns for each kind of id/text table; the first is the unique key.
_COLUMNS = {"documents": ["docid", "text"], "queries": ["qid", "query"]}


def read_id_text(
    path: str | Path,
    kind: Literal["documents", "queries"],
    id_key: str,
    text_key: str,
    *,
    title_key: str | None = None,
    strip: bool = False,
    parquet: bool = False,
) -> pd.DataFrame:
    """Reads a table of one id and one text per JSON line into the project's columns.

    Args:
        path: the JSON-lines file (``.gz`` allowed), or with ``parquet`` also a ``.parquet`` file.
        kind: ``documents`` (columns docid, text) or ``queries`` (columns qid, query).
        id_key: the field holding the id (any scalar but a float; kept as a string).
        text_key: the field holding the text (a string).
        title_key: an optional field read into a ``title`` column (``None`` when absent or empty).
        strip: whether to strip whitespace from either end of the text.
        parquet: whether a path ending in ``.parquet`` is read as parquet.

    Raises ``FormatError`` naming the file and line of a missing or unusable field, and of a
    repeated id.

    Example:
        >>> queries = read_id_text("queries.jsonl", "queries", "_id", "text")  # doctest: +SKIP
        >>> queries.columns.tolist()  # doctest: +SKIP
        ['qid', 'query']
    """
    columns = _COLUMNS[kind] + (["title"] if title_key else [])
    rows = []
    for n, record in _records(path) if parquet else _jsonl(path):
        row_id = _id(record, id_key, path, n)
        text = _text(record, text_key, path, n)
        row = (row_id, text.strip() if strip else text)
        if title_key:
            row += (record.get(title_key) or None,)
        rows.append(row)
    return _unique(_frame(rows, columns, path, kind), columns[:1], path)


# --- BEIR -------------------------------------------------------------------------------------


def read_beir_corpus(path: str | Path) -> pd.DataFrame:
    """Reads BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``); columns docid, text, title."""
    return read_id_text(path, "documents", "_id", "text", title_key="title")


def read_beir_queries(path: str | Path) -> pd.DataFrame:
    """Reads BEIR ``queries.jsonl`` (``_id``, ``text``); columns qid, query."""
    return read_id_text(path, "queries", "_id", "text")


def read_beir_qrels(path: str | Path) -> pd.DataFrame:
    """Reads BEIR ``qrels/<split>.tsv`` (header ``query-id corpus-id score``, tab-separated)."""
    rows = []
    for number, line in _lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if number == 1 and fields[0] == "query-id":
            continue
        if not line.strip():
            continue
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise FormatError(path, number, f"expected 'query-id<TAB>corpus-id<TAB>score', "
                                            f"got {line.rstrip()!r}")
        rows.append((fields[0], fields[1], _int(fields[2], "score", path, number)))
    return _judgements(rows, path)


# --- BRIGHT -----------------------------------------------------------------------------------


def read_bright_documents(path: str | Path) -> pd.DataFrame:
    """Reads BRIGHT's ``documents`` configuration (``id``, ``content``) from parquet or JSON lines;
    columns docid, text."""
    return read_id_text(path, "documents", "id", "content", parquet=True)


def read_bright_examples(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads BRIGHT's ``examples`` configuration (``id``, ``query``, ``gold_ids``,
    ``excluded_ids``) from parquet or JSON lines.

    Returns ``(queries, qrels)``: queries with columns qid, query, excluded_ids (a list, empty for
    BRIGHT's ``["N/A"]``), and one qrels row (relevance 1) per gold id.
    """
    queries, qrels = [], []
    for n, r in _records(path):
        qid = _id(r, "id", path, n)
        queries.append(
            (qid, _text(r, "query", path, n),
             _id_list(r.get("excluded_ids"), "excluded_ids", path, n))
        )
        gold = _id_list(_field(r, "gold_ids", path, n), "gold_ids", path, n)
        qrels.extend((qid, docid, 1) for docid in dict.fromkeys(gold))
    frame = _unique(_frame(queries, ["qid", "query", "excluded_ids"], path, "examples"),
                    ["qid"], path)
    return frame, pd.DataFrame(qrels, columns=["qid", "docid", "relevance"])



# --- R2MED ------------------------------------------------------------------------------------


def read_r2med_corpus(path: str | Path) -> pd.DataFrame:
    """Reads R2MED ``corpus.jsonl`` (``id``, ``text``); columns docid, text."""
    return read_id_text(path, "documents", "id", "text")


def read_r2med_queries(path: str | Path) -> pd.DataFrame:
    """Reads R2MED ``query.jsonl`` (``id``, ``text``); columns qid, query."""
    return read_id_text(path, "queries", "id", "text")


def read_r2med_qrels(path: str | Path) -> pd.DataFrame:
    """Reads R2MED ``qrels.jsonl`` (``q_id``, ``p_id``, ``score``); columns qid, docid,
    relevance."""
    rows = [
        (_id(r, "q_id", path, n), _id(r, "p_id", path, n),
         _int(_field(r, "score", path, n), "score", path, n))
        for n, r in _jsonl(path)
    ]
    return _judgements(rows, path)


# --- Anserini ---------------------------------------------------------------------------------


def read_anserini_corpus(path: str | Path) -> pd.DataFrame:
    """Reads Anserini's JsonCollection lines (``id``, ``contents``); columns docid, text (the
    contents stripped)."""
    return read_id_text(path, "documents", "id", "contents", strip=True)
