"""SFT and GRPO of a causal-LM groupwise reranker on the synthesized samples, with TRL and LoRA.

GroupRank trains in two stages (paper section 3.3): supervised fine-tuning on the ``sft`` split's
completions, then GRPO on the ``rl`` split with the group-ranking reward
(``grouprank.reward.group_ranking_reward``). Both stages run TRL's own trainers (``SFTTrainer``,
``GRPOTrainer``) on a PEFT LoRA adapter by default (paper: r = 32, alpha = 32) or on every weight.

Output contract of both stages, so the reranking job loads the result with ``--model OUTPUT``:

    OUTPUT/config.json, model.safetensors, tokenizer files   the adapter merged into the base
    OUTPUT/adapter/                                           the LoRA adapter alone (LoRA runs)
    OUTPUT/checkpoints/checkpoint-N/                          resume points (Trainer checkpoints)
    OUTPUT/training_summary.json                              steps, losses, rewards, time, memory

A run stopped halfway and started again with the same ``output`` resumes from its last
checkpoint; a larger ``max_steps`` continues a finished run. Prompts in the samples table are
already chat-formatted text: both trainers get them as plain strings, which TRL tokenizes as they
are (no second chat template; see ``_plain_prompts`` for the BOS token).

Operating limits: the whole split is held in memory as a ``datasets.Dataset``; GRPO generates
with ``model.generate`` (no vLLM), ``rollouts`` completions per prompt; peak RSS in the summary
is the process's peak, which includes anything the caller did before.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from grouprank.models import CAUSAL_LM, EMBEDDED_LLM, ModelRef, base_ref
from grouprank.parsing import OK, parse_answer
from grouprank.reward import ALL_TERMS, group_ranking_reward
from grouprank.synthesis import RL, SFT

log = logging.getLogger(__name__)

# The SAMPLES columns these trainers read.
REQUIRED_COLUMNS = ("prompt", "completion", "target_scores", "split")
SUMMARY_FILE = "training_summary.json"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
# TRL logs each reward function's mean as rewards/<function name>/mean.
_PARSE_METRIC = "rewards/answer_parsed/mean"


@dataclass(frozen=True)
class LLMTrainConfig:
    """How one SFT or GRPO run trains. Defaults follow the paper, with CPU-sized batches."""

    # LoRA rank and scaling (paper: r = 32, alpha = 32); unused when full_finetune.
    lora_rank: int = 32
    lora_alpha: int = 32
    # Train every weight instead of a LoRA adapter.
    full_finetune: bool = False
    # Passes over the split's samples; used when max_steps is -1.
    epochs: float = 1.0
    # Peak AdamW learning rate, decayed linearly to 0. About 1e-4 suits LoRA SFT; give RL less
    # (1e-5 to 1e-6).
    learning_rate: float = 1e-4
    # Samples per micro-batch and device (RL: prompts, each with `rollouts` completions).
    batch_size: int = 1
    # Micro-batches per optimizer step (RL: also micro-batches per generation round).
    gradient_accumulation: int = 4
    # Optimizer steps to stop at; -1 trains for `epochs`.
    max_steps: int = -1
    # Tokens per training sequence. Longer samples are skipped and counted, never cut (a cut
    # completion would teach the model to stop mid-answer): SFT counts prompt + completion,
    # RL prompt + max_new_tokens.
    max_length: int = 4096
    # Seed of initialisation, data order and sampling.
    seed: int = 0
    # Optimizer steps between checkpoints under OUTPUT/checkpoints (the resume points).
    save_steps: int = 50
    # Recompute activations in the backward pass: much less memory, about a quarter more compute.
    activation_checkpointing: bool = True
    # RL: completions sampled per prompt (the GRPO group; paper: 8).
    rollouts: int = 8
    # RL: KL penalty towards the initial policy, GRPO's beta (paper: 0.001).
    kl: float = 0.001
    # RL: sampling temperature of the rollouts (paper: 1.0).
    temperature: float = 1.0
    # RL: generation budget per rollout, in tokens.
    max_new_tokens: int = 384
    # RL: PPO-style clipping range of the probability ratio.
    clip_epsilon: float = 0.2
    # RL: the reward's terms (grouprank.reward.ALL_TERMS); drop some for ablations.
    reward_terms: tuple[str, ...] = ALL_TERMS

    def __post_init__(self) -> None:
        problems = []
        if self.lora_rank < 1 or self.lora_alpha <= 0:
            problems.append("lora_rank must be >= 1 and lora_alpha > 0")
        if self.batch_size < 1 or self.gradient_accumulation < 1:
            problems.append("batch_size and gradient_accumulation must be >= 1")
        if self.max_steps == 0 or self.max_steps < -1:
            problems.append("max_steps must be -1 (use epochs) or >= 1")
        if self.rollouts < 2:
            problems.append("rollouts must be >= 2 (GRPO compares completions of one prompt)")
        if self.save_steps < 1 or self.max_length < 1 or self.max_new_tokens < 1:
            problems.append("save_steps, max_length and max_new_tokens must be >= 1")
        unknown = set(self.reward_terms) - set(ALL_TERMS)
        if unknown or not self.reward_terms:
            problems.append(f"reward_terms must be a non-empty subset of {list(ALL_TERMS)}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))


def resolve_llm(base: str | Path | ModelRef) -> Path:
    """The model directory of a causal LM ``base`` (resolved by ``grouprank.models.base_ref``).

    Example:
        >>> resolve_llm("/no/such/model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: '/no/such/model' is not a model: pass minilm, ...
    """
    ref = base_ref(base)
    if ref.kind != CAUSAL_LM:
        raise ValueError(f"{ref.spec!r} is not a causal LM directory but a {ref.kind}; "
                         f"pass a Hugging Face model directory or {EMBEDDED_LLM!r}")
    return ref.path()


def answer_parsed(
    completions: list[Any], target_scores: list[Sequence[float]], **kwargs: Any
) -> list[float]:
    """1.0 for a completion whose answer gives every document a usable score, else 0.0.

    GRPO runs it as a reward of weight 0, so TRL logs the rollouts' reason-mode parse rate per
    step without it moving the policy.

    Example:
        >>> good = '<answer>```json {"[1]": 3, "[2]": 9}```</answer>'
        >>> answer_parsed([good, "[2] > [1]"], [[1, 2], [1, 2]])
        [1.0, 0.0]
    """
    return [
        float(parse_answer(str(c), len(t)).group_status == OK)
        for c, t in zip(completions, target_scores, strict=True)
    ]


def train_sft(
    samples: pd.DataFrame,
    base: str | Path | ModelRef,
    output: str | Path,
    config: LLMTrainConfig = LLMTrainConfig(),
) -> dict:
    """Fine-tunes ``base`` on the ``sft`` rows' completions (loss on completion tokens only).

    The samples go to TRL as a prompt-completion dataset, so ``SFTTrainer`` masks the prompt
    tokens and appends EOS to each completion. Returns the training summary (also written to
    ``OUTPUT/training_summary.json``).

    Example:
        >>> config = LLMTrainConfig(max_steps=20)
        >>> summary = train_sft(samples, "smollm2", "out/sft", config)  # doctest: +SKIP
        >>> summary["global_step"], summary["losses"][-1]  # doctest: +SKIP
        (20, {'step': 20, 'loss': 0.61})
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    started = time.monotonic()
    output = Path(output)
    source = resolve_llm(base)
    rows = _split_rows(samples, SFT)
    model, tokenizer = _load(source)
    prompts = _plain_prompts(list(rows["prompt"]), tokenizer)
    completions = [str(c) for c in rows["completion"]]
    lengths = _token_lengths(tokenizer, [p + c for p, c in zip(prompts, completions)])
    # +1 for the EOS token TRL appends.
    keep = [n + 1 <= config.max_length for n in lengths]
    dataset = Dataset.from_dict(
        {
            "prompt": [p for p, k in zip(prompts, keep) if k],
            "completion": [c for c, k in zip(completions, keep) if k],
        }
    )
    _check_not_empty(dataset, len(keep), SFT, config)
    args = SFTConfig(
        **_trainer_arguments(config, output),
        max_length=config.max_length,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora(config),
    )
    skipped = len(keep) - len(dataset)
    return _train_and_save(trainer, tokenizer, output, "sft", source, config, skipped, started)


def train_rl(
    samples: pd.DataFrame,
    init: str | Path | ModelRef,
    output: str | Path,
    config: LLMTrainConfig = LLMTrainConfig(),
) -> dict:
    """GRPO from the model directory ``init`` (usually an SFT output) on the ``rl`` rows.

    Policy and reference both start from ``init``; the policy trains a new LoRA adapter (the
    reference is the policy with the adapter disabled). Each prompt gets ``config.rollouts``
    sampled completions, rewarded by ``group_ranking_reward`` against the row's
    ``target_scores``. The summary holds the mean reward and the rollouts' parse rate per step.

    Example:
        >>> config = LLMTrainConfig(max_steps=10, learning_rate=1e-5)
        >>> summary = train_rl(samples, "out/sft", "out/rl", config)  # doctest: +SKIP
        >>> summary["rewards"][-1]  # doctest: +SKIP
        {'step': 10, 'reward': 0.84, 'reward_std': 0.21, 'parse_rate': 0.95, 'kl': 0.0004}
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    started = time.monotonic()
    output = Path(output)
    source = resolve_llm(init)
    rows = _split_rows(samples, RL)
    model, tokenizer = _load(source)
    tokenizer.padding_side = "left"  # generation appends on the right
    prompts = _plain_prompts(list(rows["prompt"]), tokenizer)
    budget = config.max_length - config.max_new_tokens
    keep = [n <= budget for n in _token_lengths(tokenizer, prompts)]
    dataset = Dataset.from_dict(
        {
            "prompt": [p for p, k in zip(prompts, keep) if k],
            "target_scores": [
                [float(x) for x in t] for t, k in zip(rows["target_scores"], keep) if k
            ],
        }
    )
    _check_not_empty(dataset, len(keep), RL, config)
    # TRL names a partial after the function it wraps: logged as rewards/group_ranking_reward.
    reward = functools.partial(group_ranking_reward, reward_terms=tuple(config.reward_terms))
    shared = _trainer_arguments(config, output)
    # A micro-batch holds whole GRPO groups: batch_size prompts x rollouts completions.
    shared["per_device_train_batch_size"] = config.batch_size * config.rollouts
    args = GRPOConfig(
        **shared,
        num_generations=config.rollouts,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        beta=config.kl,
        epsilon=config.clip_epsilon,
        reward_weights=[1.0, 0.0],
        # The policy's and the reference's log-probabilities must not differ by dropout noise.
        disable_dropout=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward, answer_parsed],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora(config),
    )
    skipped = len(keep) - len(dataset)
    return _train_and_save(trainer, tokenizer, output, "rl", source, config, skipped, started)


# ---- shared steps ------------------------------------------------------------------------


def _split_rows(samples: pd.DataFrame, split: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"samples lack columns {missing} (see schemas/samples.py SAMPLES)")
    rows = samples[samples["split"] == split]
    if rows.empty:
        counts = samples["split"].value_counts().to_dict()
        raise ValueError(f"samples have no {split!r} rows (rows per split: {counts})")
    return rows


def _check_not_empty(dataset, total: int, split: str, config: LLMTrainConfig) -> None:
    if len(dataset) == 0:
        raise ValueError(
            f"all {total} {split!r} samples exceed max_length={config.max_length} tokens"
            + (f" with max_new_tokens={config.max_new_tokens}" if split == RL else "")
        )
    if len(dataset) < total:
        log.warning(
            "skipping %d of %d %s samples longer than %d tokens",
            total - len(dataset), total, split, config.max_length,
        )


def _load(path: Path):
    """Model (bf16 on a GPU, fp32 on CPU, left on CPU: the Trainer places it) and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if _bf16() else torch.float32, use_safetensors=True
    )
    return model, tokenizer


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16() -> bool:
    import torch

    return _cuda() and torch.cuda.is_bf16_supported()


