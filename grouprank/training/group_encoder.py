"""SFT and GRPO for the group-encoder backbone, on the synthesized samples; no Spark.

    summary = train_sft(samples, "minilm", "ckpt/sft", EncoderTrainConfig())
    summary = train_rl(samples, "ckpt/sft", "ckpt/rl", EncoderTrainConfig())
    summary = train_sft(samples, "minilm", "ckpt/sft", config, vectors=lookup)  # from a job

The sentence encoder is frozen, so both stages train only the small head: minutes on a CPU. The
train-sft / train-rl jobs embed the samples' texts in a Spark stage (through the embedding store
with ``--embedding-store``) and pass ``vectors``, sha256(text) -> embedding; called without
them (tests, bench scripts) the trainer encodes in this process, each distinct text once
(``grouprank.encoding.embed_in_memory``: memory only, no files).

* **SFT (distillation).** Each document's 0..10 distribution is pulled towards its target score
  (a soft label on the two nearest integers: 6.3 -> 0.7 on 6, 0.3 on 7) and the group's expected
  scores towards the target ranking (ListNet: cross-entropy between the softmax of the target
  scores and of the predicted ones). The first fixes the level, the second the order.
* **RL (GRPO).** A rollout draws every document's integer score from its distribution, as direct
  mode sampling does for an LLM; the ranking it induces and the scores themselves are rewarded by
  ``grouprank.reward.group_reward`` (NDCG@10 + 0.2 Recall@10 + 0.1 (1 - JS)). Advantages are
  group-relative over the ``rollouts`` draws of a sample; the loss is the clipped surrogate on
  per-document probability ratios (a document's score plays the role of a token) plus ``kl`` times
  the exact KL divergence from the frozen reference (the SFT head), averaged over documents.

Under ``torchrun`` / TorchDistributor with several processes, each process takes every
world-size-th sample of a batch order all share, gradients are averaged across processes before
every step (what DistributedDataParallel does), and only rank 0 writes.

Checkpoints (head, optimizer, step) are written every ``save_every`` steps under
``OUTPUT/checkpoints/``; a run that finds them resumes from the last one. Batches follow a seeded
order per epoch, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import resource
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grouprank.backends.group_encoder import (
    NUM_LEVELS,
    SHIPPED_ENCODER,
    GroupEncoderConfig,
    GroupHead,
    expected_scores,
    load_head,
    pad_groups,
    save_head,
)
from grouprank.encoding import embed_in_memory, text_digest
from grouprank.models import (
    CAUSAL_LM,
    GROUP_ENCODER,
    SHIPPED_ENCODER_NAMES,
    ModelRef,
    base_ref,
)
from grouprank.reward import ALL_TERMS, group_reward

log = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"
_STATE_FILE = "trainer_state.pt"


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Settings of both training stages of the group-encoder backbone."""

    # Passes over the split's samples (SFT and RL each).
    epochs: int = 4
    # Stop after this many optimizer steps (-1: run all epochs).
    max_steps: int = -1
    # Samples (groups) per step.
    batch_size: int = 32
    # AdamW learning rate of SFT; RL uses rl_learning_rate.
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    # Weight of the ListNet ranking term next to the per-document level term in SFT.
    listnet_weight: float = 1.0
    # Head architecture for a fresh SFT run (ignored when SFT starts from a checkpoint).
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    # Whether a fresh head reads the documents' first-stage ranks in their whole candidate list
    # (the samples' ``first_stage_ranks``; see ``GroupEncoderConfig.rank_features``).
    rank_features: bool = True
    # Feedback documents a fresh head reads (``GroupEncoderConfig.context_top``; 0 = none): the
    # samples' ``feedback_texts`` give each query's feedback vector.
    context_top: int = 0
    # Whether a fresh head reads each query's first-stage agreement with the encoder (the
    # samples' ``first_stage_agreement``; see ``GroupEncoderConfig.agreement_feature``).
    agreement_feature: bool = False
    # Whether a fresh head reads each document's late-interaction (MaxSim) score with its query
    # (``GroupEncoderConfig.late_interaction``): the samples' ``late_scores`` where they have
    # them, else computed here from the texts.
    late_interaction: bool = False
    # Windows of the encoder's token limit its MaxSim reads per document
    # (``GroupEncoderConfig.late_windows``).
    late_windows: int = 1
    # Share of the samples, drawn afresh each epoch, whose first-stage scores the head sees
    # through a random order-keeping transform (``order_keeping_transform``: as probabilities,
    # as exponentials, as logs), so it learns to read first-stage scores whatever their
    # distribution (BM25 scores, dot products, calibrated probabilities). Ranks are unchanged.
    score_augment: float = 0.0
    # Checkpoint every this many steps (0: only at the end).
    save_every: int = 100
    # Seed of the head's initialisation, the batch order and the rollouts.
    seed: int = 0
    # RL: draws per sample, KL coefficient, clip range, optimizer passes over each batch of
    # rollouts, sampling temperature, learning rate and the reward's terms (for ablations).
    rollouts: int = 8
    kl: float = 0.001
    clip: float = 0.2
    inner_steps: int = 2
    temperature: float = 1.0
    rl_learning_rate: float = 1e-4
    reward_terms: tuple[str, ...] = ALL_TERMS

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("epochs and batch_size must be >= 1")
        if self.rollouts < 2:
            problems.append("rollouts must be >= 2 (advantages are relative within a sample)")
        if not set(self.reward_terms) <= set(ALL_TERMS) or not self.reward_terms:
            problems.append(f"reward_terms must be a non-empty subset of {list(ALL_TERMS)}")
        if self.temperature <= 0:
            problems.append("temperature must be > 0")
        if not 0.0 <= self.score_augment <= 1.0:
            problems.append("score_augment (--score-augment) must be in [0, 1]")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))


