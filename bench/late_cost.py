"""What reading MaxSim costs a group-encoder head per document, against one that does not (issue 21).

    .venv/bin/python bench/late_cost.py --work out/heldout --list dl19/bm25 \
        --old out/heldout/checkpoints/dl19/feedback-aug \
        --new out/heldout/checkpoints/dl19/late4-aug --runs 3

One process, one list of ``heldout_eval.py prepare`` (DL19's BM25 top-100: 4,300 rows, nearly one
distinct passage per row, the late feature's worst case). Per run, alternating: the embedding
stage's work (every distinct text encoded once, pooled, at ``--precision``), then each head
scoring the list's groups of 20 through ``GroupEncoderScorer`` with the vectors given, as the
job's scoring UDF does. The late head's scorer also encodes each scored document's tokens (its
MaxSim). Prints documents/s of each part and the whole-job ratio per document: (embedding + new
head) / (embedding + old head).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grouprank.backends.base import GroupInput
from grouprank.backends.group_encoder import GroupEncoderScorer
from grouprank.encoding import encode_texts, loaded_encoder


def groups_of(frame: pd.DataFrame, vectors: dict, size: int = 20) -> list[GroupInput]:
    out = []
    rng = np.random.default_rng(0)
    for _, part in frame.groupby("qid", sort=True):
        order = rng.permutation(len(part))
        count = math.ceil(len(part) / size)
        query = str(part["query"].iloc[0])
        for g in range(count):
            rows = part.iloc[order[g::count]]
            texts = [str(t) for t in rows["text"]]
            out.append(GroupInput(
                query=query, texts=texts, first_stage=[float(s) for s in rows["score"]],
                first_stage_rank=[int(r) for r in rows["rank"]],
                vectors=np.stack([vectors[t] for t in texts]), query_vector=vectors[query],
            ))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="out/heldout")
    parser.add_argument("--list", default="dl19/bm25")
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    name, run = args.list.split("/")
    frame = pd.read_parquet(Path(args.work) / f"{name}-{run}.parquet")
    texts = sorted({str(t) for t in [*frame["query"], *frame["text"]]})
    encoder = loaded_encoder("minilm", 256)
    scorers = {label: GroupEncoderScorer(path, precision=args.precision)
               for label, path in (("old", args.old), ("new", args.new))}
    timings: dict = {"embedding": [], "old": [], "new": []}
    for _ in range(args.runs):
        started = time.perf_counter()
        encoded = encode_texts(encoder, texts, args.precision)
        timings["embedding"].append(time.perf_counter() - started)
        vectors = dict(zip(texts, encoded.numpy()))
        groups = groups_of(frame, vectors)
        for label, scorer in scorers.items():
            started = time.perf_counter()
            for start in range(0, len(groups), 64):  # the UDF's chunks of 64 groups
                scorer.score_groups(groups[start : start + 64])
            timings[label].append(time.perf_counter() - started)
    rows = len(frame)
    median = {k: float(np.median(v)) for k, v in timings.items()}
    figures = {
        "list": args.list, "rows": rows, "distinct_texts": len(texts),
        "precision": args.precision, "seconds": timings,
        "docs_per_s": {k: rows / v for k, v in median.items()},
        "job_ratio": (median["embedding"] + median["new"]) / (median["embedding"] + median["old"]),
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
