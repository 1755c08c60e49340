"""What the train-sft and train-rl jobs share: reading the samples table, picking the backbone,
and launching the trainer in-process or with ``pyspark.ml.torch.distributor.TorchDistributor``.

The backbone follows the model argument:

    minilm | encoder | a sentence-encoder directory | a group-encoder checkpoint -> group encoder
    smollm2 | a Hugging Face causal LM directory                               -> LLM (TRL + PEFT)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grouprank.backends.group_encoder import SHIPPED_ENCODER, is_group_encoder_dir
from grouprank.models import EMBEDDED_LLM
from grouprank.reward import ALL_TERMS

log = logging.getLogger("grouprank.train")

GROUP_ENCODER, LLM = "group-encoder", "llm"


@dataclass(frozen=True)
class TrainJob:
    """Flags both training jobs take (besides where the model comes from)."""

    # Samples Delta table (path or name) written by `grouprank synthesize`.
    samples: str
    # Output checkpoint directory (loadable with `grouprank rerank --model`).
    output: str
    # Read only this run date's samples (YYYY-MM-DD); empty = every date in the table.
    run_date: str = ""
    # Passes over the split (group encoder: whole epochs; LLM: may be fractional).
    epochs: float = 0.0
    # Stop after this many optimizer steps; -1 = run the epochs.
    max_steps: int = -1
    # Learning rate; 0 = the backbone's default.
    learning_rate: float = 0.0
    # Samples per optimizer step; 0 = the backbone's default.
    batch_size: int = 0
    # LoRA rank of LLM backbones (the paper: 32).
    lora_rank: int = 32
    # LoRA alpha of LLM backbones (the paper: 32).
    lora_alpha: int = 32
    # LLM backbones: train every weight instead of a LoRA adapter.
    full_finetune: bool = False
    # Seed of initialisation, data order and sampling.
    seed: int = 0
    # Checkpoint every this many steps; a rerun with the same --output resumes from the last.
    save_every: int = 100
    # Group encoder, fresh head: documents in each query's pseudo-relevance feedback vector
    # (the samples' feedback_texts in training, the list's top at inference; 0 = none).
    feedback_top: int = 0
    # Launch through TorchDistributor with this many processes (0 = in this process).
    num_processes: int = 0
    # With TorchDistributor: run on the driver (local) instead of on executors.
    local_mode: bool = True
    # With TorchDistributor: one GPU per process (spark.task.resource.gpu.amount must be set).
    use_gpu: bool = False


@dataclass(frozen=True)
class RLOptions:
    """GRPO flags (paper: 8 rollouts, temperature 1.0, KL 0.001, LoRA r = alpha = 32)."""

    # Rollouts per sample; advantages are relative within them.
    rollouts: int = 8
    # Coefficient of the KL penalty to the reference (the --init checkpoint).
    kl: float = 0.001
    # Sampling temperature of the rollouts.
    temperature: float = 1.0
    # Clip range of the probability ratio.
    clip: float = 0.2
    # Reward terms, comma-separated, for ablations (default: all three).
    reward_terms: str = ",".join(ALL_TERMS)


def backbone_of(model: str) -> str:
    """``group-encoder`` or ``llm`` for a --base/--init value; fails on what is neither.

    Example:
        >>> backbone_of("minilm"), backbone_of("smollm2")
        ('group-encoder', 'llm')
    """
    if model in (SHIPPED_ENCODER, "encoder") or is_group_encoder_dir(model):
        return GROUP_ENCODER
    path = Path(model).expanduser()
    if (path / "config_sentence_transformers.json").is_file() or (path / "modules.json").is_file():
        return GROUP_ENCODER
    if model == EMBEDDED_LLM or (path / "config.json").is_file():
        return LLM
    raise ValueError(
        f"{model!r} is not a model: pass minilm, a sentence-encoder or group-encoder directory, "
        f"{EMBEDDED_LLM}, or a Hugging Face causal LM directory"
    )


def read_samples(spark, table: str, run_date: str) -> pd.DataFrame:
    """The samples table (one run date, or all) as pandas, checked against ``schemas.SAMPLES``."""
    from pyspark.sql import functions as F

    from jobs.tables import parse_run_date, read_table
    from schemas.samples import SAMPLES, TRAINING_REQUIRED
    from schemas.validation import check_columns

    frame = check_columns(
        read_table(spark, table, "--samples"), SAMPLES, TRAINING_REQUIRED, "samples"
    )
    if run_date:
        frame = frame.where(F.col("run_date") == F.lit(parse_run_date(run_date)))
    samples = frame.drop("run_date").toPandas()
    if samples.empty:
        raise ValueError(f"--samples {table!r} holds no samples" + (
            f" for run date {run_date}" if run_date else ""))
    return samples


def check_chat_template(samples: pd.DataFrame, model: str, flag: str) -> None:
    """Raises ``ValueError`` unless the samples' prompts were rendered with ``model``'s chat
    template: an LLM must not be trained on another model's chat format."""
    from transformers import AutoTokenizer

    from grouprank.prompts import chat_template_digest
    from grouprank.training.llm import resolve_llm

    if "chat_template" not in samples:
        raise ValueError(
            "the samples table does not record its chat template (written by an older version); "
            f"synthesize again with --chat-model {model}"
        )
    expected = chat_template_digest(AutoTokenizer.from_pretrained(resolve_llm(model)))
    found = sorted(set(samples["chat_template"]))
    if found != [expected]:
        raise ValueError(
            f"the samples' prompts were rendered with chat template(s) {found}, but {flag} "
            f"{model} uses {expected}; synthesize them again with --chat-model {model}"
        )