@dataclass
class _Data:
    """A split's samples as tensors ready for batching."""

    queries: torch.Tensor  # (S, E)
    docs: list[torch.Tensor]  # S x (n_i, E)
    first_stage: list[list[float]]
    targets: list[list[float]]
    ranks: list[list[int]]
    contexts: torch.Tensor  # (S, E) feedback vectors, zeros where the samples hold none
    agreements: torch.Tensor  # (S,) first-stage agreements, NaN where the samples hold none
    late: list[list[float]]  # per sample, its documents' MaxSim (empty unless the head reads it)


def train_sft(
    samples: pd.DataFrame, base: str | ModelRef, output: str | Path,
    config: EncoderTrainConfig, vectors: Mapping[str, Sequence[float]] | None = None,
) -> dict:
    """Distils the ``sft`` split's targets into a group-encoder head; writes a checkpoint.

    ``base``: ``"minilm"`` (or ``"encoder"``) for a fresh head on the shipped MiniLM, an encoder
    directory for a fresh head on that encoder, or a group-encoder checkpoint to continue from.
    ``vectors``: sha256(text) -> embedding of every text read (the job's embedding stage); None
    encodes them here. Returns the training summary (also written to
    ``OUTPUT/training_summary.json``).
    """
    ref = base_ref(base)
    if ref.kind == CAUSAL_LM:
        raise ValueError(f"--base {ref.spec!r} is a causal LM, not a sentence or group encoder")
    if ref.kind == GROUP_ENCODER:
        head = load_head(ref.path())
    else:
        encoder = SHIPPED_ENCODER if ref.spec in SHIPPED_ENCODER_NAMES else ref.spec
        torch.manual_seed(config.seed)
        head = GroupHead(
            GroupEncoderConfig(
                encoder=encoder, hidden=config.hidden, layers=config.layers, heads=config.heads,
                dropout=config.dropout, rank_features=config.rank_features,
                context_top=config.context_top, agreement_feature=config.agreement_feature,
                late_interaction=config.late_interaction, late_windows=config.late_windows,
            )
        )
    data = _prepare(samples, "sft", head.config, vectors)
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def step(batch: dict[str, torch.Tensor]) -> dict[str, float]:
        head.train()
        logits = head(batch["query"], batch["docs"], batch["first_stage"], batch["mask"],
                      batch["ranks"], batch["context"], batch["agreement"], batch["late"])
        loss, parts = sft_loss(logits, batch["targets"], batch["mask"], config.listnet_weight)
        optimizer.zero_grad()
        loss.backward()
        _average_gradients(head)
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item(), **parts}

    return _run("sft", head, optimizer, data, step, output, config, ref.spec)


