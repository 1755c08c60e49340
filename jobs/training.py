"""What the train-sft and train-rl jobs share: reading the samples table, picking the backbone,
and launching the trainer in-process or with ``pyspark.ml.torch.distributor.TorchDistributor``.

The backbone follows the model argument:

    minilm | encoder | a sentence-encoder directory | a group-encoder checkpoint -> group encoder
    smollm2 | a Hugging Face causal LM directory                               -> LLM (TRL + PEFT)

It is resolved once, by ``grouprank.models.base_ref``, and the ``ModelRef`` goes to the trainer.

For a group encoder the job embeds the distinct texts of the samples it trains on in a Spark
stage (``jobs.embeddings``; through the embedding store with ``--embedding-store``, the store
rerank uses), collects the vectors to the driver and hands the trainer a lookup
sha256(text) -> vector; the trainer then encodes nothing.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from grouprank.models import CAUSAL_LM, ModelRef, base_ref
from grouprank.models import GROUP_ENCODER as GROUP_ENCODER_KIND
from jobs.configs import RLOptions, TrainJob

log = logging.getLogger("grouprank.train")

GROUP_ENCODER, LLM = "group-encoder", "llm"


def backbone_of(ref: ModelRef) -> str:
    """``group-encoder`` or ``llm``: the trainer a resolved --base/--init value goes to.

    Example:
        >>> backbone_of(base_ref("minilm")), backbone_of(base_ref("smollm2"))  # doctest: +SKIP
        ('group-encoder', 'llm')
    """
    return LLM if ref.kind == CAUSAL_LM else GROUP_ENCODER


def read_samples(spark, table: str, run_date: str) -> pd.DataFrame:
    """The samples table (one run date, or all) as pandas, checked against ``schemas.SAMPLES``."""
    return collect_samples(samples_frame(spark, table, run_date), table, run_date)


def collect_samples(frame, table: str, run_date: str) -> pd.DataFrame:
    """``samples_frame``'s rows as pandas; fails naming the table when there are none."""
    samples = frame.toPandas()
    if samples.empty:
        raise ValueError(f"--samples {table!r} holds no samples" + (
            f" for run date {run_date}" if run_date else ""))
    return samples


def samples_frame(spark, table: str, run_date: str):
    """The samples table (one run date, or all) as a DataFrame, its columns checked."""
    from pyspark.sql import functions as F

    from jobs.tables import parse_run_date, read_table
    from schemas.samples import SAMPLES, TRAINING_REQUIRED
    from schemas.validation import check_columns

    frame = check_columns(
        read_table(spark, table, "--samples"), SAMPLES, TRAINING_REQUIRED, "samples"
    )
    if run_date:
        frame = frame.where(F.col("run_date") == F.lit(parse_run_date(run_date)))
    return frame.drop("run_date")