def _plain_prompts(prompts: list[str], tokenizer) -> list[str]:
    """Prompts as TRL must receive them to reproduce the reranker's prompt tokens.

    TRL tokenizes a plain-string prompt with ``tokenizer(text)``, which adds the tokenizer's own
    special tokens; the reranker tokenizes chat-templated text without them
    (``chat_prompt_ids``). Where the tokenizer adds a BOS and the rendered prompt already starts
    with it (Llama 3 style templates), the text's BOS is dropped so the sequence has one.
    """
    added = tokenizer("", add_special_tokens=True).input_ids
    bos = tokenizer.bos_token
    if bos and added[:1] == [tokenizer.bos_token_id]:
        return [p.removeprefix(bos) for p in prompts]
    return prompts


def _token_lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts).input_ids]


def _lora(config: LLMTrainConfig):
    if config.full_finetune:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _trainer_arguments(config: LLMTrainConfig, output: Path) -> dict[str, Any]:
    """TrainingArguments fields both stages share."""
    return {
        "output_dir": str(output / CHECKPOINT_DIR),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "linear",
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation,
        "activation_checkpointing": config.activation_checkpointing,
        "seed": config.seed,
        "bf16": _bf16(),
        # Pinned host memory only speeds copies to a GPU; without one torch warns at each epoch.
        "dataloader_pin_memory": _cuda(),
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "logging_steps": 1,
        "report_to": "none",
    }