def train_rl(
    samples: pd.DataFrame, init: str | Path | ModelRef, output: str | Path,
    config: EncoderTrainConfig, vectors: Mapping[str, Sequence[float]] | None = None,
) -> dict:
    """GRPO on the ``rl`` split from the SFT checkpoint ``init`` (also the frozen reference);
    ``vectors`` as for ``train_sft``."""
    try:
        ref = base_ref(init)
    except ValueError:
        ref = None
    if ref is None or ref.kind != GROUP_ENCODER:
        name = str(getattr(init, "spec", init))
        raise ValueError(f"--init {name!r} is not a group-encoder checkpoint (no grouprank.json)")
    head = load_head(ref.path())
    reference = copy.deepcopy(head).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    data = _prepare(samples, "rl", head.config, vectors)
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=config.rl_learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)

    def step(batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return grpo_step(head, reference, optimizer, batch, config, generator)

    return _run("rl", head, optimizer, data, step, output, config, ref.spec, generator)


def sft_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, listnet_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Soft-label cross-entropy on each document's level plus ListNet on the group's order."""
    log_probs = logits.log_softmax(-1)
    soft = soft_labels(targets.nan_to_num(0.0))
    level = -(soft * log_probs).sum(-1)
    level = (level * mask).sum() / mask.sum()
    predicted = expected_scores(logits).masked_fill(~mask, -1e4)
    wanted = targets.nan_to_num(0.0).masked_fill(~mask, -1e4)
    listnet = -(wanted.softmax(-1) * predicted.log_softmax(-1)).masked_fill(~mask, 0.0).sum(-1)
    listnet = listnet.mean()
    total = level + listnet_weight * listnet
    return total, {"level_loss": level.item(), "listnet_loss": listnet.item()}


def soft_labels(targets: torch.Tensor) -> torch.Tensor:
    """A 0..10 score as a distribution on its two nearest integer levels.

    Example:
        >>> soft_labels(torch.tensor([6.25]))[0, 6:8].tolist()
        [0.75, 0.25]
    """
    clipped = targets.clamp(0, NUM_LEVELS - 1)
    low = clipped.floor().long()
    high = (low + 1).clamp(max=NUM_LEVELS - 1)
    upper = clipped - low.float()
    labels = torch.zeros(*targets.shape, NUM_LEVELS)
    labels.scatter_add_(-1, low[..., None], (1 - upper)[..., None])
    labels.scatter_add_(-1, high[..., None], upper[..., None])
    return labels


def grpo_step(
    head: GroupHead,
    reference: GroupHead,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    config: EncoderTrainConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """One GRPO update on a batch: sample rollouts, reward them, take ``inner_steps`` steps."""
    inputs = (batch["query"], batch["docs"], batch["first_stage"], batch["mask"], batch["ranks"],
              batch["context"], batch["agreement"], batch["late"])
    mask = batch["mask"]
    # Dropout off throughout: the ratio must compare the same function before and after a step.
    head.eval()
    with torch.no_grad():
        old_logits = head(*inputs) / config.temperature
        # The KL term compares policy and reference at the same (sampling) temperature.
        ref_log_probs = (reference(*inputs) / config.temperature).log_softmax(-1)
        old_log_probs = old_logits.log_softmax(-1)
        # (K, B, N) integer scores, one draw per document per rollout.
        draws = torch.multinomial(
            old_log_probs.exp().reshape(-1, NUM_LEVELS), config.rollouts, replacement=True,
            generator=generator,
        ).T.reshape(config.rollouts, *mask.shape)
    rewards = _rollout_rewards(draws, batch["targets"], mask, config.reward_terms)
    advantages = (rewards - rewards.mean(0)) / (rewards.std(0) + 1e-4)  # (K, B)
    old_taken = old_log_probs.gather(-1, draws.permute(1, 2, 0)).permute(2, 0, 1)
    weight = mask.float()[None].expand_as(old_taken)
    stats = {}
    for _ in range(config.inner_steps):
        logits = head(*inputs) / config.temperature
        log_probs = logits.log_softmax(-1)
        taken = log_probs.gather(-1, draws.permute(1, 2, 0)).permute(2, 0, 1)
        ratio = (taken - old_taken).exp()
        adv = advantages[..., None]
        surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - config.clip, 1 + config.clip) * adv)
        policy_loss = -(surrogate * weight).sum() / weight.sum()
        kl = (log_probs.exp() * (log_probs - ref_log_probs)).sum(-1)
        kl = (kl * mask).sum() / mask.sum()
        loss = policy_loss + config.kl * kl
        optimizer.zero_grad()
        loss.backward()
        _average_gradients(head)
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()
        stats = {"loss": loss.item(), "kl": kl.item(), "clipped": float(
            ((ratio - 1).abs() > config.clip).float().mul(weight).sum() / weight.sum()
        )}
    with torch.no_grad():
        greedy = expected_scores(head(*inputs))
    stats["reward"] = float(rewards.mean())
    stats["greedy_reward"] = float(
        _rollout_rewards(greedy[None], batch["targets"], mask, config.reward_terms).mean()
    )
    return stats


def _world() -> tuple[int, int]:
    """(world size, rank), starting the process group when launched by torchrun."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (world, dist.get_rank()) if world > 1 else (1, 0)


def _average_gradients(head: GroupHead) -> None:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    for parameter in head.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= dist.get_world_size()


def _rollout_rewards(
    scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, terms: Sequence[str]
) -> torch.Tensor:
    """R_G of every rollout (K, B, N) -> (K, B)."""
    rewards = torch.zeros(scores.shape[:2])
    sizes = mask.sum(-1).tolist()
    for k in range(scores.shape[0]):
        for b, n in enumerate(sizes):
            predicted = scores[k, b, :n].tolist()
            rewards[k, b] = group_reward(predicted, targets[b, :n].tolist(), terms)
    return rewards


def _run(
    stage, head, optimizer, data: _Data, step, output, config, source,
    generator: torch.Generator | None = None,
) -> dict:
    """The shared loop: seeded batches, resume, periodic checkpoints, summary.

    Checkpoints hold the random states (torch's global one, which dropout draws from, and the
    rollout ``generator``), so a resumed run continues with exactly the draws an uninterrupted
    one would make.
    """
    output = Path(output)
    started = time.time()
    world, rank = _world()
    per_epoch = math.ceil(len(data.targets) / config.batch_size)
    total = per_epoch * config.epochs
    if config.max_steps >= 0:
        total = min(total, config.max_steps)
    done, curve = _resume(head, optimizer, output, generator)
    if done:
        log.info("%s: resuming at step %d of %d from %s", stage, done, total, output)
    for number, batch in enumerate(_batches(data, config, world, rank), start=1):
        if number > total:
            break
        if number <= done:
            continue
        stats = step(batch)
        curve.append({"step": number, **{k: round(v, 5) for k, v in stats.items()}})
        if number % 20 == 0 or number == total:
            log.info("%s step %d/%d %s", stage, number, total, stats)
        if rank == 0 and config.save_every and number % config.save_every == 0 and number < total:
            _checkpoint(head, optimizer, output, number, curve, generator)
    if rank:
        return {"stage": stage, "rank": rank}
    save_head(head, output)
    summary = {
        "stage": stage,
        "source": str(source),
        "samples": len(data.targets),
        "steps": len(curve) and curve[-1]["step"],
        "resumed_from_step": done,
        "seconds": round(time.time() - started, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "config": asdict(config),
        "curve": curve,
    }
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(output / "checkpoints", ignore_errors=True)
    return summary


def _batches(
    data: _Data, config: EncoderTrainConfig, world: int = 1, rank: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    count = len(data.targets)
    for epoch in range(config.epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(count)
        first_stage_seen = _augmented(data.first_stage, config, epoch)
        for start in range(0, count, config.batch_size):
            chosen = order[start : start + config.batch_size][rank::world]
            if not len(chosen):  # a last, short batch with fewer samples than processes
                chosen = order[start : start + 1]
            query, docs, first_stage, mask, ranks = pad_groups(
                data.queries[chosen], [data.docs[i] for i in chosen],
                [first_stage_seen[i] for i in chosen], [data.ranks[i] for i in chosen],
            )
            targets = torch.full(mask.shape, float("nan"))
            late = torch.zeros(mask.shape)
            for row, i in enumerate(chosen):
                targets[row, : len(data.targets[i])] = torch.tensor(data.targets[i])
                if data.late[i]:
                    late[row, : len(data.late[i])] = torch.tensor(data.late[i])
            yield {"query": query, "docs": docs, "first_stage": first_stage, "mask": mask,
                   "ranks": ranks, "context": data.contexts[chosen],
                   "agreement": data.agreements[chosen], "late": late, "targets": targets}


def _augmented(
    first_stage: list[list[float]], config: EncoderTrainConfig, epoch: int
) -> list[list[float]]:
    """The first-stage scores the head sees in ``epoch``: a seeded ``score_augment`` share of
    the samples through ``order_keeping_transform``, the rest as given."""
    if not config.score_augment:
        return first_stage
    rng = np.random.default_rng([config.seed, epoch, 1])
    draws = rng.random(len(first_stage))
    return [order_keeping_transform(scores, rng) if draw < config.score_augment and scores
            else scores for scores, draw in zip(first_stage, draws, strict=True)]


def order_keeping_transform(scores: Sequence[float], rng: np.random.Generator) -> list[float]:
    """``scores`` through a random strictly increasing map, so their order (and ranks) stay and
    their spacing changes as it does between kinds of first stage: a logistic of the
    standardised scores at a random slope (calibrated probabilities), an exponential at a random
    rate (softmax-like scores), or a log of the shifted scores (a compressed scale).

    Example:
        >>> out = order_keeping_transform([3.0, 1.0, 2.0], np.random.default_rng(0))
        >>> [int(i) for i in np.argsort(out)]
        [1, 2, 0]
    """
    values = np.asarray(scores, dtype=np.float64)
    spread = values.std()
    if len(values) < 2 or spread == 0 or not np.isfinite(values).all():
        return list(map(float, values))
    z = (values - values.mean()) / spread
    kind = rng.integers(3)
    if kind == 0:
        out = 1.0 / (1.0 + np.exp(-rng.uniform(1.0, 6.0) * (z - rng.uniform(-1.0, 1.0))))
    elif kind == 1:
        out = np.exp(rng.uniform(1.0, 4.0) * (z - z.max()))
    else:
        out = np.log(z - z.min() + rng.uniform(0.01, 1.0))
    return list(map(float, out))


def _checkpoint(
    head, optimizer, output: Path, number: int, curve: list,
    generator: torch.Generator | None = None,
) -> None:
    target = output / "checkpoints" / f"step-{number:06d}"
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    save_head(head, staging)
    state = {"optimizer": optimizer.state_dict(), "step": number,
             "torch_rng": torch.get_rng_state()}
    if generator is not None:
        state["generator_rng"] = generator.get_state()
    torch.save(state, staging / _STATE_FILE)
    (staging / "curve.json").write_text(json.dumps(curve))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    for old in sorted((output / "checkpoints").glob("step-??????"))[:-1]:
        shutil.rmtree(old, ignore_errors=True)


def _resume(
    head, optimizer, output: Path, generator: torch.Generator | None = None
) -> tuple[int, list]:
    from safetensors.torch import load_file

    found = sorted((output / "checkpoints").glob("step-??????"))
    if not found:
        return 0, []
    last = found[-1]
    head.load_state_dict(load_file(str(last / "head.safetensors")))
    state = torch.load(last / _STATE_FILE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if generator is not None:
        generator.set_state(state["generator_rng"])
    return int(state["step"]), json.loads((last / "curve.json").read_text())


def _prepare(
    samples: pd.DataFrame, split: str, config: GroupEncoderConfig,
    lookup: Mapping[str, Sequence[float]] | None = None,
) -> _Data:
    """The split's rows with their encoder embeddings (from ``lookup``, else encoded here);
    fails on an empty split."""
    rows = samples[samples["split"] == split] if "split" in samples else samples
    if rows.empty:
        raise ValueError(f"the samples hold no {split!r} rows; synthesize with a matching split")
    rows = rows.sort_values("sample_id", kind="stable")

    def embed(texts: list[str]) -> torch.Tensor:
        if lookup is None:
            return embed_in_memory(config.encoder, texts, config.max_doc_tokens)
        return _looked_up(lookup, texts)

    texts = [str(t) for block in rows["texts"] for t in block]
    vectors = embed(list(rows["query"].astype(str)) + texts)
    queries = vectors[: len(rows)]
    flat = vectors[len(rows) :]
    docs, start = [], 0
    for block in rows["texts"]:
        docs.append(flat[start : start + len(block)])
        start += len(block)
    if "first_stage_scores" in rows:
        first_stage = [list(map(float, s)) for s in rows["first_stage_scores"]]
    else:
        first_stage = [[] for _ in range(len(rows))]
    targets = [list(map(float, t)) for t in rows["target_scores"]]
    if "first_stage_ranks" in rows:
        ranks = [list(map(int, r)) for r in rows["first_stage_ranks"]]
    else:
        ranks = [[] for _ in range(len(rows))]
    contexts = torch.zeros_like(queries)
    if config.context_top and "feedback_texts" in rows:
        feedback = [[str(t) for t in block][: config.context_top] for block in rows["feedback_texts"]]
        flat_feedback = [t for block in feedback for t in block]
        if flat_feedback:
            encoded = embed(flat_feedback)
            start = 0
            for i, block in enumerate(feedback):
                if block:
                    mean = encoded[start : start + len(block)].mean(0)
                    contexts[i] = torch.nn.functional.normalize(mean, dim=-1)
                start += len(block)
    agreements = torch.full((len(rows),), float("nan"))
    if config.agreement_feature and "first_stage_agreement" in rows:
        agreements = torch.tensor(
            [float("nan") if v is None else float(v) for v in rows["first_stage_agreement"]],
            dtype=torch.float32,
        )
    late = [[] for _ in range(len(rows))]
    if config.late_interaction:
        late = _late_scores(rows, config)
    return _Data(queries, docs, first_stage, targets, ranks, contexts, agreements, late)


def _late_scores(rows: pd.DataFrame, config: GroupEncoderConfig) -> list[list[float]]:
    """Each sample's documents' MaxSim with its query: the samples' ``late_scores`` where given,
    else computed from the texts (``grouprank.late_interaction.maxsim_in_memory``)."""
    if "late_scores" in rows:
        return [list(map(float, s)) for s in rows["late_scores"]]
    from grouprank.late_interaction import maxsim_in_memory

    queries = rows["query"].astype(str).tolist()
    pairs = [(q, str(t)) for q, block in zip(queries, rows["texts"]) for t in block]
    flat = maxsim_in_memory(config.encoder, pairs, config.max_doc_tokens,
                            windows=config.late_windows)
    out, start = [], 0
    for block in rows["texts"]:
        out.append(flat[start : start + len(block)])
        start += len(block)
    return out



def _looked_up(lookup: Mapping[str, Sequence[float]], texts: list[str]) -> torch.Tensor:
    """The vectors of ``texts`` from a sha256(text) -> vector lookup; fails naming a missing one."""
    rows = []
    for text in texts:
        vector = lookup.get(text_digest(text))
        if vector is None:
            raise ValueError(f"no embedding for the text {text[:60]!r} (sha256 "
                             f"{text_digest(text)}) among the {len(lookup)} the job computed")
        rows.append(torch.as_tensor(np.asarray(vector, dtype=np.float32)))
    return torch.stack(rows) if rows else torch.zeros(0, 0)
