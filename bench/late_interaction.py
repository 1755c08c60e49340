"""Is there evidence in MiniLM beyond one pooled vector per text? A free-fusion diagnostic (issue 21).

    .venv/bin/python bench/late_interaction.py --work out/heldout \
        --lists vaswani/bm25,cacm/bm25,scifact/bm25,dl19/bm25,dl19/splade \
        --out bench/results/late_interaction.json

The group head reads one mean-pooled MiniLM vector per text. Two cheap views of the same encoder
that it does not read, each scored for every candidate of ``heldout_eval.py prepare``'s lists:

- **MaxSim**: the query's and the document's token vectors (MiniLM's last layer, each
  normalised); per query token the best cosine over the document's tokens, averaged over the
  query's tokens (late interaction, with an encoder never trained for it).
- **MaxP**: the document cut into windows of ``--window`` words (stride half of it), each
  embedded as a text; the best window's cosine to the query (the whole text's cosine where it
  is one window).

No training and no qrels in any score. Per list it prints nDCG@10 of each signal alone and of
log-rank fusions with equal weights (``-mean(log rank)``): today's baselines (first stage +
cosine) and teacher (+ feedback cosine), and each with a new view added. A view worth building
into the head's features or the synthesis teachers is one whose fusion gains on most lists.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grouprank.backends.group_encoder import feedback_vector
from grouprank.retrieval import encoder_dir
from train_eval import ndcg


def _model():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(encoder_dir()), device="cpu")
    model.max_seq_length = 256
    return model


def token_vectors(model, texts: list[str], batch: int = 64) -> list[torch.Tensor]:
    """Each text's normalised last-layer token vectors, [CLS] and [SEP] left out (fp16)."""
    out: list[torch.Tensor] = []
    order = np.argsort([len(t) for t in texts])
    found: dict[int, torch.Tensor] = {}
    for start in range(0, len(texts), batch):
        chunk = [texts[i] for i in order[start:start + batch]]
        tokens = model.encode(chunk, output_value="token_embeddings", batch_size=batch,
                              convert_to_numpy=False)
        for i, t in zip(order[start:start + batch], tokens):
            t = t[1:-1] if len(t) > 2 else t
            found[int(i)] = torch.nn.functional.normalize(t.float(), dim=-1).half()
    out = [found[i] for i in range(len(texts))]
    return out


def windows(text: str, size: int) -> list[str]:
    words = text.split()
    if len(words) <= size:
        return [text]
    step = max(1, size // 2)
    return [" ".join(words[s:s + size]) for s in range(0, len(words) - size // 2, step)]


def log_rank(frame: pd.DataFrame, column: str) -> np.ndarray:
    return -np.log(frame.groupby("qid")[column].rank(ascending=False, method="first").values)


def signals(work: Path, name: str, run: str, model, window: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_parquet(work / f"{name}-{run}.parquet")
    qrels = pd.read_parquet(work / f"{name}-qrels.parquet")
    frame["first"] = frame["score"].astype(float)
    queries = sorted(set(frame["query"].astype(str)))
    docs = frame.drop_duplicates("docid")[["docid", "text"]]
    doc_text = dict(zip(docs.docid, docs.text.astype(str)))
    started = time.time()
    q_pooled = dict(zip(queries, model.encode(queries, convert_to_tensor=True,
                                              normalize_embeddings=True)))
    d_pooled = dict(zip(doc_text, model.encode(list(doc_text.values()), batch_size=64,
                                               convert_to_tensor=True, normalize_embeddings=True)))
    q_tokens = dict(zip(queries, token_vectors(model, queries)))
    d_tokens = dict(zip(doc_text, token_vectors(model, list(doc_text.values()))))
    # MaxP: every window of every document, embedded once.
    cut = {d: windows(t, window) for d, t in doc_text.items()}
    flat = [w for d in doc_text for w in cut[d]]
    flat_vec = model.encode(flat, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    spans, at = {}, 0
    for d in doc_text:
        spans[d] = flat_vec[at:at + len(cut[d])]
        at += len(cut[d])
    print(f"{name}/{run}: {len(doc_text):,} documents, {len(flat):,} windows embedded "
          f"({time.time() - started:.0f} s)", flush=True)
    cos, maxsim, maxp = [], [], []
    for q, d in zip(frame["query"].astype(str), frame["docid"]):
        cos.append(float(q_pooled[q] @ d_pooled[d]))
        sims = q_tokens[q].float() @ d_tokens[d].float().T
        maxsim.append(float(sims.max(dim=1).values.mean()))
        maxp.append(float((spans[d] @ q_pooled[q]).max()))
    frame["cosine"], frame["maxsim"], frame["maxp"] = cos, maxsim, maxp
    # Feedback cosine, as the synthesis teacher: the mean vector of the 5 documents best by
    # first-stage rank x cosine rank.
    frame["rank_fs"] = frame.groupby("qid")["first"].rank(ascending=False, method="first")
    frame["rank_cos"] = frame.groupby("qid")["cosine"].rank(ascending=False, method="first")
    feedback = np.zeros(len(frame))
    for _, idx in frame.groupby("qid").indices.items():
        vecs = torch.stack([d_pooled[d] for d in frame.docid.values[idx]]).float().numpy()
        query = q_pooled[frame["query"].values[idx[0]]].float().numpy()
        context = feedback_vector(query, vecs, frame.rank_fs.values[idx], 5)
        feedback[idx] = vecs @ context
    frame["feedback"] = feedback
    return frame, qrels


FUSIONS = {
    "first + cosine (baseline)": ("first", "cosine"),
    "first + cosine + maxsim": ("first", "cosine", "maxsim"),
    "first + cosine + maxp": ("first", "cosine", "maxp"),
    "first + maxp": ("first", "maxp"),
    "first + cosine + feedback (teacher)": ("first", "cosine", "feedback"),
    "first + cosine + feedback + maxsim": ("first", "cosine", "feedback", "maxsim"),
    "first + cosine + feedback + maxp": ("first", "cosine", "feedback", "maxp"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="out/heldout")
    parser.add_argument("--lists", default="vaswani/bm25,cacm/bm25,scifact/bm25,dl19/bm25,"
                                           "dl19/splade")
    parser.add_argument("--window", type=int, default=48)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = _model()
    figures = {}
    for key in args.lists.split(","):
        name, run = key.split("/")
        frame, qrels = signals(Path(args.work), name, run, model, args.window)
        row = {s: ndcg(frame, s, qrels) for s in ("first", "cosine", "maxsim", "maxp", "feedback")}
        for label, parts in FUSIONS.items():
            frame["_f"] = np.mean([log_rank(frame, p) for p in parts], axis=0)
            row[label] = ndcg(frame, "_f", qrels)
        figures[key] = row
        print(json.dumps({key: {k: round(v, 4) for k, v in row.items()}}), flush=True)
    columns = list(next(iter(figures.values())))
    print("| list | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for key, row in figures.items():
        print(f"| {key} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"window": args.window, "lists": figures}, indent=1))


if __name__ == "__main__":
    main()
