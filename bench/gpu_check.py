"""The GPU check in one command: correctness, speed at 7B size, paradigm ratios, the Spark job.

    python bench/gpu_check.py --out gpu_check.json              # one H100/H200, <= 8 minutes
    .venv/bin/python bench/gpu_check.py --tiny --out /tmp/gpu_check.json   # CPU, tiny shapes

On a machine without this repository's ``../shared/data`` or the embedded SmolLM2 (a bare GPU
image), prepare the inputs here first and carry them: ``--prepare bench/results/gpu_check_inputs``
copies the DL19 BM25 top-100 file and SmolLM2's tokenizer (about 6 MB, under an ignored path);
the check finds them there by itself. docs/BENCHMARKS.md ("GPU") has the exact device command.

Sections, each time-boxed (``--seconds SECTION=N``); a section that fails or runs out of time is
recorded with its error and the next one runs, so one short GPU session yields everything:

- ``correctness``: SmolLM2 direct-mode scores on the GPU (bf16) against the CPU (fp32) on 50 DL19
  groups: Kendall tau per group, max and mean |delta score|. Without SmolLM2's weights (a bare
  image) the same comparison runs on a random model of SmolLM2's shape, recorded as such.
- ``speed``: a model with the published Qwen2.5-7B configuration and random bf16 weights, built
  on the GPU (no download; SmolLM2's tokenizer), through the real ``CausalLMScorer`` on up to 200
  DL19 groups: prefill tokens/s, achieved TFLOP/s and its share of the dense bf16 peak
  (``--peak-tflops``, else 989 for H100 SXM and H200), peak GPU memory, documents/s.
- ``paradigms``: the same model, query by query: groupwise direct against pointwise yes/no and
  listwise (windows of 20, step 10; EOS is disabled on the random model, so every window
  generates exactly ``ListwiseScorer.output_budget`` tokens, as a full permutation would); the
  measuring code is ``bench/paradigms.py``'s.
- ``spark``: the rerank job on this machine with ``spark.task.resource.gpu.amount=1`` and a GPU
  discovery script written at run time, on 200 DL19 groups (SmolLM2, or its random twin saved to
  a temporary directory), against scoring the same groups in this process: job / in-process.
  The master is ``local-cluster[1,N,4096]`` (one worker and one executor on this machine), not
  ``local[N]``: plain local mode does not schedule GPU resources, and a task asking for one
  never starts. It needs Java and pyspark; a GPU image without them records the error.

The JSON is rewritten after every section. Groups are DL19's BM25 top-100 per query, in balanced
seeded random groups of 20 as the job's ``build_groups`` makes them, built here without Spark
(the GPU image has none).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.gpu_check")

SECTIONS = ("correctness", "speed", "paradigms", "spark")
# Time box of each section on a GPU (seconds): at most about 6.5 minutes with start-up and
# grace, so a 15-minute device lease leaves room for a rerun of the sections that failed.
GPU_SECONDS = {"correctness": 75, "speed": 80, "paradigms": 110, "spark": 90}
TINY_SECONDS = {"correctness": 120, "speed": 120, "paradigms": 180, "spark": 900}
# Seconds a section may overrun its box before it is interrupted (its own checks stop it first).
GRACE = 20
PREPARED = REPO / "bench" / "results" / "gpu_check_inputs"
SHARED_DL19 = REPO.parent / "shared" / "data" / "trec-dl19-passage"
DL19_RUN = "bm25/retrieve_results_dl19_top100.json"
# Dense bf16 tensor-core peak without sparsity (NVIDIA's data sheets), by device-name substring.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0,
                    "H100 PCIe": 756.0, "H100 NVL": 835.0}
# Qwen2.5-7B(-Instruct)'s published config.json, which Diver-GroupRank-7B keeps.
QWEN25_7B = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
    num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
)
# SmolLM2-135M-Instruct's config.json, for its random twin when the weights are not here.
SMOLLM2_135M = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
)
TINY_QWEN = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 tie_word_embeddings=False)


@dataclass
class CheckConfig:
    """What the check runs and on what; ``--tiny`` swaps in CPU-sized shapes."""

    # The JSON results file (rewritten after every section).
    out: str = "gpu_check.json"
    # CPU, tiny random models, a few groups: proves the script end to end without a GPU.
    tiny: bool = False
    # Sections to run, in order; the others are recorded as skipped.
    sections: tuple[str, ...] = SECTIONS
    # DL19 folder (rank_llm BM25 top-100 JSON under bm25/); None: the prepared copy, else
    # ../shared/data; synthetic texts when neither exists (recorded).
    data: str | None = None
    # Tokenizer directory for the random models; None: the prepared copy, else SmolLM2's own.
    tokenizer: str | None = None
    # Dense bf16 peak of the chip in TFLOP/s for the share of peak; None: from the device name.
    peak_tflops: float | None = None
    # Padded tokens per forward batch of the 7B model (``--batch-tokens`` of the job).
    batch_tokens: int = 65536
    # Per-section time boxes in seconds.
    seconds: dict[str, int] = field(default_factory=lambda: dict(GPU_SECONDS))
    # Groups of the correctness, speed and Spark sections, and queries of the paradigms section.
    correctness_groups: int = 50
    speed_groups: int = 200
    paradigm_queries: int = 3
    spark_groups: int = 200
    # Tokens each document is cut to (the job's --max-doc-tokens).
    max_doc_tokens: int = 256
    # Candidates per query read from the first stage (DL19 has 100).
    docs_per_query: int = 100

    @classmethod
    def tiny_shapes(cls, **overrides) -> "CheckConfig":
        shapes = dict(tiny=True, batch_tokens=4096, seconds=dict(TINY_SECONDS),
                      correctness_groups=2, speed_groups=2, paradigm_queries=1, spark_groups=4,
                      max_doc_tokens=16, docs_per_query=8)
        return cls(**{**shapes, **overrides})


# ---- the run: sections, time boxes, the JSON ---------------------------------------------


class SectionTimeout(Exception):
    """A section ran past its time box plus the grace period."""


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[float]:
    """Yields the deadline (``time.perf_counter()`` value) and interrupts the block once it has
    run ``GRACE`` seconds past it (SIGALRM; the block's own deadline checks come first)."""
    deadline = time.perf_counter() + seconds

    def interrupt(signum, frame):
        raise SectionTimeout(f"interrupted {GRACE} s after its {seconds} s time box")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(int(seconds) + GRACE)
    try:
        yield deadline
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_check(config: CheckConfig) -> dict:
    """Runs the requested sections in order; returns (and writes) the results."""
    import torch

    device = "cuda" if torch.cuda.is_available() and not config.tiny else "cpu"
    env = Inputs.find(config)
    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {k: v for k, v in asdict(config).items() if k != "out"},
        "device": describe_device(device, config.peak_tflops),
        "inputs": env.describe(),
        "sections": {},
    }
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state: dict = {}
    steps: dict[str, Callable[[float], dict]] = {
        "correctness": lambda d: correctness(config, env, device, d, state),
        "speed": lambda d: speed(config, env, device, d, state),
        "paradigms": lambda d: paradigms(config, env, device, d, state),
        "spark": lambda d: spark_job(config, env, device, d, state),
    }
    for name in SECTIONS:
        if name not in config.sections:
            results["sections"][name] = {"status": "skipped", "reason": "not requested"}
            continue
        log.info("section %s (time box %d s)", name, config.seconds[name])
        started = time.perf_counter()
        try:
            with time_box(config.seconds[name]) as deadline:
                record = {"status": "ok", **steps[name](deadline)}
        except Exception as err:  # noqa: BLE001 - recorded, and the next section runs
            log.exception("section %s failed", name)
            # The interrupt can surface as another error (py4j turns it into Py4JError).
            overran = time.perf_counter() - started >= config.seconds[name] + GRACE - 1
            status = "timed_out" if isinstance(err, SectionTimeout) or overran else "error"
            record = {"status": status, "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc(limit=8)}
        record["seconds"] = round(time.perf_counter() - started, 1)
        results["sections"][name] = record
        if name == "paradigms" or (name == "speed" and "paradigms" not in config.sections):
            state.pop("qwen", None)  # the 7B model is shared by speed and paradigms only
        _free(device)
        out.write_text(json.dumps(results, indent=2) + "\n")
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(results, indent=2) + "\n")
    if env.scratch is not None:
        shutil.rmtree(env.scratch, ignore_errors=True)
    return results


