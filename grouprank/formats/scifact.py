"""SciFact's claims as the original release ships them (``scifact_original_csv.zip``, or its
unpacked ``claims_<split>.csv``), read as queries and qrels.

    from grouprank.formats.scifact import read_scifact_claims
    queries, qrels = read_scifact_claims("../shared/data/scifact/scifact_original_csv.zip")
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from grouprank.formats.common import FormatError, _frame, _id, _text, open_text

SCIFACT_SPLITS = ("train", "validation")


def read_scifact_claims(
    path: str | Path, split: str = "train"
) -> tuple[pd.DataFrame, pd.DataFrame]:
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
