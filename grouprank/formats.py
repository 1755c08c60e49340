"""Readers and writers for public benchmark files and run formats; pure Python, no Spark.

Each reader returns a pandas DataFrame with the project's column names (``docid``, ``text``,
``title``; ``qid``, ``query``; ``qid``, ``docid``, ``relevance``; runs add ``score``, ``rank``)
and reads a local copy only. A malformed file raises ``FormatError`` naming the file and line.
Files ending in ``.gz`` are decompressed on the fly.

Ids are strings and may hold spaces and slashes (BRIGHT's
``pytorch_torch_tensor_functions/Memory Management_2_0.txt``), so TREC run and qrels lines are
split as: first field qid, last field(s) rank/score/tag or relevance, everything between the docid.

    from grouprank.formats import read_trec_qrels
    qrels = read_trec_qrels("../shared/data/vaswani/qrels")
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# qid, iteration, docid (may hold spaces), relevance.
TREC_QRELS_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(.+?)\s+(-?\d+)\s*$")
# qid, Q0, docid (may hold spaces), rank, score, tag.
TREC_RUN_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(.+?)\s+(-?\d+)\s+(\S+)\s+(\S+)\s*$")
# BRIGHT writes this placeholder for "no ids".
_NO_IDS = "N/A"


class FormatError(ValueError):
    """A file that does not follow its format; the message names the file and line."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def open_text(path: str | Path) -> io.TextIOBase:
    """Opens a text file for reading, decompressing ``.gz``; a missing file names the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    with open_text(path) as handle:
        try:
            yield from enumerate(handle, 1)
        except UnicodeDecodeError as err:
            raise FormatError(path, None, f"not UTF-8 text ({err})") from err


def _frame(rows: list[tuple], columns: list[str], path: str | Path, what: str) -> pd.DataFrame:
    if not rows:
        raise FormatError(path, None, f"no {what} found")
    return pd.DataFrame(rows, columns=columns)


def _unique(df: pd.DataFrame, keys: list[str], path: str | Path) -> pd.DataFrame:
    dupes = df[df.duplicated(keys, keep=False)]
    if not dupes.empty:
        example = tuple(dupes.iloc[0][keys])
        raise FormatError(path, None, f"duplicate {'/'.join(keys)} {example}")
    return df


# --- TREC -------------------------------------------------------------------------------------

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
    for number, line in _lines(path):
        if not line.strip():
            continue
        match = TREC_QRELS_LINE.match(line)
        if not match:
            raise FormatError(path, number, f"expected 'qid iter docid relevance', got {line!r}")
        rows.append((match.group(1), match.group(3), int(match.group(4))))
    df = _frame(rows, ["qid", "docid", "relevance"], path, "judgements")
    return _unique(df, ["qid", "docid"], path)


def read_trec_run(path: str | Path) -> pd.DataFrame:
    """Reads a TREC run ``qid Q0 docid rank score tag``; the docid may contain spaces.

    Returns columns ``qid``, ``docid``, ``rank`` (int), ``score`` (float), ``tag``.
    """
    rows = []
    for number, line in _lines(path):
        if not line.strip():
            continue
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


# --- JSON lines, parquet ----------------------------------------------------------------------


def _jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FormatError(path, number, f"invalid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise FormatError(path, number, "expected a JSON object")
        yield number, record


def _records(path: str | Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """Rows of a JSON-lines file (with line numbers) or a parquet file (without)."""
    if str(path).endswith(".parquet"):
        yield from ((None, r) for r in pd.read_parquet(path).to_dict("records"))
    else:
        yield from _jsonl(path)


def _field(record: dict, key: str, path: str | Path, line: int | None, optional: bool = False):
    if key not in record or record[key] is None:
        if optional:
            return None
        raise FormatError(path, line, f"missing field {key!r}")
    return record[key]


def _id(record: dict, key: str, path: str | Path, line: int | None) -> str:
    value = _field(record, key, path, line)
    if isinstance(value, (dict, list, float)) or str(value) == "":
        raise FormatError(path, line, f"field {key!r} is not a usable id: {value!r}")
    return str(value)


def _text(record: dict, key: str, path: str | Path, line: int | None) -> str:
    value = _field(record, key, path, line)
    if not isinstance(value, str):
        raise FormatError(path, line, f"field {key!r} is not a string: {value!r}")
    return value


def _int(value: Any, key: str, path: str | Path, line: int | None) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        return int(float(value))
    except (TypeError, ValueError):
        raise FormatError(path, line, f"field {key!r} is not an integer: {value!r}") from None


def _id_list(value: Any, key: str, path: str | Path, line: int | None) -> list[str]:
    if value is None:
        return []
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(path, line, f"field {key!r} is not a list of ids: {value!r}")
    return [v for v in value if v and v != _NO_IDS]


# --- BEIR -------------------------------------------------------------------------------------


def read_beir_corpus(path: str | Path) -> pd.DataFrame:
    """Reads BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``); columns docid, text, title."""
    rows = [
        (_id(r, "_id", path, n), _text(r, "text", path, n), r.get("title") or None)
        for n, r in _jsonl(path)
    ]
    return _unique(_frame(rows, ["docid", "text", "title"], path, "documents"), ["docid"], path)


def read_beir_queries(path: str | Path) -> pd.DataFrame:
    """Reads BEIR ``queries.jsonl`` (``_id``, ``text``); columns qid, query."""
    rows = [(_id(r, "_id", path, n), _text(r, "text", path, n)) for n, r in _jsonl(path)]
    return _unique(_frame(rows, ["qid", "query"], path, "queries"), ["qid"], path)


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
    return _unique(_frame(rows, ["qid", "docid", "relevance"], path, "judgements"),
                   ["qid", "docid"], path)


# --- BRIGHT -----------------------------------------------------------------------------------


def read_bright_documents(path: str | Path) -> pd.DataFrame:
    """Reads BRIGHT's ``documents`` configuration (``id``, ``content``) from parquet or JSON lines;
    columns docid, text."""
    rows = [(_id(r, "id", path, n), _text(r, "content", path, n)) for n, r in _records(path)]
    return _unique(_frame(rows, ["docid", "text"], path, "documents"), ["docid"], path)


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
    rows = [(_id(r, "id", path, n), _text(r, "text", path, n)) for n, r in _jsonl(path)]
    return _unique(_frame(rows, ["docid", "text"], path, "documents"), ["docid"], path)


def read_r2med_queries(path: str | Path) -> pd.DataFrame:
    """Reads R2MED ``query.jsonl`` (``id``, ``text``); columns qid, query."""
    rows = [(_id(r, "id", path, n), _text(r, "text", path, n)) for n, r in _jsonl(path)]
    return _unique(_frame(rows, ["qid", "query"], path, "queries"), ["qid"], path)


def read_r2med_qrels(path: str | Path) -> pd.DataFrame:
    """Reads R2MED ``qrels.jsonl`` (``q_id``, ``p_id``, ``score``); columns qid, docid,
    relevance."""
    rows = [
        (_id(r, "q_id", path, n), _id(r, "p_id", path, n),
         _int(_field(r, "score", path, n), "score", path, n))
        for n, r in _jsonl(path)
    ]
    return _unique(_frame(rows, ["qid", "docid", "relevance"], path, "judgements"),
                   ["qid", "docid"], path)


# --- rank_llm ---------------------------------------------------------------------------------


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


# --- SciFact (original release) and CACM (Anserini layout) -------------------------------------

SCIFACT_SPLITS = ("train", "validation")


def read_scifact_claims(path: str | Path, split: str = "train") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads ``claims_<split>.csv`` of the original SciFact release, from its zip or a folder.

    The CSV has one row per (claim, evidence document), so a claim's ``id`` repeats; each claim
    becomes one query. Qrels (relevance 1) are the claim's ``cited_doc_ids``, as BEIR builds them.

    Returns ``(queries, qrels)`` with columns qid, query and qid, docid, relevance.

    Example:
        >>> queries, _ = read_scifact_claims("../shared/data/scifact/scifact_original_csv.zip")
        >>> len(queries)  # doctest: +SKIP
        809
    """
    if split not in SCIFACT_SPLITS:
        raise ValueError(f"SciFact split must be one of {SCIFACT_SPLITS}, got {split!r}")
    name = f"claims_{split}.csv"
    where = f"{path}:{name}"
    queries: dict[str, str] = {}
    qrels: dict[tuple[str, str], int] = {}
    for number, row in _csv_rows(path, name):
        qid = _id(row, "id", where, number)
        claim = _text(row, "claim", where, number)
        if queries.setdefault(qid, claim) != claim:
            raise FormatError(where, number, f"claim {qid} has two different texts")
        for docid in _scifact_ids(row.get("cited_doc_ids"), where, number):
            qrels[(qid, docid)] = 1
    frame = _frame(list(queries.items()), ["qid", "query"], where, "claims")
    judged = pd.DataFrame([(q, d, r) for (q, d), r in qrels.items()],
                          columns=["qid", "docid", "relevance"])
    return frame, judged


