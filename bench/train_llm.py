"""SFT then GRPO of the embedded SmolLM2 for a few steps on a samples table, measured.

    .venv/bin/grouprank synthesize --candidates out/demo/candidates --output out/bench/samples \\
        --run-date 2026-11-27 --group-sizes 4-6 --samples-per-query 12 --rl-fraction 0.5 --seed 2
    .venv/bin/python bench/train_llm.py --samples out/bench/samples --work out/bench/train-llm \\
        --sft-steps 10 --rl-steps 2 --threads 1 --out bench/results/train_llm.json

(``--seed 2`` puts one of the demo's two usable queries in each split.)

Reports, as JSON: the SFT losses, the GRPO reward and rollout parse-rate curves, and on a few
held-out ``rl`` samples the reason-mode parse rate and mean reward of the base, SFT and RL
models (greedy generation through the reranker's own ``CausalLMScorer``), plus wall time and
peak memory per stage. Held-out samples are left out of GRPO but may share a query with
training samples (the demo table has three queries): the figures measure the answer format,
not ranking quality. Groups larger than ``--max-group-size`` are dropped to keep it CPU-sized.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import pandas as pd

from grouprank.backends import GroupInput
from grouprank.parsing import OK
from grouprank.reward import completion_reward
from grouprank.synthesis import RL
from grouprank.training.llm import (
    EMBEDDED_LLM,
    REQUIRED_COLUMNS,
    LLMTrainConfig,
    resolve_llm,
    train_rl,
    train_sft,
)
from jobs.session import get_session
from jobs.tables import read_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", required=True, help="samples Delta table (path or name)")
    parser.add_argument("--work", default="out/bench/train-llm", help="sft/ and rl/ go here")
    parser.add_argument("--base", default=EMBEDDED_LLM)
    parser.add_argument("--sft-steps", type=int, default=10)
    parser.add_argument("--rl-steps", type=int, default=2)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-group-size", type=int, default=6)
    parser.add_argument("--held-out", type=int, default=4, help="rl samples kept for evaluation")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    parser.add_argument("--out", default="bench/results/train_llm.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    samples = _read_samples(args.samples, args.max_group_size)
    rl_rows = samples[samples["split"] == RL].sort_values("sample_id")
    held_out = rl_rows.tail(args.held_out)
    training = samples.drop(index=held_out.index)
    work = Path(args.work)
    sft_config = LLMTrainConfig(
        max_steps=args.sft_steps, batch_size=1, gradient_accumulation=1, learning_rate=2e-4,
        activation_checkpointing=False,
    )
    rl_config = LLMTrainConfig(
        max_steps=args.rl_steps, batch_size=1, gradient_accumulation=1, learning_rate=2e-5,
        rollouts=args.rollouts, max_new_tokens=args.max_new_tokens,
        activation_checkpointing=False,
    )
    results: dict = {
        "samples": {
            "sft": int((training["split"] != RL).sum()),
            "rl": int((training["split"] == RL).sum()),
            "held_out": len(held_out),
        },
        "held_out": {},
    }
    results["held_out"]["base"] = _evaluate(resolve_llm(args.base), held_out, args.max_new_tokens)
    sft = train_sft(training, args.base, work / "sft", sft_config)
    results["sft"] = _stage(sft)
    results["held_out"]["sft"] = _evaluate(work / "sft", held_out, args.max_new_tokens)
    rl = train_rl(training, work / "sft", work / "rl", rl_config)
    results["rl"] = _stage(rl) | {"rewards": rl["rewards"]}
    results["held_out"]["rl"] = _evaluate(work / "rl", held_out, args.max_new_tokens)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["threads"] = torch.get_num_threads()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _read_samples(ref: str, max_group_size: int) -> pd.DataFrame:
    spark = get_session("bench-train-llm", master="local[1]")
    spark.sparkContext.setLogLevel("ERROR")
    columns = [*REQUIRED_COLUMNS, "sample_id", "query", "texts", "group_size"]
    frame = read_table(spark, ref, "--samples").select(*columns).toPandas()
    spark.stop()
    return frame[frame["group_size"] <= max_group_size].reset_index(drop=True)


def _stage(summary: dict) -> dict:
    keys = ("global_step", "samples", "skipped_too_long", "losses", "wall_s", "peak_rss_mb")
    return {k: summary[k] for k in keys}


def _evaluate(model_dir: Path, held_out: pd.DataFrame, max_new_tokens: int) -> dict:
    """Greedy reason mode: parse rate (every document scored by the reranker's tolerant parser)
    and mean gated reward (which also needs the answer tags)."""
    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.prompts import load_template

    started = time.monotonic()
    scorer = CausalLMScorer.from_pretrained(
        model_dir, load_template(), mode="reason", max_new_tokens=max_new_tokens, name="bench"
    )
    groups = [GroupInput(r.query, tuple(r.texts)) for r in held_out.itertuples()]
    results = scorer.score_groups(groups)
    parsed = [all(s == OK for s in r.statuses) for r in results]
    rewards = [
        completion_reward(r.output or "", list(t))
        for r, t in zip(results, held_out["target_scores"])
    ]
    return {
        "parse_rate": sum(parsed) / len(parsed),
        "mean_reward": round(sum(rewards) / len(rewards), 4),
        "example": results[0].output,
        "seconds": round(time.monotonic() - started, 1),
    }


if __name__ == "__main__":
    main()
