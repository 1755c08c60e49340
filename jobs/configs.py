"""The config dataclasses of every stage: each field is one command-line flag (``--field-name``),
one notebook widget, one key of the pipeline's YAML section and one bundle task parameter, with
the comment above it as its help.

They live here, apart from the stages' Spark code, for the same reason tables live in
``schemas/``: they are the contract people write against, and reading them must be instant.
``grouprank <job> --help`` builds its parser from this module without importing Spark, pandas,
numpy or torch. The model-side settings (``RerankSettings``, ``SynthesisSettings``) are in
``grouprank/settings.py``, because the Python workers read them too. Which stage takes which
dataclasses is written once, in the registry (``jobs/stages/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grouprank.settings import ALL_TERMS, DEFAULT_ALPHA, Method, Precision


@dataclass(frozen=True)
class RerankJob:
    """Where the reranking job reads and writes."""

    # Candidates table: a Delta or Parquet path, or a metastore table name.
    candidates: str
    # Output Delta table (path or table name); the run date's partition is replaced.
    output: str
    # Run date (YYYY-MM-DD) written to the run_date partition column.
    run_date: str
    # Allow an empty candidates table to replace a run date's non-empty partition (otherwise an
    # error: an upstream failure must not wipe a night's results).
    allow_empty: bool = False
    # Delta table (path or name) of sentence-encoder embeddings shared across runs and jobs
    # (group-encoder models): texts found there are not encoded again, new ones are added. A
    # head that reads MaxSim keeps each (query, text) pair's in the table named the same plus
    # _maxsim.
    embedding_store: str | None = None
    # Delta table (path or name) of group scores shared across runs and jobs (LLM models): a
    # group read before (same query, texts, order, weights, prompt, settings) is not scored again.
    score_cache: str | None = None


@dataclass(frozen=True)
class EvaluateJob:
    """What to score, against what, and where the metrics go."""

    # Run: a reranked or candidates table (path or name), a TREC run file or a rank_llm JSONL file.
    run: str
    # Qrels: a qrels table (path or name) or a TREC qrels file.
    qrels: str
    # Output metrics Delta table (path or name); the (run date, name) rows are replaced.
    output: str
    # Run date (YYYY-MM-DD) of the evaluated run.
    run_date: str
    # Name stored with the metrics; defaults to the run's file or table name.
    name: str | None = None
    # Comma-separated metrics: ndcg@k, recall@k, p@k, mrr@k, map[@k].
    metrics: str = "ndcg@10,recall@10,recall@100,mrr@10,map"
    # Averaging denominator: every judged query (trec_eval -c) or only judged queries in the run.
    denominator: Literal["qrels", "run"] = "qrels"
    # Queries table whose excluded_ids are dropped from the run before scoring (BRIGHT).
    queries: str | None = None
    # Name of a run already in the output table (same run date) to compare this one with.
    baseline: str | None = None
    # Paired significance test of the comparison with --baseline.
    test: Literal["randomisation", "t-test"] = "randomisation"
    # Model-score bins of the calibration rows (share relevant per bin, ECE); 0: none. Needs a
    # run with model_score (a reranked table).
    calibration_bins: int = 0


@dataclass(frozen=True)
class RetrieveJob:
    """What to index, which queries to run and where the candidates go."""

    # Corpus table (docid, text[, title]): a Delta or Parquet path, or a table name.
    corpus: str
    # Queries table (qid, query[, excluded_ids]): a path or a table name.
    queries: str
    # Output candidates Delta table (path or name); replaced as a whole.
    output: str
    # bm25 (bm25s, English stems and stop words), dense (all-MiniLM-L6-v2) or hybrid.
    method: Method = "bm25"
    # Documents kept per query.
    top_k: int = 100
    # Hybrid weight of min-max normalised BM25 (the rest is dense).
    alpha: float = DEFAULT_ALPHA
    # Partitions the queries are spread over (0 = Spark's default parallelism).
    partitions: int = 0
    # Also write the candidates as a TREC run file here (collected on the driver).
    export_trec: str | None = None
    # Also write the candidates as rank_llm JSONL requests here (collected on the driver).
    export_rank_llm: str | None = None


@dataclass(frozen=True)
class IngestJob:
    """Which benchmark files to read and where the three tables go."""

    # Layout of the source folder.
    format: Literal["trec", "beir", "bright", "r2med", "scifact", "cacm"]
    # Local folder holding the benchmark's files (nothing is downloaded).
    source: str
    # Output folder (tables go in OUTPUT/corpus, ...) or database name (OUTPUT.corpus, ...).
    output: str
    # BRIGHT subset (required, e.g. biology), R2MED subset folder, BEIR qrels split (test) or
    # SciFact claims split (train).
    subset: str | None = None


@dataclass(frozen=True)
class SynthesizeJob:
    """Where the synthesis job reads and writes, and who labels the pools."""

    # Candidates table: a Delta or Parquet path, or a metastore table name.
    candidates: str
    # Output samples Delta table (path or name); the run date's partition is replaced.
    output: str
    # Run date (YYYY-MM-DD) written to the run_date partition column.
    run_date: str
    # Pointwise teacher SPEC: first-stage | encoder[:DIR] | llm:MODEL:PARADIGM[:SCORER].
    pointwise_teacher: str = "encoder"
    # Listwise teacher SPEC (same forms).
    listwise_teacher: str = "first-stage"
    # Causal LM whose chat template formats the SFT prompts ('smollm2' = the embedded one).
    chat_model: str = "smollm2"
    # Documents are cut to this many tokens in the SFT prompts, as at inference.
    max_doc_tokens: int = 256
    # Partitions of query rows fed to the teachers; 0 = Spark's default parallelism.
    partitions: int = 0
    # Encoder teacher: Delta table (path or name) of sentence-encoder embeddings, the one rerank's
    # --embedding-store writes: texts found there are not encoded again, new ones are added.
    embedding_store: str | None = None
    # Encoder teacher's precision: auto = bf16 on GPUs and on CPUs with native bf16, else fp32.
    # bf16 vectors depend slightly on their batch; fp32 gives the same samples with or without
    # the store.
    precision: Precision = "auto"


@dataclass(frozen=True)
class PublishJob:
    """What to publish, where, and the gates it must pass."""

    # Serving index Delta table (path or name); created on the first publish.
    index: str
    # Reranked table (path or name) holding the night; required unless --rollback.
    reranked: str | None = None
    # Run date (YYYY-MM-DD) of the night to publish; required unless --rollback.
    run_date: str | None = None
    # Documents per query in the index.
    top_k: int = 10
    # Drop documents whose 0-10 model score is below this (and unscored ones); none: keep all.
    min_score: float | None = None
    # full: queries the night lacks are deleted from the index; partial: they are kept.
    scope: Literal["full", "partial"] = "full"
    # Gate: largest fraction of documents sent to the model that got no model score.
    max_unscored: float = 0.01
    # Gate: largest share of published queries whose top-k document set changes.
    max_churn: float = 0.5
    # Metrics table (evaluate's output) that the --gate and --max-drop gates read.
    metrics: str | None = None
    # Run name in --metrics to gate on; default: the only name it holds for the run date.
    metrics_name: str | None = None
    # Metric gates on the night's means, comma-separated METRIC>=VALUE, e.g. nDCG@10>=0.40.
    gate: str | None = None
    # Gate: largest drop of each --gate metric from the night the index last published.
    max_drop: float | None = None
    # Publish log Delta table (path or name); default: the index's path or name + _publish_log.
    log: str | None = None
    # Print the changes and the gates, and write nothing.
    dry_run: bool = False
    # Local file to write the committed changes to as JSON lines (qid, rank, docid, score, change).
    export_changes: str | None = None
    # Restore the index to the version before the last publish (Delta RESTORE), and log it.
    rollback: bool = False
    # With --rollback: the index version to restore instead.
    to_version: int | None = None



@dataclass(frozen=True)
class PipelineJob:
    """The pipeline's command line."""

    # Pipeline YAML file.
    config: str
    # Overrides the config's run_date (YYYY-MM-DD).
    run_date: str | None = None