def _last_checkpoint(output: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = output / CHECKPOINT_DIR
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def _train_and_save(
    trainer, tokenizer, output: Path, stage: str, source: Path, config: LLMTrainConfig,
    skipped: int, started: float,
) -> dict:
    resume = _last_checkpoint(output)
    if resume:
        log.info("%s: resuming from %s", stage, resume)
    result = trainer.train(resume_from_checkpoint=resume)
    summary = _summary(
        trainer, stage, source, output, config, skipped, resume, result.metrics, started
    )
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        _save_model(trainer.model, tokenizer, output, config)
        summary["wall_s"] = round(time.monotonic() - started, 2)
        (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        log.info(
            "%s: %d steps in %.0f s, last loss %s, peak RSS %.0f MB -> %s",
            stage, summary["global_step"], summary["wall_s"],
            summary["losses"][-1]["loss"] if summary["losses"] else "n/a",
            summary["peak_rss_mb"], output,
        )
    return summary


def _save_model(model, tokenizer, output: Path, config: LLMTrainConfig) -> None:
    """The adapter alone (LoRA), then the merged model and tokenizer as a plain HF directory."""
    if not config.full_finetune:
        model.save_pretrained(output / ADAPTER_DIR)
        model = model.merge_and_unload()
    # Activation checkpointing turns the KV cache off in the config; inference wants it on.
    model.config.use_cache = True
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)


def _summary(
    trainer, stage: str, source: Path, output: Path, config: LLMTrainConfig, skipped: int,
    resumed_from: str | None, metrics: dict, started: float,
) -> dict:
    import torch

    history = trainer.state.log_history
    summary: dict[str, Any] = {
        "stage": stage,
        "source": str(source),
        "output": str(output),
        "global_step": trainer.state.global_step,
        "resumed_from": resumed_from,
        "samples": len(trainer.train_dataset),
        "skipped_too_long": skipped,
        "losses": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "train_runtime_s": metrics.get("train_runtime"),
        "wall_s": round(time.monotonic() - started, 2),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": (
            round(torch.cuda.max_memory_allocated() / 2**20, 1) if _cuda() else None
        ),
        "config": dataclasses.asdict(config),
    }
    if stage == "rl":
        summary["rewards"] = [
            {
                "step": h["step"],
                "reward": h["reward"],
                "reward_std": h.get("reward_std"),
                "parse_rate": h.get(_PARSE_METRIC),
                "kl": h.get("kl"),
            }
            for h in history
            if "reward" in h
        ]
    return summary
