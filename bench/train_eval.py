"""NDCG@10 of group-encoder checkpoints against the first stage and MiniLM cosine, fusion on and off.

    .venv/bin/python bench/train_eval.py \\
        --collection vaswani=out/bench/vaswani-bm25:../shared/data/vaswani/qrels \\
        --collection dl19=out/bench/dl19-bm25:../shared/data/trec-dl19-passage/qrels.dl19-passage.txt \\
        --checkpoint sft=out/models/sft --checkpoint rl=out/models/rl --out bench/results/train_eval.json

Scores every candidate list in-process with the checkpoints' heads on MiniLM embeddings kept in
memory (each text is encoded once for all checkpoints), grouped as the reranking job groups them
(seeded shuffle, dealt round-robin into balanced groups of about --group-size) and fused as the
job fuses: w * model/10 + (1 - w) * rank_prior(first-stage rank). The reranking job itself gives
the same figures up to its group draw (checked for the shipped default in docs/BENCHMARKS.md).
Prints a Markdown table; writes every figure to --out.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grouprank.backends.group_encoder import (
    expected_scores,
    feedback_vector,
    load_head,
    pad_groups,
)
from grouprank.encoding import embed_in_memory
from grouprank.formats import read_trec_qrels
from grouprank.fusion import rank_prior
from grouprank.metrics import parse_metric, query_value

NDCG10 = parse_metric("ndcg@10")


def load_candidates(path: str) -> pd.DataFrame:
    from jobs.session import get_session
    from jobs.tables import read_table

    spark = get_session("grouprank-bench-train-eval")
    return read_table(spark, path, "--collection").select(
        "qid", "query", "docid", "text", "score"
    ).toPandas()


def ndcg(frame: pd.DataFrame, column: str, qrels: pd.DataFrame) -> float:
    """Mean NDCG@10 over the judged queries (trec_eval order: score desc, docid desc)."""
    judged = qrels.groupby("qid")
    grades = {(q, d): r for q, d, r in qrels[["qid", "docid", "relevance"]].itertuples(index=False)}
    values = []
    for qid, part in frame.groupby("qid"):
        if qid not in judged.groups:
            continue
        ordered = part.sort_values([column, "docid"], ascending=[False, False])
        ranked = [grades.get((qid, d), 0) for d in ordered["docid"]]
        values.append(query_value(NDCG10, ranked, judged.get_group(qid)["relevance"].tolist()))
    return float(np.mean(values))


def deal_groups(n: int, group_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Balanced random groups of a list of n, as the job deals them."""
    order = rng.permutation(n)
    count = math.ceil(n / group_size)
    return [order[g::count] for g in range(count)]


def head_scores(head, frame: pd.DataFrame, vectors: dict, group_size: int, seed: int) -> np.ndarray:
    scores = np.zeros(len(frame))
    rng = np.random.default_rng(seed)
    for _, part in frame.groupby("qid", sort=True):
        index = part.index.to_numpy()
        query = vectors["query"][part["query"].iloc[0]]
        docs = torch.stack([vectors["text"][t] for t in part["text"]])
        # The job's first-stage ranks (score desc, docid asc) and, for heads that read one, its
        # feedback vector over the whole list.
        ranks = np.empty(len(part), dtype=int)
        ranks[np.lexsort((part["docid"].to_numpy(), -part["score"].to_numpy()))] = np.arange(
            1, len(part) + 1)
        groups = deal_groups(len(index), group_size, rng)
        batch = pad_groups(
            torch.stack([query] * len(groups)), [docs[g] for g in groups],
            [part["score"].iloc[g].tolist() for g in groups], [ranks[g].tolist() for g in groups],
        )
        top = head.config.context_top
        context = (torch.from_numpy(feedback_vector(query.numpy(), docs.numpy(), ranks, top))
                   .expand(len(groups), -1) if top else None)
        with torch.no_grad():
            out = expected_scores(head(*batch, context=context))
        for k, g in enumerate(groups):
            scores[index[g]] = out[k, : len(g)].numpy()
    return scores


def first_stage_prior(frame: pd.DataFrame) -> pd.Series:
    """The first stage's side of the job's fusion (``grouprank.fusion.rank_prior``): its rank by
    score in the query, tied scores sharing the best rank."""
    rank = frame.groupby("qid")["score"].rank(ascending=False, method="min")
    count = frame.groupby("qid")["score"].transform("count")
    return pd.Series(rank_prior(rank.values, count.values), index=frame.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", action="append", required=True,
                        help="NAME=CANDIDATES:QRELS (candidates Delta table, TREC qrels file)")
    parser.add_argument("--checkpoint", action="append", default=[], help="LABEL=DIR")
    parser.add_argument("--group-size", type=int, default=20)
    parser.add_argument("--fusion-weight", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/train_eval.json")
    args = parser.parse_args()
    w = args.fusion_weight
    heads = {label: load_head(path) for label, path in (c.split("=", 1) for c in args.checkpoint)}
    results: dict[str, dict[str, float]] = {}
    for spec in args.collection:
        name, rest = spec.split("=", 1)
        table, qrels_path = rest.split(":", 1)
        frame = load_candidates(table).reset_index(drop=True)
        qrels = read_trec_qrels(qrels_path)
        queries = sorted(set(frame["query"]))
        texts = sorted(set(frame["text"]))
        vectors = embed_in_memory("minilm", queries + texts, 256)
        vectors = {"query": dict(zip(queries, vectors[: len(queries)])),
                   "text": dict(zip(texts, vectors[len(queries) :]))}
        fs = first_stage_prior(frame)
        cosine = np.array([float(vectors["query"][q] @ vectors["text"][t])
                           for q, t in zip(frame["query"], frame["text"])])
        columns = {"first stage": frame["score"], "cosine": cosine,
                   "cosine + first stage": w * np.clip(cosine, 0, 1) + (1 - w) * fs}
        for label, head in heads.items():
            model = head_scores(head, frame, vectors, args.group_size, args.seed)
            columns[label] = model
            columns[f"{label} + first stage"] = w * model / 10 + (1 - w) * fs
        results[name] = {k: round(ndcg(frame.assign(s=v), "s", qrels), 4)
                         for k, v in columns.items()}
        results[name]["queries"] = int(frame["qid"].nunique())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    names = list(results)
    print("| ranker | " + " | ".join(f"{n} nDCG@10" for n in names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for key in results[names[0]]:
        if key != "queries":
            print(f"| {key} | " + " | ".join(f"{results[n][key]:.4f}" for n in names) + " |")


if __name__ == "__main__":
    main()