@dataclass(frozen=True)
class DemoJob:
    """Where the demo writes and how much of each list it shows."""

    # Folder for the demo's tables (candidates, reranked), replaced on every run.
    workdir: str = "out/demo"
    # Rows shown per query.
    top: int = 3


@dataclass(frozen=True)
class SetupJob:
    """What the one-time set-up does besides filling the Delta jar cache."""

    # Start a local Spark session from the cache and write and read back a Delta table
    # (--no-check-session only fills the cache).
    check_session: bool = True
    # Write the driver JVM's class archive unless there is one (a minute or two, once): every
    # local job's JVM then starts from it, about 1.5x faster (docs/BENCHMARKS.md).
    jvm_archive: bool = True


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
    # Group encoder: share of samples, drawn afresh each epoch, whose first-stage scores the head
    # sees through a random order-keeping map (as probabilities, exponentials, logs), so it reads
    # any first stage's scores alike; 0 = as given (the shipped default was trained with 0.5).
    score_augment: float = 0.0
    # Group encoder, fresh head: also read each document's late-interaction score, the
    # encoder's MaxSim of query and document token states (grouprank.late_interaction); the
    # scorer computes it from the texts, one more encoder pass per scored document.
    late_interaction: bool = False
    # Group encoder, fresh head with --late-interaction: windows of 256 tokens its MaxSim reads
    # of each document (a longer one is cut into windows, each encoded on its own); 1 = the
    # first 256 tokens, as the pooled vector.
    late_windows: int = 1
    # Group encoder: Delta table (path or name) of sentence-encoder embeddings, the one rerank's
    # --embedding-store writes: texts found there are not encoded again, new ones are added.
    embedding_store: str | None = None
    # Launch through TorchDistributor with this many processes (0 = in this process).
    num_processes: int = 0
    # With TorchDistributor: run on the driver (local) instead of on executors.
    local_mode: bool = True
    # With TorchDistributor: one GPU per process (spark.task.resource.gpu.amount must be set).
    use_gpu: bool = False


@dataclass(frozen=True)
class SFTBase:
    """Where SFT starts."""

    # minilm | a sentence-encoder dir | a group-encoder checkpoint | smollm2 | a causal LM dir.
    base: str


@dataclass(frozen=True)
class RLInit:
    """Where RL starts: the SFT checkpoint (policy and frozen reference)."""

    # A group-encoder checkpoint or a causal LM directory (e.g. train-sft's --output).
    init: str


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