def config_for(backbone: str, job: TrainJob, rl: RLOptions | None = None):
    """The backbone's trainer config with the flags that were set (0 / -1 keep its defaults)."""
    common = {"seed": job.seed, "max_steps": job.max_steps}
    if job.learning_rate:
        common["rl_learning_rate" if rl and backbone == GROUP_ENCODER else "learning_rate"] = (
            job.learning_rate
        )
    if job.batch_size:
        common["batch_size"] = job.batch_size
    if rl is not None:
        common.update(rollouts=rl.rollouts, kl=rl.kl, temperature=rl.temperature,
                      reward_terms=tuple(t.strip() for t in rl.reward_terms.split(",") if t))
    if backbone == GROUP_ENCODER:
        from grouprank.training.group_encoder import EncoderTrainConfig

        if job.epochs:
            common["epochs"] = max(1, round(job.epochs))
        if rl is not None:
            common["clip"] = rl.clip
        return EncoderTrainConfig(save_every=job.save_every, context_top=job.feedback_top, **common)
    from grouprank.training.llm import LLMTrainConfig

    if job.epochs:
        common["epochs"] = job.epochs
    if rl is not None:
        common["clip_epsilon"] = rl.clip
    return LLMTrainConfig(
        lora_rank=job.lora_rank, lora_alpha=job.lora_alpha, full_finetune=job.full_finetune,
        save_steps=job.save_every, **common,
    )


def train(stage: str, samples: pd.DataFrame, model: str, output: str, config) -> dict:
    """Runs one stage of one backbone in this process (the function TorchDistributor ships)."""
    if backbone_of(model) == GROUP_ENCODER:
        from grouprank.training import group_encoder as trainer
    else:
        from grouprank.training import llm as trainer  # type: ignore[no-redef]
    run = trainer.train_sft if stage == "sft" else trainer.train_rl
    return run(samples, model, output, config)


def launch(stage: str, job: TrainJob, model: str, rl: RLOptions | None = None) -> dict:
    """Reads the samples and trains, in-process or through TorchDistributor; returns the summary."""
    from jobs.session import get_session
    from jobs.tables import check_table_ref

    started = time.time()
    check_table_ref(job.samples, "--samples")
    backbone = backbone_of(model)
    config = config_for(backbone, job, rl)
    spark = get_session(f"grouprank-train-{stage}")
    samples = read_samples(spark, job.samples, job.run_date)
    split = "sft" if stage == "sft" else "rl"
    if not (samples["split"] == split).any():
        raise ValueError(f"--samples {job.samples!r} holds no {split!r} samples")
    if backbone != GROUP_ENCODER:
        check_chat_template(samples, model, "--base" if stage == "sft" else "--init")
    if job.num_processes:
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(
            num_processes=job.num_processes, local_mode=job.local_mode, use_gpu=job.use_gpu
        )
        summary = distributor.run(train, stage, samples, model, job.output, config)
    else:
        summary = train(stage, samples, model, job.output, config)
    summary = {"job": f"train-{stage}", "backbone": backbone, "model": model,
               "output": job.output, "total_seconds": round(time.time() - started, 1),
               **{k: v for k, v in summary.items() if k != "curve"}}
    print(f"trained {backbone} ({stage}) from {model} into {job.output} "
          f"in {summary['total_seconds']} s")
    print("summary: " + json.dumps(summary, sort_keys=True, default=str))
    return summary

