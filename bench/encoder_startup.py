"""A fresh Python worker's first embeddings: load the shipped encoder, encode 22 short texts.

    .venv/bin/python bench/encoder_startup.py                         # the lean encoder
    .venv/bin/python bench/encoder_startup.py --sentence-transformers  # the old path

What a Spark Python worker of ``grouprank demo`` does before its first vectors (issue 18): the
imports, the encoder load (``grouprank.retrieval.load_encoder``, ``lean=False`` for the old path)
and ``encode_texts`` on 22 texts. Time the whole process from outside (``/usr/bin/time``, or a
loop over several runs): start-up is the point. Prints the encoder's class and the vectors' shape.
"""

from __future__ import annotations

import argparse

TEXTS = [f"{topic}: {detail}" for topic in ("solar panels on roofs", "training a neural network")
         for detail in ("cost", "efficiency", "history", "maintenance", "safety", "recycling",
                        "a short overview", "common mistakes", "what experts say",
                        "questions people ask", "the next ten years")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentence-transformers", action="store_true",
                        help="load through sentence-transformers (the path before issue 18)")
    args = parser.parse_args()
    from grouprank.encoding import encode_texts
    from grouprank.retrieval import load_encoder

    encoder = load_encoder(lean=not args.sentence_transformers)
    vectors = encode_texts(encoder, TEXTS, "auto")
    print(type(encoder).__name__, tuple(vectors.shape))


if __name__ == "__main__":
    main()