def describe_device(device: str, peak: float | None) -> dict:
    import torch
    import transformers

    info = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        assumed = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        info.update(name=name, cuda=torch.version.cuda,
                    memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    peak_bf16_tflops=peak or assumed,
                    peak_source="--peak-tflops" if peak else
                    ("NVIDIA data sheet, dense bf16" if assumed else "unknown: pass --peak-tflops"))
    else:
        info.update(name=platform.processor() or "cpu", peak_bf16_tflops=peak,
                    peak_source="--peak-tflops" if peak else "none on CPU")
    return info


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ---- inputs: DL19 groups, tokenizer, SmolLM2 ----------------------------------------------


@dataclass
class Inputs:
    """Where the data, tokenizer and SmolLM2 come from on this machine (resolved once)."""

    # DL19 rank_llm JSON, or None for synthetic texts.
    run_file: Path | None
    tokenizer: Path
    # SmolLM2's safetensors directory, or None (random weights of its shape are used instead).
    smollm2: Path | None
    smollm2_error: str | None = None
    # A temporary directory of this run's own (the --tiny model), removed at the end.
    scratch: Path | None = None

    @classmethod
    def find(cls, config: CheckConfig) -> "Inputs":
        if config.tiny:
            from tests.tiny_model import build_tiny_llama

            scratch = Path(tempfile.mkdtemp(prefix="gpu-check-tiny-"))
            tiny = build_tiny_llama(scratch / "llama")
            return cls(_run_file(config.data), Path(config.tokenizer or tiny), tiny,
                       scratch=scratch)
        smollm2, error = None, None
        try:
            from grouprank.models import embedded_llm_dir

            smollm2 = embedded_llm_dir()
        except Exception as err:  # noqa: BLE001 - a bare GPU image lacks the package
            error = f"{type(err).__name__}: {err}"
        prepared = PREPARED / "tokenizer"
        tokenizer = config.tokenizer or (prepared if prepared.is_dir() else smollm2)
        if tokenizer is None:
            raise SystemExit(f"no tokenizer: pass --tokenizer or run --prepare here ({error})")
        return cls(_run_file(config.data), Path(tokenizer), smollm2, error)

    def describe(self) -> dict:
        return {"dl19": str(self.run_file) if self.run_file else "synthetic texts (DL19 not found)",
                "tokenizer": str(self.tokenizer),
                "smollm2": str(self.smollm2) if self.smollm2 else None,
                "smollm2_error": self.smollm2_error}