def _csv_rows(path: str | Path, name: str) -> Iterator[tuple[int, dict[str, str]]]:
    path = Path(path)
    if path.is_dir():
        handle = open_text(path / name)
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name]
        if len(members) != 1:
            raise FileNotFoundError(f"{path}: expected one {name}, found {members}")
        handle = io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", newline="")
    else:
        raise FileNotFoundError(f"{path} is neither a folder nor a zip file")
    with handle:
        # Line numbers count CSV records (header = 1); quoted fields may span lines.
        yield from enumerate(csv.DictReader(handle), 2)


def _scifact_ids(value: str | None, path: str, line: int) -> list[str]:
    """``"[123, 456]"`` or numpy's ``"[ 123 456]"`` -> ``["123", "456"]``; ``"[]"`` -> ``[]``."""
    text = (value or "").strip()
    if not text:
        return []
    if not (text.startswith("[") and text.endswith("]")):
        raise FormatError(path, line, f"cited_doc_ids is not a list of ids: {value!r}")
    ids = [i for i in re.split(r"[\s,]+", text[1:-1]) if i]
    if not all(i.isdigit() for i in ids):
        raise FormatError(path, line, f"cited_doc_ids is not a list of ids: {value!r}")
    return ids


def read_anserini_corpus(path: str | Path) -> pd.DataFrame:
    """Reads Anserini's JsonCollection lines (``id``, ``contents``); columns docid, text."""
    rows = [(_id(r, "id", path, n), _text(r, "contents", path, n).strip())
            for n, r in _jsonl(path)]
    return _unique(_frame(rows, ["docid", "text"], path, "documents"), ["docid"], path)


