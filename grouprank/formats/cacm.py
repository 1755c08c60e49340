"""CACM as Anserini ships it: an Anserini JSON corpus, SGML topics and TREC qrels.

    from grouprank.formats.cacm import read_cacm
    bench = read_cacm("../shared/data/cacm")
"""

from __future__ import annotations

from pathlib import Path

from grouprank.formats.common import Benchmark, _unique
from grouprank.formats.jsonl import read_anserini_corpus
from grouprank.formats.trec import read_trec_docs, read_trec_qrels


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