def _run_file(data: str | None) -> Path | None:
    for folder in ([Path(data)] if data else [PREPARED / "trec-dl19-passage", SHARED_DL19]):
        if (folder / DL19_RUN).is_file():
            return folder / DL19_RUN
    if data:
        raise SystemExit(f"--data {data}: no {DL19_RUN} there")
    return None


def prepare(target: Path) -> None:
    """Copies what a bare GPU machine lacks (DL19's BM25 run file, SmolLM2's tokenizer) to
    ``target``, for carrying there."""
    from grouprank.models import embedded_llm_dir

    if not (SHARED_DL19 / DL19_RUN).is_file():
        raise SystemExit(f"DL19 not found at {SHARED_DL19}")
    (target / "trec-dl19-passage" / "bm25").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED_DL19 / DL19_RUN, target / "trec-dl19-passage" / DL19_RUN)
    tokenizer = target / "tokenizer"
    tokenizer.mkdir(exist_ok=True)
    for f in embedded_llm_dir().iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copyfile(f, tokenizer / f.name)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"prepared {target} ({size / 2**20:.1f} MiB)")


@dataclass(frozen=True)
class Query:
    qid: str
    query: str
    docids: list[str]
    texts: list[str]
    first_stage_ranks: list[int]


def read_queries(run_file: Path | None, docs_per_query: int) -> list[Query]:
    """DL19 queries by qid with their first ``docs_per_query`` candidates in first-stage order
    (synthetic queries of DL19-like length when there is no run file)."""
    if run_file is None:
        words = "ranking search passage query document model score retrieval text index".split()
        rng = random.Random(0)
        return [
            Query(f"s{q}", f"synthetic query {q} about {rng.choice(words)}",
                  [f"s{q}-{d}" for d in range(docs_per_query)],
                  [" ".join(rng.choices(words, k=rng.randint(30, 90)))
                   for _ in range(docs_per_query)],
                  list(range(1, docs_per_query + 1)))
            for q in range(50)
        ]
    from grouprank.formats import read_rank_llm

    frame = read_rank_llm(run_file).sort_values(["qid", "rank"])
    queries = []
    for qid, part in sorted(frame.groupby("qid"), key=lambda kv: _qid_order(kv[0])):
        part = part.head(docs_per_query)
        queries.append(Query(str(qid), str(part["query"].iloc[0]), list(part["docid"]),
                             [str(t) for t in part["text"]], list(part["rank"])))
    return queries


