"""The sentence encoder at this CPU's limit: batching order, precision, achieved GFLOP/s.

    .venv/bin/python bench/encoder_limit.py --docs 512 --out bench/results/encoder_limit.json \\
        [--peak-gflops 192]

all-MiniLM-L6-v2 over the first ``--docs`` CACM documents (``--collection cacm``, titles and
abstracts of mixed length) or SciFact abstracts (``scifact``), batches of 64, in this one process on ``--threads`` threads (default: all cores), through
``grouprank.encoding.encode_texts``:

| batching | precision |
| input order | fp32 |
| sorted by length | fp32 |
| sorted by length | bf16 autocast |

For each: documents/s (best of ``--repeats`` passes after a warm-up), tokens computed per real
token (each batch is padded to its longest text), and the linear layers' GFLOP/s (the encoder's
dense layers do 2 · 12 · d² multiply-adds per token and layer: 21.2 MFLOP per token for MiniLM-L6),
against ``--peak-gflops`` when given. Also the agreement of bf16 with fp32: max |Δ cosine| and,
reranking each of the first 50 SciFact test queries' documents by cosine, top-10 overlap and
Kendall τ. Whether this CPU has native bf16 (AVX512_BF16/AMX) is detected and printed: without it
bf16 is emulated, and ``--precision auto`` keeps fp32.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from grouprank import formats
from grouprank.backends.group_encoder import load_sentence_encoder
from grouprank.encoding import (
    cpu_has_bf16,
    encode_texts,
    length_sorted_batches,
    padding_ratio,
    resolve_precision,
    token_lengths,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
CONFIGS = [("input order", False, "fp32"), ("sorted by length", True, "fp32"),
           ("sorted by length", True, "bf16")]


def linear_flops_per_token(encoder) -> float:
    """FLOPs of the Transformer's dense layers per token (attention scores not counted)."""
    config = encoder[0].auto_model.config
    d, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2.0 * layers * (4 * d * d + 2 * d * ffn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--collection", choices=("cacm", "scifact"), default="cacm",
                        help="cacm: titles and abstracts of mixed length; scifact: abstracts, "
                             "most cut at the encoder's 256 tokens (little padding to save)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--peak-gflops", type=float, help="this machine's fp32 peak, if known")
    parser.add_argument("--out", default="bench/results/encoder_limit.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    texts = _documents(args.collection)[: args.docs]
    encoder = load_sentence_encoder("minilm")
    lengths = token_lengths(encoder, texts)
    flops = linear_flops_per_token(encoder)
    rows = []
    vectors = {}
    for batching, sort, precision in CONFIGS:
        size = args.batch_size
        batches = (length_sorted_batches(lengths, size) if sort else
                   [list(range(i, min(i + size, len(texts)))) for i in range(0, len(texts), size)])
        ratio = padding_ratio(lengths, batches)
        encode_texts(encoder, texts[:size], precision, size, sort)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = encode_texts(encoder, texts, precision, size, sort)
            best = min(best, time.perf_counter() - started)
        vectors[(sort, precision)] = out
        gflops = ratio * sum(lengths) * flops / best / 1e9
        rows.append({"batching": batching, "precision": precision, "docs_per_s": len(texts) / best,
                     "padded_per_real_token": ratio, "linear_gflops": gflops,
                     "share_of_peak": gflops / args.peak_gflops if args.peak_gflops else None})
        print(json.dumps(rows[-1]), flush=True)
    agreement = _agreement(encoder, vectors[(True, "fp32")], vectors[(True, "bf16")], args.queries)
    result = {
        "command": "bench/encoder_limit.py " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                        for k, v in vars(args).items() if v),
        "machine": {"cpu": _cpu_name(), "threads": args.threads, "native_bf16": cpu_has_bf16(),
                    "auto_precision": resolve_precision("auto", "cpu"),
                    "python": platform.python_version(), "torch": torch.__version__},
        "collection": args.collection, "docs": len(texts), "mean_tokens": float(np.mean(lengths)), "max_tokens": max(lengths),
        "linear_mflop_per_token": flops / 1e6, "configs": rows, "bf16_vs_fp32": agreement,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['machine']}\n{len(texts)} docs, mean {result['mean_tokens']:.0f} tokens")
    print("| batching | precision | docs/s | padded / real | linear GFLOP/s |")
    for r in rows:
        print(f"| {r['batching']} | {r['precision']} | {r['docs_per_s']:.1f} | "
              f"{r['padded_per_real_token']:.2f} | {r['linear_gflops']:.0f} |")
    print("bf16 vs fp32:", json.dumps(agreement))


def _documents(collection: str) -> list[str]:
    if collection == "scifact":
        corpus = formats.read_beir_corpus(DATA / "corpus.jsonl.gz")
        return [f"{t} {x}" if t else x for t, x in zip(corpus.title.fillna(""), corpus.text)]
    with open(DATA.parent / "cacm" / "cacm.jsonl") as f:
        return [json.loads(line)["contents"] for line in f]


def _agreement(encoder, fp32, bf16, n_queries: int) -> dict:
    """bf16 against fp32: max |Δ cosine| and per-query ranking agreement over the documents."""
    with gzip.open(DATA / "topics.beir-v1.0.0-scifact.test.tsv.gz", "rt") as f:
        query_texts = [line.rstrip("\n").split("\t", 1)[1] for line in f][:n_queries]
    q32 = encode_texts(encoder, query_texts, "fp32")
    q16 = encode_texts(encoder, query_texts, "bf16")
    s32, s16 = (q32 @ fp32.T).numpy(), (q16 @ bf16.T).numpy()
    taus, overlaps = [], []
    for a, b in zip(s32, s16):
        taus.append(kendalltau(a, b).statistic)
        overlaps.append(len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10)
    return {"queries": len(query_texts), "max_abs_cosine_diff": float(np.abs(s32 - s16).max()),
            "mean_kendall_tau": float(np.mean(taus)), "min_kendall_tau": float(np.min(taus)),
            "mean_top10_overlap": float(np.mean(overlaps))}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
