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

import sys
from dataclasses import dataclass

from jobs.entry import run_job
from jobs.training import TrainJob, launch


@dataclass(frozen=True)
class SFTBase:
    """Where SFT starts."""

    # minilm | a sentence-encoder dir | a group-encoder checkpoint | smollm2 | a causal LM dir.
    base: str


def run(base: SFTBase, job: TrainJob) -> dict:
    """Trains and returns the job summary; bad flags and tables fail before training."""
    return launch("sft", job, base.base)


def main(argv: list[str] | None = None) -> int:
    return run_job("train-sft", SFTBase, run, argv, __doc__, settings=TrainJob)


if __name__ == "__main__":
    sys.exit(main())
