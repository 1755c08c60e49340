"""TREC: SGML documents and topics, qrels and run files, and finding them in a folder.

Ids may hold spaces and slashes (BRIGHT's ``pytorch_torch_tensor_functions/Memory
Management_2_0.txt``), so run and qrels lines are split as: first field qid, last field(s)
rank/score/tag or relevance, everything between the docid.

    from grouprank.formats.trec import read_trec_qrels
    qrels = read_trec_qrels("../shared/data/vaswani/qrels")
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from grouprank.formats.common import (
    FormatError,
    _frame,
    _judgements,
    _lines,
    _nonblank_lines,
    _unique,
    open_text,
)

# qid, iteration, docid (may hold spaces), relevance.
TREC_QRELS_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(.+?)\s+(-?\d+)\s*$")
# qid, Q0, docid (may hold spaces), rank, score, tag.
TREC_RUN_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(.+?)\s+(-?\d+)\s+(\S+)\s+(\S+)\s*$")

_TAG = re.compile(r"<[^>]+>")


def read_trec_docs(path: str | Path) -> pd.DataFrame:
    """Reads TREC SGML documents: ``<DOC><DOCNO>id</DOCNO> text </DOC>``.

    Text is everything inside ``<DOC>`` except the ``DOCNO`` element, with other tags removed
    and whitespace collapsed. Returns columns ``docid``, ``text``.

    Example:
        >>> read_trec_docs("../shared/data/vaswani/doc-text.trec").shape  # doctest: +SKIP
        (11429, 2)
    """
    rows: list[tuple[str, str]] = []
    docno: str | None = None
    parts: list[str] | None = None
    start = 0
    for number, line in _lines(path):
        stripped = line.strip()
        upper = stripped.upper()
        if upper.startswith("<DOC>"):
            if parts is not None:
                raise FormatError(path, number, f"<DOC> opened again before </DOC> of line {start}")
            parts, docno, start = [], None, number
            stripped = stripped[5:]
            upper = stripped.upper()
        if parts is None:
            if stripped:
                raise FormatError(path, number, "text outside <DOC> ... </DOC>")
            continue
        closes = upper.endswith("</DOC>")
        if closes:
            stripped = stripped[: -len("</DOC>")]
        match = re.search(r"<DOCNO>\s*(.*?)\s*</DOCNO>", stripped, re.IGNORECASE)
        if match:
            if docno is not None:
                raise FormatError(path, number, f"second <DOCNO> in the document of line {start}")
            docno = match.group(1)
            stripped = stripped[: match.start()] + " " + stripped[match.end():]
        parts.append(stripped)
        if closes:
            if not docno:
                raise FormatError(path, start, "document without a <DOCNO>")
            text = " ".join(html.unescape(_TAG.sub(" ", " ".join(parts))).split())
            rows.append((docno, text))
            parts = None
    if parts is not None:
        raise FormatError(path, start, "<DOC> is never closed")
    return _unique(_frame(rows, ["docid", "text"], path, "<DOC> documents"), ["docid"], path)


_TOPIC_FIELD = re.compile(r"<(num|title|desc|narr)>", re.IGNORECASE)


def read_trec_topics(path: str | Path, field: str = "title") -> pd.DataFrame:
    """Reads TREC topics, with or without closing tags: ``<top><num>1</num><title>..</title></top>``
    or the classic ``<num> Number: 301`` / ``<title> text`` layout.

    Args:
        path: the topics file.
        field: which field becomes the query text (``title``, ``desc`` or ``narr``).

    Returns columns ``qid``, ``query``.
    """
    rows: list[tuple[str, str]] = []
    buffer: list[str] | None = None
    start = 0
    for number, line in _lines(path):
        lower = line.strip().lower()
        if lower.startswith("<top>"):
            if buffer is not None:
                raise FormatError(path, number, f"<top> opened again before </top> of line {start}")
            buffer, start = [], number
        if buffer is not None:
            buffer.append(line)
        if lower.endswith("</top>"):
            if buffer is None:
                raise FormatError(path, number, "</top> without <top>")
            rows.append(_parse_topic("".join(buffer), field, path, start))
            buffer = None
    if buffer is not None:
        raise FormatError(path, start, "<top> is never closed")
    return _unique(_frame(rows, ["qid", "query"], path, "<top> topics"), ["qid"], path)


def _parse_topic(block: str, field: str, path: str | Path, line: int) -> tuple[str, str]:
    fields: dict[str, str] = {}
    pieces = _TOPIC_FIELD.split(block)
    for name, value in zip(pieces[1::2], pieces[2::2]):
        fields[name.lower()] = " ".join(_TAG.sub(" ", value).split())
    num = re.sub(r"^number:\s*", "", fields.get("num", ""), flags=re.IGNORECASE).strip()
    if not num:
        raise FormatError(path, line, "topic without a <num>")
    text = fields.get(field, "")
    text = re.sub(r"^(topic|description|narrative):\s*", "", text, flags=re.IGNORECASE)
    if not text:
        raise FormatError(path, line, f"topic {num} has no <{field}> text")
    return num, text


def read_trec_qrels(path: str | Path) -> pd.DataFrame:
    """Reads TREC qrels ``qid iter docid relevance``; the docid may contain spaces.

    Returns columns ``qid``, ``docid``, ``relevance`` (int).

    Example:
        >>> read_trec_qrels("../shared/data/vaswani/qrels").shape  # doctest: +SKIP
        (2083, 3)
    """
    rows = []
    for number, line in _nonblank_lines(path):
        match = TREC_QRELS_LINE.match(line)
        if not match:
            raise FormatError(path, number, f"expected 'qid iter docid relevance', got {line!r}")
        rows.append((match.group(1), match.group(3), int(match.group(4))))
    return _judgements(rows, path)


def read_trec_run(path: str | Path) -> pd.DataFrame:
    """Reads a TREC run ``qid Q0 docid rank score tag``; the docid may contain spaces.

    Returns columns ``qid``, ``docid``, ``rank`` (int), ``score`` (float), ``tag``.
    """
    rows = []
    for number, line in _nonblank_lines(path):
        match = TREC_RUN_LINE.match(line)
        try:
            if not match:
                raise ValueError
            qid, _, docid, rank, score, tag = match.groups()
            rows.append((qid, docid, int(rank), float(score), tag))
        except ValueError:
            raise FormatError(
                path, number, f"expected 'qid Q0 docid rank score tag', got {line!r}"
            ) from None
    df = _frame(rows, ["qid", "docid", "rank", "score", "tag"], path, "run lines")
    return _unique(df, ["qid", "docid"], path)


def write_trec_run(run: pd.DataFrame, path: str | Path, tag: str = "grouprank") -> None:
    """Writes ``qid``, ``docid``, ``rank``, ``score`` rows as a TREC run file, ordered by qid and
    rank. Ids with whitespace at either end or a line break cannot be written.

    Example:
        >>> write_trec_run(pd.DataFrame({"qid": ["1"], "docid": ["a b"], "rank": [1],
        ...                              "score": [2.5]}), "/tmp/run.txt")  # doctest: +SKIP
    """
    if re.search(r"\s", tag):
        raise ValueError(f"run tag {tag!r} must not contain whitespace")
    for column in ("qid", "docid"):
        bad = run[column].astype(str).map(lambda s: s != s.strip() or "\n" in s or not s)
        if bad.any():
            raise ValueError(f"{column} {run[column][bad].iloc[0]!r} cannot be written to a run")
    ordered = run.sort_values(["qid", "rank"], kind="stable")
    with open(path, "w", encoding="utf-8") as handle:
        for qid, docid, rank, score in ordered[["qid", "docid", "rank", "score"]].itertuples(
            index=False
        ):
            handle.write(f"{qid} Q0 {docid} {int(rank)} {float(score)!r} {tag}\n")


def find_trec_files(folder: Path) -> tuple[Path, Path, Path]:
    """Finds the documents, topics and qrels files of a TREC folder by their first lines."""
    found: dict[str, list[Path]] = {"documents": [], "topics": [], "qrels": []}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        with open_text(path) as handle:
            try:
                head = handle.read(2048).lower().lstrip()
            except UnicodeDecodeError:
                continue
        if head.startswith("<doc>"):
            found["documents"].append(path)
        elif head.startswith("<top>"):
            found["topics"].append(path)
        elif head.strip() and TREC_QRELS_LINE.match(head.strip().splitlines()[0]):
            found["qrels"].append(path)
    for kind, paths in found.items():
        if len(paths) != 1:
            raise FileNotFoundError(
                f"{folder}: expected one TREC {kind} file, found {[p.name for p in paths]}"
            )
    return found["documents"][0], found["topics"][0], found["qrels"][0]
