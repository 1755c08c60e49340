"""What the train-sft and train-rl jobs share: reading the samples table, picking the backbone,
and launching the trainer in-process or with ``pyspark.ml.torch.distributor.TorchDistributor``.

The backbone follows the model argument:

    minilm | encoder | a sentence-encoder directory | a group-encoder checkpoint -> group encoder
    smollm2 | a Hugging Face causal LM directory                               -> LLM (TRL + PEFT)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from grouprank.backends.group_encoder import SHIPPED_ENCODER, is_group_encoder_dir
from grouprank.models import EMBEDDED_LLM
from jobs.configs import RLOptions, TrainJob

log = logging.getLogger("grouprank.train")

GROUP_ENCODER, LLM = "group-encoder", "llm"






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


def check(job: TrainJob, model: str, rl: RLOptions | None = None) -> None:
    """Fails on bad flags before any Spark work: the samples table, the model, the options."""
    from jobs.tables import check_table_ref

    check_table_ref(job.samples, "--samples")
    config_for(backbone_of(model), job, rl)


def launch(stage: str, job: TrainJob, model: str, rl: RLOptions | None = None) -> dict:
    """Reads the samples and trains, in-process or through TorchDistributor; returns the summary."""
    from jobs.session import get_session

    started = time.time()
    check(job, model, rl)
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
    return summary


def headline(summary: dict) -> str:
    """Which backbone was trained from what, into where."""
    stage = summary["job"].removeprefix("train-")
    return (f"trained {summary['backbone']} ({stage}) from {summary['model']} into "
            f"{summary['output']} in {summary['total_seconds']} s")

