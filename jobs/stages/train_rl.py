"""GRPO with the group-ranking reward, from an SFT checkpoint, on the samples' rl split.

    grouprank train-rl --samples out/train/samples --init ckpt/sft --output ckpt/rl
    grouprank train-rl --samples out/train/samples --init ckpt/sft --output ckpt/rl-no-js \\
        --reward-terms ndcg,recall
    spark-submit jobs/train_rl.py <same flags>

Policy and reference start from --init (a group-encoder checkpoint or a merged causal LM
directory). Reward: format gate, then NDCG@10 + 0.2 Recall@10 + 0.1 (1 - JS) against the
sample's targets (grouprank.reward). The group encoder samples each document's 0-10 score from
its distribution; LLMs generate with TRL's GRPOTrainer.
"""

from __future__ import annotations

from jobs.configs import RLInit, RLOptions, TrainJob
from jobs.training import check as check_training
from jobs.training import headline, launch


def check(init: RLInit, job: TrainJob, rl: RLOptions) -> None:
    """Fails on bad flags before any Spark work."""
    check_training(job, init.init, rl)


def run(init: RLInit, job: TrainJob, rl: RLOptions) -> dict:
    """Trains and returns the job summary; bad flags and tables fail before training."""
    return launch("rl", job, init.init, rl)


__all__ = ["check", "headline", "run"]