def groups_of(query: Query, size: int = 20, seed: int = 0) -> list[tuple[list[str], "object"]]:
    """(docids, GroupInput) of one query's balanced random groups of at most ``size``, as the
    job's ``build_groups`` makes them (seeded shuffle, sizes differing by at most one).

    Example:
        >>> q = Query("1", "q", [str(i) for i in range(45)], ["t"] * 45, list(range(1, 46)))
        >>> [len(d) for d, _ in groups_of(q)]
        [15, 15, 15]
    """
    from grouprank.backends import GroupInput

    order = list(range(len(query.docids)))
    random.Random(f"{seed}:{query.qid}").shuffle(order)
    count = math.ceil(len(order) / size)
    groups = []
    for g in range(count):
        members = order[g * len(order) // count : (g + 1) * len(order) // count]
        groups.append(([query.docids[i] for i in members],
                       GroupInput(query.query, tuple(query.texts[i] for i in members))))
    return groups


def first_groups(queries: list[Query], n: int) -> list[tuple[str, list[str], "object"]]:
    """The first ``n`` groups over the queries in qid order: (qid, docids, GroupInput)."""
    out = []
    for query in queries:
        for docids, group in groups_of(query):
            if len(out) == n:
                return out
            out.append((query.qid, docids, group))
    return out


def _qid_order(qid: str) -> tuple:
    return (0, int(qid), "") if str(qid).isdigit() else (1, 0, str(qid))


# ---- models ------------------------------------------------------------------------------


def random_causal_lm(
    shape: dict, tokenizer_dir: Path, device: str, dtype, kind: str, seed: int = 0
):
    """A causal LM of ``kind`` ("llama" or "qwen2") with ``shape`` and random weights, built
    directly on ``device`` in ``dtype``, and the tokenizer from ``tokenizer_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    shape = {"vocab_size": max(len(tokenizer), shape.get("vocab_size", 0)), **{
        k: v for k, v in shape.items() if k != "vocab_size"}}
    config = (Qwen2Config if kind == "qwen2" else LlamaConfig)(
        **shape, pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    # No EOS: a listwise window always generates its whole token budget (a fixed cost).
    model.generation_config.eos_token_id = None
    return model.eval(), tokenizer


def _non_embedding_parameters(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if "embed_tokens" not in n and "lm_head" not in n)


def prefill_flops(model, prompts: list[list[int]]) -> tuple[float, int]:
    """(FLOPs, tokens) the shared-prefix prefill of one batch computes: 2 per parameter and
    token for the dense layers (embeddings and the LM head, run on one position, left out) plus
    causal attention, 2 x layers x attention width x (end^2 - start^2) per run token span."""
    from grouprank.backends.lm import shared_prefixes

    cfg = model.config
    dense = 2.0 * _non_embedding_parameters(model)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    width = cfg.num_attention_heads * head_dim
    attention = 2.0 * cfg.num_hidden_layers * width
    plan = shared_prefixes(prompts)
    spans = ([(0, len(p)) for p in prompts] if plan is None else
             [(0, len(prefix)) for prefix in plan[0]] +
             [(cut, len(p)) for p, cut in zip(prompts, plan[2], strict=True)])
    flops = sum(dense * (b - a) + attention * (b * b - a * a) for a, b in spans)
    return flops, sum(b - a for a, b in spans)


# ---- sections ----------------------------------------------------------------------------


def correctness(config: CheckConfig, env: Inputs, device: str, deadline: float, state) -> dict:
    """SmolLM2 direct mode on the accelerator in bf16 against the CPU in fp32."""
    import torch

    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.backends.lm import load_causal_lm
    from grouprank.prompts import load_template

    template = load_template()
    if env.smollm2 is not None:
        weights = ("tiny random Llama (tests/tiny_model.py)" if config.tiny
                   else "SmolLM2-135M-Instruct")
        cpu_model, tokenizer = load_causal_lm(env.smollm2, "cpu")
    else:
        weights = f"random, SmolLM2-135M shape (weights unavailable: {env.smollm2_error})"
        cpu_model, tokenizer = random_causal_lm(SMOLLM2_135M, env.tokenizer, "cpu",
                                                torch.float32, "llama")
    state["smollm2"] = (env.smollm2, weights)
    # The accelerator copy: the same weights in bf16 (on CPU in --tiny, the same arithmetic).
    fast_model = _copy_to(cpu_model, device, torch.bfloat16)
    common = dict(max_doc_tokens=config.max_doc_tokens, batch_tokens=16384)
    cpu = CausalLMScorer(cpu_model, tokenizer, template, name="cpu-fp32", **common)
    fast = CausalLMScorer(fast_model, tokenizer, template, name=f"{device}-bf16", **common)
    queries = read_queries(env.run_file, config.docs_per_query)
    groups = first_groups(queries, config.correctness_groups)
    cpu_scores, fast_scores, seconds = [], [], {"cpu_fp32": 0.0, f"{device}_bf16": 0.0}
    for chunks, start in enumerate(range(0, len(groups), 5)):
        # Stop unless one more chunk on both fits in the box (the CPU takes most of the time).
        if chunks and time.perf_counter() + sum(seconds.values()) / chunks > deadline:
            break
        chunk = [g for _, _, g in groups[start : start + 5]]
        for scorer, scores, key in ((cpu, cpu_scores, "cpu_fp32"),
                                    (fast, fast_scores, f"{device}_bf16")):
            began = time.perf_counter()
            scores.extend(r.scores for r in scorer.score_groups(chunk))
            _sync(device)
            seconds[key] += time.perf_counter() - began
    taus = [kendall_tau(a, b) for a, b in zip(cpu_scores, fast_scores, strict=True)]
    deltas = [abs(x - y) for a, b in zip(cpu_scores, fast_scores, strict=True)
              for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    flat = [x for a in cpu_scores for x in a if x is not None]
    return {
        "weights": weights,
        "groups": len(taus),
        "groups_requested": len(groups),
        "kendall_tau_per_group": [None if t is None else round(t, 4) for t in taus],
        "kendall_tau_min": _round(min((t for t in taus if t is not None), default=None)),
        "kendall_tau_mean": _round(_mean([t for t in taus if t is not None])),
        "max_abs_delta_score": _round(max(deltas, default=None), 6),
        "mean_abs_delta_score": _round(_mean(deltas), 6),
        "cpu_score_std": _round(_std(flat)),
        "scoring_seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def _copy_to(model, device: str, dtype):
    import copy

    return copy.deepcopy(model).to(device=device, dtype=dtype).eval()


def speed(config: CheckConfig, env: Inputs, device: str, deadline: float, state) -> dict:
    """Qwen2.5-7B-shaped random model: prefill throughput, TFLOP/s, peak memory, docs/s."""
    import torch

    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.backends.lm import model_dtype, prefill, token_batches
    from grouprank.prompts import load_template

    began = time.perf_counter()
    shape = TINY_QWEN if config.tiny else QWEN25_7B
    model, tokenizer = random_causal_lm(shape, env.tokenizer, device, model_dtype(device), "qwen2")
    _sync(device)
    state["qwen"] = (model, tokenizer)
    build_seconds = time.perf_counter() - began
    scorer = CausalLMScorer(model, tokenizer, load_template(), name="qwen2.5-7b-random",
                            max_doc_tokens=config.max_doc_tokens, batch_tokens=config.batch_tokens)
    queries = read_queries(env.run_file, config.docs_per_query)
    groups = [g for _, _, g in first_groups(queries, config.speed_groups)]
    scorer.score_groups(groups[:2])  # warm-up: kernels, allocator
    _sync(device)

    # Prefill alone, batched exactly as score_groups batches it.
    prompts = [scorer.prompt_ids(g) for g in groups]
    batches = token_batches([len(p) for p in prompts], scorer.batch_tokens,
                            [g.query for g in groups])
    remaining = deadline - time.perf_counter()
    prefill_groups, prompt_tokens, run_tokens, flops, prefill_seconds = 0, 0, 0, 0.0, 0.0
    for batch in batches:
        if prefill_seconds > remaining / 3:
            break
        rows = [prompts[i] for i in batch]
        f, t = prefill_flops(model, rows)
        _sync(device)
        started = time.perf_counter()
        with torch.inference_mode():
            prefill(model, rows, scorer._pad, scorer._cache_arg)
        _sync(device)
        prefill_seconds += time.perf_counter() - started
        prefill_groups += len(batch)
        prompt_tokens += sum(len(r) for r in rows)
        run_tokens += t
        flops += f

    # The scorer end to end (prefill and the per-document steps), chunk by chunk.
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    scored_groups, docs, scoring_seconds = 0, 0, 0.0
    for start in range(0, len(groups), 20):
        if scored_groups and time.perf_counter() + scoring_seconds / scored_groups * 20 > deadline:
            break
        chunk = groups[start : start + 20]
        started = time.perf_counter()
        scorer.score_groups(chunk)
        _sync(device)
        scoring_seconds += time.perf_counter() - started
        scored_groups += len(chunk)
        docs += sum(len(g.texts) for g in chunk)
    tflops = flops / prefill_seconds / 1e12 if prefill_seconds else None
    peak = config.peak_tflops or describe_device(device, None).get("peak_bf16_tflops")
    return {
        "model": "random weights, Qwen2.5-7B config" if not config.tiny else "random, tiny Qwen2",
        "parameters_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "dtype": str(model_dtype(device)).replace("torch.", ""),
        "attention": model.config._attn_implementation,
        "batch_tokens": scorer.batch_tokens,
        "max_doc_tokens": scorer.max_doc_tokens,
        "build_seconds": round(build_seconds, 1),
        "prefill_groups": prefill_groups,
        "prefill_prompt_tokens": prompt_tokens,
        "prefill_computed_tokens": run_tokens,
        "prefill_seconds": round(prefill_seconds, 3),
        "prefill_prompt_tokens_per_s": _round(
            prompt_tokens / prefill_seconds if prefill_seconds else None, 0),
        "prefill_tflops_per_s": _round(tflops, 1),
        "peak_bf16_tflops_assumed": peak,
        "share_of_peak": _round(tflops / peak if tflops and peak else None, 3),
        "scored_groups": scored_groups,
        "scoring_seconds": round(scoring_seconds, 3),
        "docs_per_s": _round(docs / scoring_seconds if scoring_seconds else None, 1),
        "groups_per_s": _round(scored_groups / scoring_seconds if scoring_seconds else None, 2),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device == "cuda" else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def paradigms(config: CheckConfig, env: Inputs, device: str, deadline: float, state) -> dict:
    """Groupwise direct vs pointwise yes/no vs listwise on the 7B-shaped model, query by query."""
    import pandas as pd
    import torch

    from bench.paradigms import PARADIGMS, _measure_query, _summarise, _Tally
    from grouprank.backends import GroupInput
    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.backends.listwise import ListwiseScorer
    from grouprank.backends.lm import model_dtype
    from grouprank.backends.pointwise import YesNoScorer
    from grouprank.prompts import template_for
    from grouprank.settings import RerankSettings

    if "qwen" not in state:
        shape = TINY_QWEN if config.tiny else QWEN25_7B
        state["qwen"] = random_causal_lm(shape, env.tokenizer, device, model_dtype(device), "qwen2")
    model, tokenizer = state["qwen"]
    keys = ("groupwise/direct", "pointwise/yesno", "listwise")
    settings = {k: RerankSettings(max_doc_tokens=config.max_doc_tokens,
                                  batch_tokens=config.batch_tokens, **PARADIGMS[k]) for k in keys}
    common = lambda s: dict(name="qwen2.5-7b-random", max_doc_tokens=s.max_doc_tokens,  # noqa: E731
                            batch_tokens=s.batch_tokens)
    s = settings
    scorers = {
        "groupwise/direct": CausalLMScorer(model, tokenizer, template_for(s["groupwise/direct"]),
                                           **common(s["groupwise/direct"])),
        "pointwise/yesno": YesNoScorer(model, tokenizer, template_for(s["pointwise/yesno"]),
                                       **common(s["pointwise/yesno"])),
        "listwise": ListwiseScorer(model, tokenizer, template_for(s["listwise"]),
                                   window_size=s["listwise"].window_size,
                                   window_step=s["listwise"].window_step, **common(s["listwise"])),
    }
    for scorer in scorers.values():
        scorer.score_groups([GroupInput("warm up", ("a short document", "another one"))])
    _sync(device)
    queries = read_queries(env.run_file, config.docs_per_query)[: config.paradigm_queries]
    tallies = {k: _Tally() for k in keys}
    first_stage = {}
    round_seconds = 0.0
    for query in queries:
        if tallies[keys[0]].seconds and time.perf_counter() + round_seconds > deadline:
            break
        started = time.perf_counter()
        members = {
            False: groups_of(query),
            True: [(query.docids, GroupInput(query.query, tuple(query.texts)))],
        }
        for key, scorer in scorers.items():
            _measure_query(settings[key], scorer, query.qid,
                           members[settings[key].paradigm == "listwise"], tallies[key])
            _sync(device)
        first_stage[query.qid] = pd.DataFrame(
            {"docid": query.docids, "first_stage_rank": query.first_stage_ranks})
        round_seconds = time.perf_counter() - started
    summary = _summarise({k: t for k, t in tallies.items() if t.seconds}, first_stage, None)
    group = summary["groupwise/direct"]["seconds_per_query"]
    window = scorers["listwise"].output_budget(
        min(s["listwise"].window_size, config.docs_per_query))
    return {
        "model": "random weights, Qwen2.5-7B config" if not config.tiny else "random, tiny Qwen2",
        "queries": summary["groupwise/direct"]["queries"],
        "docs_per_query": config.docs_per_query,
        "listwise_generated_tokens_per_window": window,
        "per_paradigm": {k: {f: v[f] for f in ("seconds_per_query", "calls_per_query",
                                                "prompt_tokens_per_query",
                                                "generated_tokens_per_query")}
                         for k, v in summary.items()},
        "listwise_over_groupwise": _round(summary["listwise"]["seconds_per_query"] / group, 2),
        "pointwise_over_groupwise": _round(
            summary["pointwise/yesno"]["seconds_per_query"] / group, 2),
        "paper_claim": {"listwise_over_groupwise": 6.4, "pointwise_over_groupwise": 2.4},
        "torch_threads": torch.get_num_threads(),
    }


DISCOVERY_SCRIPT = """#!/usr/bin/env bash
# Spark GPU discovery (written by bench/gpu_check.py): the visible GPUs' indices as JSON.
ids=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' \\
      | sed 's/.*/"&"/' | paste -sd, -)