def embed_samples(
    spark, samples, ref: ModelRef, feedback_top: int, store: str | None
) -> tuple[dict[str, np.ndarray], dict]:
    """Embeds the distinct texts a group-encoder trainer reads for ``samples`` (a DataFrame of
    one split) in a Spark stage, through ``store`` when given; returns the lookup
    sha256(text) -> vector, collected to the driver, and the summary's ``embeddings`` entry.

    The key and precision are rerank's for the same encoder (``jobs.embeddings.store_key``,
    ``driver_precision``), so one store serves both jobs.
    """
    from grouprank.settings import RerankSettings
    from jobs.embeddings import driver_precision, embed_texts, refresh_store, sample_texts
    from jobs.progress import stage
    from jobs.session import model_partitions

    # The embedding functions read only the precision (and trust_remote_code) of the settings.
    settings = driver_precision(RerankSettings(), spark)
    texts = sample_texts(samples, feedback_top).persist()
    into = f" into {store}" if store else ""
    try:
        with stage(spark, f"train: embedding the samples' distinct texts{into}"):
            partitions = model_partitions(spark, texts.count())
            if store:
                vectors, report = refresh_store(spark, store, texts, settings, ref, partitions)
                rows = vectors.collect()
                found = {"texts": report.texts, "encoded": report.encoded,
                         "reused": report.reused}
            else:
                rows = embed_texts(texts, settings, ref, partitions).collect()
                found = {"texts": len(rows), "encoded": len(rows), "reused": 0}
    finally:
        texts.unpersist()
    lookup = {r["text_digest"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}
    return lookup, {**found, "store": store, "precision": settings.precision}


def check_chat_template(samples: pd.DataFrame, model: ModelRef, flag: str) -> None:
    """Raises ``ValueError`` unless the samples' prompts were rendered with ``model``'s chat
    template: an LLM must not be trained on another model's chat format."""
    from transformers import AutoTokenizer

    from grouprank.prompts import chat_template_digest

    if "chat_template" not in samples:
        raise ValueError(
            "the samples table does not record its chat template (written by an older version); "
            f"synthesize again with --chat-model {model.spec}"
        )
    expected = chat_template_digest(AutoTokenizer.from_pretrained(model.path()))
    found = sorted(set(samples["chat_template"]))
    if found != [expected]:
        raise ValueError(
            f"the samples' prompts were rendered with chat template(s) {found}, but {flag} "
            f"{model.spec} uses {expected}; synthesize them again with --chat-model {model.spec}"
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
        return EncoderTrainConfig(save_every=job.save_every, context_top=job.feedback_top,
                                  score_augment=job.score_augment,
                                  late_interaction=job.late_interaction,
                                  late_windows=job.late_windows, **common)
    from grouprank.training.llm import LLMTrainConfig

    if job.epochs:
        common["epochs"] = job.epochs
    if rl is not None:
        common["clip_epsilon"] = rl.clip
    return LLMTrainConfig(
        lora_rank=job.lora_rank, lora_alpha=job.lora_alpha, full_finetune=job.full_finetune,
        save_steps=job.save_every, **common,
    )


def train(
    stage: str, samples: pd.DataFrame, model: ModelRef, output: str, config,
    vectors: dict[str, np.ndarray] | None = None,
) -> dict:
    """Runs one stage of one backbone in this process (the function TorchDistributor ships).
    ``vectors`` (group encoder): sha256(text) -> embedding of every text the trainer reads."""
    if backbone_of(model) == GROUP_ENCODER:
        from grouprank.training import group_encoder as trainer

        run = trainer.train_sft if stage == "sft" else trainer.train_rl
        return run(samples, model, output, config, vectors=vectors)
    from grouprank.training import llm as trainer  # type: ignore[no-redef]

    run = trainer.train_sft if stage == "sft" else trainer.train_rl
    return run(samples, model, output, config)


def check(job: TrainJob, model: str, rl: RLOptions | None = None) -> ModelRef:
    """Fails on bad flags before any Spark work: the samples table, the model, the options.
    Returns the model resolved (``grouprank.models.base_ref``), the one place it is parsed."""
    from jobs.tables import check_table_ref

    check_table_ref(job.samples, "--samples")
    ref = base_ref(model)
    if job.embedding_store:
        from jobs.embeddings import store_refusal

        check_table_ref(job.embedding_store, "--embedding-store")
        if backbone_of(ref) != GROUP_ENCODER:
            raise ValueError(store_refusal(ref))
    config_for(backbone_of(ref), job, rl)
    if rl is not None and ref.kind not in (GROUP_ENCODER_KIND, CAUSAL_LM):
        raise ValueError(f"--init {model!r} is not a group-encoder checkpoint or an LLM but a "
                         "sentence encoder with no head: train-rl starts from a train-sft output")
    return ref


def launch(stage: str, job: TrainJob, model: str, rl: RLOptions | None = None) -> dict:
    """Reads the samples and trains, in-process or through TorchDistributor; returns the summary."""
    from jobs.session import get_session

    started = time.time()
    ref = check(job, model, rl)
    backbone = backbone_of(ref)
    config = config_for(backbone, job, rl)
    spark = get_session(f"grouprank-train-{stage}")
    frame = samples_frame(spark, job.samples, job.run_date)
    samples = collect_samples(frame, job.samples, job.run_date)
    split = "sft" if stage == "sft" else "rl"
    if not (samples["split"] == split).any():
        raise ValueError(f"--samples {job.samples!r} holds no {split!r} samples")
    vectors, embedded = None, {}
    if backbone == GROUP_ENCODER:
        top = ref.encoder.feedback_top if ref.kind == GROUP_ENCODER_KIND else job.feedback_top
        split_rows = frame.where(f"split = '{split}'")
        vectors, embedded = embed_samples(spark, split_rows, ref, top, job.embedding_store)
    else:
        check_chat_template(samples, ref, "--base" if stage == "sft" else "--init")
    if job.num_processes:
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(
            num_processes=job.num_processes, local_mode=job.local_mode, use_gpu=job.use_gpu
        )
        summary = distributor.run(train, stage, samples, ref, job.output, config, vectors)
    else:
        summary = train(stage, samples, ref, job.output, config, vectors)
    summary = {"job": f"train-{stage}", "backbone": backbone, "model": model,
               "model_digest": ref.digest, "output": job.output,
               "total_seconds": round(time.time() - started, 1),
               **{k: v for k, v in summary.items() if k != "curve"}, "embeddings": embedded}
    return summary


def headline(summary: dict) -> str:
    """Which backbone was trained from what, into where."""
    stage = summary["job"].removeprefix("train-")
    return (f"trained {summary['backbone']} ({stage}) from {summary['model']} into "
            f"{summary['output']} in {summary['total_seconds']} s")

