"""Readers and writers for public benchmark files and run formats; pure Python, no Spark.

Each reader returns a pandas DataFrame with the project's column names (``docid``, ``text``,
``title``; ``qid``, ``query``; ``qid``, ``docid``, ``relevance``; runs add ``score``, ``rank``)
and reads a local copy only. A malformed file raises ``FormatError`` naming the file and line.
Files ending in ``.gz`` are decompressed on the fly.

Ids are strings and may hold spaces and slashes (BRIGHT's
``pytorch_torch_tensor_functions/Memory Management_2_0.txt``), so TREC run and qrels lines are
split as: first field qid, last field(s) rank/score/tag or relevance, everything between the docid.

One module per format family: ``common`` (the error, opening files, field readers), ``trec``,
``jsonl`` (BEIR-style id/text tables: BEIR, BRIGHT, R2MED, Anserini), ``rank_llm``, ``scifact``,
``cacm`` and ``benchmarks`` (the registry of whole-benchmark layouts behind ``read_benchmark``).
Import from this package; the modules are its layout, not its interface.

    from grouprank.formats import read_trec_qrels
    qrels = read_trec_qrels("../shared/data/vaswani/qrels")
"""

from grouprank.formats.benchmarks import FORMATS, LAYOUTS, Layout, read_benchmark
from grouprank.formats.cacm import read_cacm
from grouprank.formats.common import Benchmark, FormatError, open_text
from grouprank.formats.jsonl import (
    read_anserini_corpus,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    read_bright_documents,
    read_bright_examples,
    read_id_text,
    read_r2med_corpus,
    read_r2med_qrels,
    read_r2med_queries,
)
from grouprank.formats.rank_llm import read_rank_llm, write_rank_llm
from grouprank.formats.scifact import SCIFACT_SPLITS, read_scifact_claims
from grouprank.formats.trec import (
    TREC_QRELS_LINE,
    TREC_RUN_LINE,
    find_trec_files,
    read_trec_docs,
    read_trec_qrels,
    read_trec_run,
    read_trec_topics,
    write_trec_run,
)

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "SCIFACT_SPLITS",
    "TREC_QRELS_LINE",
    "TREC_RUN_LINE",
    "Benchmark",
    "FormatError",
    "Layout",
    "find_trec_files",
    "open_text",
    "read_anserini_corpus",
    "read_beir_corpus",
    "read_beir_qrels",
    "read_beir_queries",
    "read_benchmark",
    "read_bright_documents",
    "read_bright_examples",
    "read_cacm",
    "read_id_text",
    "read_r2med_corpus",
    "read_r2med_qrels",
    "read_r2med_queries",
    "read_rank_llm",
    "read_scifact_claims",
    "read_trec_docs",
    "read_trec_qrels",
    "read_trec_run",
    "read_trec_topics",
    "write_rank_llm",
    "write_trec_run",
]