echo "{\\"name\\": \\"gpu\\", \\"addresses\\": [${ids:-\\"0\\"}]}"
"""


def spark_job(config: CheckConfig, env: Inputs, device: str, deadline: float, state) -> dict:
    """The rerank job in local mode with GPU scheduling, against in-process scoring."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise RuntimeError("no Java on this machine: the Spark section needs a JVM")
    import pyspark  # noqa: F401 - fails here, recorded, on an image without Spark
    import torch

    work = Path(tempfile.mkdtemp(prefix="gpu-check-spark-"))
    try:
        return _spark_job(config, env, device, deadline, state, work, torch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _spark_job(config, env, device, deadline, state, work: Path, torch) -> dict:
    import pandas as pd
    from pyspark import TaskContext
    from pyspark.sql import functions as F

    from grouprank.backends import GroupInput
    from grouprank.models import load_scorer
    from grouprank.settings import RerankSettings
    from jobs.stages import rerank as rerank_job
    from jobs.session import get_session
    from jobs.stages.rerank import build_groups, check_candidates, prepare_candidates
    from schemas import CANDIDATES

    default_weights = "tiny random Llama" if config.tiny else "SmolLM2-135M-Instruct"
    model_dir, weights = state.get("smollm2", (env.smollm2, default_weights))
    if model_dir is None:
        model, tokenizer = random_causal_lm(SMOLLM2_135M, env.tokenizer, "cpu", torch.bfloat16,
                                            "llama")
        model_dir = work / "smollm2-random"
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        weights = "random, SmolLM2-135M shape"
        del model
    script = work / "discover_gpus.sh"
    script.write_text(DISCOVERY_SCRIPT)
    script.chmod(0o755)
    cores = max(1, min(os.cpu_count() or 1, 8))
    # Plain local[N] never schedules a task that asks for a GPU (it waits at "0 + 0" tasks):
    # local-cluster runs one real worker and executor on this machine, which do.
    master = f"local-cluster[1,{cores},4096]"
    conf = {
        "spark.worker.resource.gpu.amount": "1",
        "spark.worker.resource.gpu.discoveryScript": str(script),
        "spark.executor.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": str(script),
        "spark.task.resource.gpu.amount": "1",
        "spark.executor.cores": str(cores),
        "spark.task.cpus": str(cores),
        "spark.executorEnv.PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "spark.ui.enabled": "false",
    }
    # The executor's Python workers run this interpreter (and import this checkout).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = get_session("grouprank-gpu-check", master=master, conf=conf)
    try:
        # The GPU addresses Spark hands a task (what the scoring UDF's task_device reads).
        assigned = spark.sparkContext.parallelize([0], 1).map(
            lambda _: list(TaskContext.get().resources()["gpu"].addresses)).collect()[0]
        queries = read_queries(env.run_file, config.docs_per_query)
        chosen = first_groups(queries, config.spark_groups)
        qids = sorted({qid for qid, _, _ in chosen}, key=_qid_order)
        rows = [(q.qid, q.query, d, t, float(len(q.docids) - r), r)
                for q in queries if q.qid in qids
                for d, t, r in zip(q.docids, q.texts, q.first_stage_ranks, strict=True)]
        candidates = str(work / "candidates")
        spark.createDataFrame(pd.DataFrame(rows, columns=CANDIDATES.fieldNames()),
                              CANDIDATES).write.format("delta").save(candidates)
        settings = RerankSettings(model=str(model_dir), partitions=2,
                                  max_doc_tokens=config.max_doc_tokens, batch_tokens=16384)
        started = time.perf_counter()
        summary = rerank_job.run(
            rerank_job.RerankJob(candidates, str(work / "reranked"), "2026-12-01"), settings)
        job_seconds = time.perf_counter() - started
        checked, _ = check_candidates(spark.read.format("delta").load(candidates), settings.on_duplicates)
        prepared = prepare_candidates(checked)
        frame = build_groups(prepared.where(F.col("skip").isNull()), settings).toPandas()
    finally:
        spark.stop()
    inputs = [GroupInput(q, tuple(t)) for q, t in zip(frame["query"], frame["texts"], strict=True)]
    started = time.perf_counter()
    scorer = load_scorer(settings, "cuda:0" if device == "cuda" else "cpu")
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scorer.score_groups(inputs)
    _sync(device)
    in_process = time.perf_counter() - started
    scoring = summary.get("scoring", {})
    return {
        "weights": weights,
        "master": master,
        "conf": {k: v for k, v in conf.items() if "discoveryScript" not in k and "Env" not in k},
        "task_gpu_addresses": assigned,
        "groups": len(inputs),
        "rows": len(rows),
        "job_seconds": round(job_seconds, 1),
        "in_process_load_seconds": round(load_seconds, 1),
        "in_process_scoring_seconds": round(in_process, 2),
        "job_over_in_process": _round(job_seconds / in_process, 2),
        "model_loads_per_worker": scoring.get("model_loads_per_worker"),
        "status_counts": summary.get("status_counts"),
        "rows_out": summary.get("rows_out"),
    }


# ---- small math and output ---------------------------------------------------------------


def kendall_tau(a: list[float | None], b: list[float | None]) -> float | None:
    """Kendall's tau-b of two score lists (pairs with a None left out); None if either is
    constant.

    Example:
        >>> kendall_tau([1, 2, 3], [1, 2, 3]), kendall_tau([1, 2, 3], [3, 2, 1])
        (1.0, -1.0)
        >>> round(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]), 4)
        0.6667
    """
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    concordant = discordant = only_a = only_b = 0
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            da = (pairs[i][0] > pairs[j][0]) - (pairs[i][0] < pairs[j][0])
            db = (pairs[i][1] > pairs[j][1]) - (pairs[i][1] < pairs[j][1])
            if da == 0 and db == 0:
                continue
            if da == 0:
                only_b += 1
            elif db == 0:
                only_a += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + only_a) * (concordant + discordant + only_b))
    return (concordant - discordant) / denominator if denominator else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: list[float]) -> float | None:
    if not values:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


