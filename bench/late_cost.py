"""What reading MaxSim costs a group-encoder head per document, against one that does not (issue 21).

    .venv/bin/python bench/late_cost.py --work out/heldout --list dl19/bm25 \
        --old out/heldout/checkpoints/dl19/feedback-aug \
        --new out/heldout/checkpoints/dl19/late4-aug --runs 3

One process, one list of ``heldout_eval.py prepare`` (DL19's BM25 top-100: 4,300 rows, nearly one
distinct passage per row, the late feature's worst case). Per run, alternating, the job's two
model stages for each head, as its UDFs run them:

- old: the embedding stage (every distinct text encoded once, pooled, at ``--precision``), then
  the head scoring the list's groups of 20 with the vectors given;
- new: the embedding stage of a MaxSim head (``GroupEncoderScorer.embed_with_late``: the same
  pass also gives each text's MaxSim with its queries), then the head scoring with the vectors
  and the MaxSims given;
- new, MaxSim in the scorer: the old embedding stage, then the MaxSim head computing each
  document's MaxSim itself (a second encoder pass: what a job did before the embedding stage
  gave it, and what it still does for groups with no MaxSim given).

Prints each part's seconds and the per-document ratios against old.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
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
    queries_of: dict[str, list[str]] = {}
    for query, text in zip(frame["query"], frame["text"], strict=True):
        queries_of.setdefault(str(text), []).append(str(query))
    late_queries = [sorted(set(queries_of.get(t, []))) for t in texts]
    timings: dict = {"old": [], "new": [], "new, MaxSim in the scorer": []}
    parts: dict = {}

    def score(scorer, groups) -> float:
        started = time.perf_counter()
        for start in range(0, len(groups), 64):  # the UDF's chunks of 64 groups
            scorer.score_groups(groups[start : start + 64])
        return time.perf_counter() - started

    for _ in range(args.runs):
        started = time.perf_counter()
        encoded = encode_texts(encoder, texts, args.precision)
        embedding = time.perf_counter() - started
        vectors = dict(zip(texts, encoded.numpy()))
        groups = groups_of(frame, vectors)
        old = score(scorers["old"], groups)
        timings["old"].append(embedding + old)
        scorers["new"]._query_memo = {}  # each run encodes its queries afresh
        later = score(scorers["new"], groups)
        timings["new, MaxSim in the scorer"].append(embedding + later)
        scorers["new"]._query_memo = {}
        started = time.perf_counter()
        encoded, late = scorers["new"].embed_with_late(texts, late_queries)
        late_embedding = time.perf_counter() - started
        given = {(q, t): s for t, qs, ss in zip(texts, late_queries, late, strict=True)
                 for q, s in zip(qs, ss, strict=True)}
        groups = [replace(g, late_scores=tuple(given[g.query, t] for t in g.texts))
                  for g in groups_of(frame, dict(zip(texts, encoded.numpy())))]
        new = score(scorers["new"], groups)
        timings["new"].append(late_embedding + new)
        for name, value in (("embedding", embedding), ("old head", old),
                            ("embedding with MaxSim", late_embedding), ("new head", new),
                            ("new head computing MaxSim", later)):
            parts.setdefault(name, []).append(value)
    rows = len(frame)
    median = {k: float(np.median(v)) for k, v in timings.items()}
    figures = {
        "list": args.list, "rows": rows, "distinct_texts": len(texts),
        "precision": args.precision, "seconds": timings, "parts_seconds": parts,
        "docs_per_s": {k: rows / v for k, v in median.items()},
        "ratio_to_old": {k: v / median["old"] for k, v in median.items()},
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
