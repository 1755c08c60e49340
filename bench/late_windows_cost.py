"""What reading MaxSim over several windows of a long document costs the embedding stage, per
distinct text, against one window (issue 21's cost bound: within 2x per distinct document).

    .venv/bin/python bench/late_windows_cost.py --work out/heldout --list scifact/bm25 \
        --a out/heldout/checkpoints/scifact/late4-aug \
        --b out/heldout/checkpoints/scifact/late4w-aug --texts 1500 --runs 3

One process. The list's first ``--texts`` distinct documents (by text) with their queries; per run,
alternating A then B, the embedding stage of a MaxSim head as the job's UDF runs it
(``GroupEncoderScorer.embed_with_late``: one encoder pass pools each text's vector and gives its
MaxSim with each of its queries; a head with ``late_windows`` > 1 reads a long text's later
windows in the same pass). Prints each run's seconds, texts/s and the median ratio B/A, with the
token counts each reads. SciFact's abstracts are the dev collections' longest (median 296 tokens,
64% past 256): the worst case.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grouprank.backends.group_encoder import GroupEncoderScorer
from grouprank.late_interaction import text_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="out/heldout")
    parser.add_argument("--list", default="scifact/bm25")
    parser.add_argument("--a", required=True, help="a MaxSim head's checkpoint (e.g. 1 window)")
    parser.add_argument("--b", required=True, help="another (e.g. 4 windows)")
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out")
    args = parser.parse_args()
    name, run = args.list.split("/")
    frame = pd.read_parquet(Path(args.work) / f"{name}-{run}.parquet")
    queries_of: dict[str, set[str]] = {}
    for query, text in zip(frame["query"], frame["text"], strict=True):
        queries_of.setdefault(str(text), set()).add(str(query))
    texts = sorted(queries_of)[: args.texts]
    queries = [sorted(queries_of[t]) for t in texts]
    scorers = {label: GroupEncoderScorer(path, precision=args.precision)
               for label, path in (("a", args.a), ("b", args.b))}
    tokens = {label: sum(len(i) for w in text_windows(s.encoder, texts,
                                                       s.head.config.late_windows) for i in w)
              for label, s in scorers.items()}
    seconds: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(args.runs):
        for label, scorer in scorers.items():
            scorer._query_memo = {}  # each run encodes its queries afresh
            started = time.perf_counter()
            with torch.inference_mode():
                scorer.embed_with_late(texts, queries)
            seconds[label].append(time.perf_counter() - started)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    figures = {
        "list": args.list, "texts": len(texts), "precision": args.precision,
        "windows": {k: s.head.config.late_windows for k, s in scorers.items()},
        "tokens_read": tokens, "seconds": seconds,
        "texts_per_s": {k: len(texts) / v for k, v in median.items()},
        "ratio_b_to_a": median["b"] / median["a"],
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