TABLE_FIELDS = {
    "correctness": ("weights", "groups", "kendall_tau_min", "kendall_tau_mean",
                    "max_abs_delta_score", "cpu_score_std"),
    "speed": ("prefill_prompt_tokens_per_s", "prefill_tflops_per_s", "share_of_peak",
              "peak_gpu_memory_gib", "docs_per_s", "scored_groups"),
    "paradigms": ("queries", "listwise_over_groupwise", "pointwise_over_groupwise",
                  "listwise_generated_tokens_per_window"),
    "spark": ("groups", "job_seconds", "in_process_scoring_seconds", "job_over_in_process",
              "model_loads_per_worker"),
}


def print_table(results: dict) -> None:
    """One Markdown row per section, for docs/BENCHMARKS.md."""
    device = results["device"]
    print(f"\ndevice: {device.get('name')} ({device['device']}), torch {device['torch']}, "
          f"transformers {device['transformers']}, assumed peak {device.get('peak_bf16_tflops')} "
          "TFLOP/s dense bf16")
    print("| section | status | seconds | figures |")
    print("| --- | --- | --- | --- |")
    for name, record in results["sections"].items():
        if record["status"] == "ok":
            figures = ", ".join(f"{f} {record.get(f)}" for f in TABLE_FIELDS[name])
        else:
            figures = record.get("error") or record.get("reason", "")
        print(f"| {name} | {record['status']} | {record.get('seconds', '')} | {figures} |")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="results JSON")
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny shapes (minutes)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--data", default=None, help="DL19 folder (rank_llm BM25 JSON in bm25/)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory of the random models")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the chip's dense bf16 peak (default: from its name)")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="padded tokens per batch of the 7B model (default 65536)")
    parser.add_argument("--seconds", action="append", default=[], metavar="SECTION=N",
                        help="time box of a section in seconds; repeatable")
    parser.add_argument("--prepare", default=None, metavar="DIR",
                        help="copy DL19 and SmolLM2's tokenizer to DIR (e.g. "
                        f"{PREPARED.relative_to(REPO)}) and exit")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare))
        return 0
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}")
    base = CheckConfig.tiny_shapes() if args.tiny else CheckConfig()
    seconds = dict(base.seconds)
    for item in args.seconds:
        key, _, n = item.partition("=")
        if key not in SECTIONS or not n.isdigit() or int(n) < 1:
            parser.error(f"--seconds {item!r}: expected SECTION=N, SECTION one of {SECTIONS}")
        seconds[key] = int(n)
    overrides = dict(out=args.out, sections=sections, data=args.data, tokenizer=args.tokenizer,
                     peak_tflops=args.peak_tflops, seconds=seconds)
    if args.batch_tokens:
        overrides["batch_tokens"] = args.batch_tokens
    config = CheckConfig(**{**asdict(base), **overrides})
    results = run_check(config)
    print_table(results)
    print(f"\nresults written to {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
