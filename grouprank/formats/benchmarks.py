"""Whole benchmarks: a folder in one of the published layouts, read as its corpus, queries and
qrels. ``LAYOUTS`` names each layout and says how its files are found and read; ``read_benchmark``
looks the layout up there.

    from grouprank.formats.benchmarks import read_benchmark
    bench = read_benchmark("trec", "../shared/data/vaswani")
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grouprank.formats.cacm import read_cacm
from grouprank.formats.common import Benchmark
from grouprank.formats.jsonl import (
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    read_bright_documents,
    read_bright_examples,
    read_r2med_corpus,
    read_r2med_qrels,
    read_r2med_queries,
)
from grouprank.formats.scifact import read_scifact_claims
from grouprank.formats.trec import (
    find_trec_files,
    read_trec_docs,
    read_trec_qrels,
    read_trec_topics,
)


@dataclass(frozen=True)
class Layout:
    """One published benchmark layout: where its files lie in the source folder and how they are
    read."""

    # The files read under the source folder, and what the subset selects.
    files: str
    # (source folder, subset or None) -> the three tables; raises if a file is missing or malformed.
    read: Callable[[Path, str | None], Benchmark]


def _read_trec(source: Path, subset: str | None) -> Benchmark:
    docs, topics, qrels = find_trec_files(source)
    return Benchmark(read_trec_docs(docs), read_trec_topics(topics), read_trec_qrels(qrels))


def _read_beir(source: Path, subset: str | None) -> Benchmark:
    split = subset or "test"
    return Benchmark(
        read_beir_corpus(_jsonl_file(source, "corpus")),
        read_beir_queries(_jsonl_file(source, "queries")),
        read_beir_qrels(_first(source / "qrels", [f"{split}.tsv", f"{split}.tsv.gz"])),
    )


def _read_bright(source: Path, subset: str | None) -> Benchmark:
    if not subset:
        raise ValueError("--subset is required for BRIGHT (e.g. biology, leetcode)")
    name = subset.replace("-", "_")
    queries, qrels = read_bright_examples(_bright_file(source / "examples", name))
    corpus = read_bright_documents(_bright_file(source / "documents", name))
    return Benchmark(corpus, queries, qrels)


def _read_r2med(source: Path, subset: str | None) -> Benchmark:
    folder = source / subset if subset else source
    return Benchmark(
        read_r2med_corpus(_jsonl_file(folder, "corpus")),
        read_r2med_queries(_jsonl_file(folder, "query")),
        read_r2med_qrels(_jsonl_file(folder, "qrels")),
    )


def _read_scifact(source: Path, subset: str | None) -> Benchmark:
    claims = source / "scifact_original_csv.zip"
    queries, qrels = read_scifact_claims(claims if claims.is_file() else source, subset or "train")
    return Benchmark(read_beir_corpus(_jsonl_file(source, "corpus")), queries, qrels)


def _read_cacm(source: Path, subset: str | None) -> Benchmark:
    return read_cacm(source)


LAYOUTS: dict[str, Layout] = {
    "trec": Layout(
        "a folder holding an SGML documents file, a topics file and a qrels file (found by their "
        "content, e.g. Vaswani's doc-text.trec, query-text.trec, qrels)", _read_trec),
    "beir": Layout("corpus.jsonl, queries.jsonl, qrels/<subset or test>.tsv", _read_beir),
    "bright": Layout(
        "documents/<subset>*.parquet|jsonl and examples/<subset>*.parquet|jsonl (the Hugging Face "
        "layout); the subset is required (e.g. biology)", _read_bright),
    "r2med": Layout("[<subset>/]corpus.jsonl, query.jsonl, qrels.jsonl", _read_r2med),
    "scifact": Layout(
        "the BEIR-style corpus.jsonl[.gz] and the claims of split <subset> (train, the default, "
        "or validation) from the original release scifact_original_csv.zip (or its unpacked CSV "
        "files in the folder)", _read_scifact),
    "cacm": Layout("cacm.jsonl, topics.cacm.txt, qrels.cacm.txt (see read_cacm)", _read_cacm),
}
# The layout names, as --format accepts them.
FORMATS = tuple(LAYOUTS)


def read_benchmark(fmt: str, source: str | Path, subset: str | None = None) -> Benchmark:
    """Reads a benchmark folder in its published layout; raises before returning anything if a
    file is missing or malformed.

    ``fmt`` names one of ``LAYOUTS`` (``trec``, ``beir``, ``bright``, ``r2med``, ``scifact``,
    ``cacm``), whose ``files`` say which files it reads and what ``subset`` selects. Any
    ``.jsonl`` may also be ``.jsonl.gz``.

    Example:
        >>> read_benchmark("trec", "../shared/data/vaswani").qrels.shape  # doctest: +SKIP
        (2083, 3)
        >>> LAYOUTS["beir"].files
        'corpus.jsonl, queries.jsonl, qrels/<subset or test>.tsv'
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"--source {source} is not a folder")
    if fmt not in LAYOUTS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return LAYOUTS[fmt].read(source, subset)


def _jsonl_file(folder: Path, stem: str) -> Path:
    return _first(folder, [f"{stem}.jsonl", f"{stem}.jsonl.gz"])


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