def read_cacm(folder: str | Path) -> Benchmark:
    """Reads CACM as Anserini ships it: ``cacm.jsonl`` (``{"id": "CACM-0001", "contents"}``),
    ``topics.cacm.txt`` (SGML ``<DOC><DOCNO> n </DOCNO> text </DOC>``, topic text as one line)
    and ``qrels.cacm.txt``.

    The qrels write ids below 1000 without zero padding (``CACM-115`` for the corpus's
    ``CACM-0115``); they are mapped to the corpus's ids by their number.
    """
    folder = Path(folder)
    corpus = read_anserini_corpus(folder / "cacm.jsonl")
    topics = read_trec_docs(folder / "topics.cacm.txt").rename(
        columns={"docid": "qid", "text": "query"}
    )
    qrels = read_trec_qrels(folder / "qrels.cacm.txt")
    by_number = {_cacm_number(d): d for d in corpus["docid"]}
    qrels["docid"] = [by_number.get(_cacm_number(d), d) for d in qrels["docid"]]
    return Benchmark(corpus, topics, _unique(qrels, ["qid", "docid"], folder / "qrels.cacm.txt"))


def _cacm_number(docid: str) -> int | str:
    prefix, _, number = docid.rpartition("-")
    return int(number) if prefix == "CACM" and number.isdigit() else docid


# --- whole benchmarks -------------------------------------------------------------------------

FORMATS = ("trec", "beir", "bright", "r2med", "scifact", "cacm")


