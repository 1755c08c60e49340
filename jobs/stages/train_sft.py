"""Supervised fine-tuning of a groupwise reranker on the synthesized samples (their sft split).

    grouprank train-sft --samples out/train/samples --base minilm --output ckpt/sft
    grouprank train-sft --samples out/train/samples --base smollm2 --output ckpt/llm-sft --lora-rank 32
    spark-submit jobs/train_sft.py <same flags>

--base picks the backbone: minilm (or a sentence-encoder directory) trains a fresh group-encoder
head; a group-encoder checkpoint continues it; smollm2 or a Hugging Face causal LM directory runs
TRL's SFTTrainer with a LoRA adapter (or --full-finetune). The output directory is what
`grouprank rerank --model` loads. --num-processes N launches through TorchDistributor.
"""

from __future__ import annotations

from jobs.configs import SFTBase, TrainJob
from jobs.training import check as check_training
from jobs.training import headline, launch


def check(base: SFTBase, job: TrainJob) -> None:
    """Fails on bad flags before any Spark work."""
    check_training(job, base.base)


def run(base: SFTBase, job: TrainJob) -> dict:
    """Trains and returns the job summary; bad flags and tables fail before training."""
    return launch("sft", job, base.base)


__all__ = ["check", "headline", "run"]