@dataclass(frozen=True)
class Benchmark:
    """The three tables of a benchmark, as pandas frames with the project's column names."""

    corpus: pd.DataFrame
    queries: pd.DataFrame
    qrels: pd.DataFrame


def read_benchmark(fmt: str, source: str | Path, subset: str | None = None) -> Benchmark:
    """Reads a benchmark folder in its published layout; raises before returning anything if a
    file is missing or malformed.

    - ``trec``: a folder holding an SGML documents file, a topics file and a qrels file (found
      by their content, e.g. Vaswani's ``doc-text.trec``, ``query-text.trec``, ``qrels``).
    - ``beir``: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<subset or test>.tsv``.
    - ``bright``: ``documents/<subset>*.parquet|jsonl`` and ``examples/<subset>*.parquet|jsonl``
      (the Hugging Face layout); ``subset`` is required (e.g. ``biology``).
    - ``r2med``: ``[<subset>/]corpus.jsonl``, ``query.jsonl``, ``qrels.jsonl``.
    - ``scifact``: the BEIR-style ``corpus.jsonl[.gz]`` and the claims of split ``subset``
      (``train``, the default, or ``validation``) from the original release
      ``scifact_original_csv.zip`` (or its unpacked CSV files in the folder).
    - ``cacm``: ``cacm.jsonl``, ``topics.cacm.txt``, ``qrels.cacm.txt`` (see ``read_cacm``).
    Any ``.jsonl`` may also be ``.jsonl.gz``.

    Example:
        >>> read_benchmark("trec", "../shared/data/vaswani").qrels.shape  # doctest: +SKIP
        (2083, 3)
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"--source {source} is not a folder")
    if fmt == "trec":
        docs, topics, qrels = find_trec_files(source)
        return Benchmark(read_trec_docs(docs), read_trec_topics(topics), read_trec_qrels(qrels))
    if fmt == "beir":
        split = subset or "test"
        return Benchmark(
            read_beir_corpus(_first(source, ["corpus.jsonl", "corpus.jsonl.gz"])),
            read_beir_queries(_first(source, ["queries.jsonl", "queries.jsonl.gz"])),
            read_beir_qrels(_first(source / "qrels", [f"{split}.tsv", f"{split}.tsv.gz"])),
        )
    if fmt == "bright":
        if not subset:
            raise ValueError("--subset is required for BRIGHT (e.g. biology, leetcode)")
        name = subset.replace("-", "_")
        queries, qrels = read_bright_examples(_bright_file(source / "examples", name))
        corpus = read_bright_documents(_bright_file(source / "documents", name))
        return Benchmark(corpus, queries, qrels)
    if fmt == "r2med":
        folder = source / subset if subset else source
        return Benchmark(
            read_r2med_corpus(_first(folder, ["corpus.jsonl", "corpus.jsonl.gz"])),
            read_r2med_queries(_first(folder, ["query.jsonl", "query.jsonl.gz"])),
            read_r2med_qrels(_first(folder, ["qrels.jsonl", "qrels.jsonl.gz"])),
        )
    if fmt == "scifact":
        claims = source / "scifact_original_csv.zip"
        queries, qrels = read_scifact_claims(claims if claims.is_file() else source,
                                             subset or "train")
        return Benchmark(read_beir_corpus(_first(source, ["corpus.jsonl", "corpus.jsonl.gz"])),
                         queries, qrels)
    if fmt == "cacm":
        return read_cacm(source)
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


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


def _first(folder: Path, names: list[str]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: none of {names} found")


def _bright_file(folder: Path, subset: str) -> Path:
    matches = sorted(
        p for p in folder.glob(f"{subset}*")
        if p.name.endswith((".parquet", ".jsonl", ".jsonl.gz"))
        and re.match(rf"^{re.escape(subset)}([-.]|$)", p.name)
    )
    if len(matches) != 1:
        raise FileNotFoundError(
            f"{folder}: expected one {subset}*.parquet or {subset}*.jsonl[.gz], "
            f"found {[p.name for p in matches]}"
        )
    return matches[0]
