"""Typed settings of the reranking job; the command line is built from these fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

Mode = Literal["direct", "reason"]
DuplicatePolicy = Literal["error", "keep-best"]
Paradigm = Literal["groupwise", "pointwise", "listwise"]
PointwiseScorer = Literal["yesno", "score"]
Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class RerankSettings:
    """How candidates are grouped, scored and fused. Defaults follow the paper's released setup."""

    # "default" (the shipped MiniLM group encoder), "smollm2" (the embedded SmolLM2-135M LLM), a
    # Hugging Face causal LM directory, or a checkpoint of `grouprank train-sft`/`train-rl`.
    model: str = "default"
    # Target documents per group; a query's candidates are split into ceil(n / group_size)
    # groups of balanced size (45 at 20 -> 15/15/15).
    group_size: int = 20
    # Test-time scaling: reshuffle into new groups this many times and average the scores.
    repeats: int = 1
    # final = w * model_score / 10 + (1 - w) * minmax(first-stage score); 1 = model alone.
    # Unset: the model's own: 0.6 (the authors' released setting) for LLMs, a group-encoder
    # checkpoint's `fusion_weight` (1.0 for the shipped default, which reads the first stage).
    fusion_weight: float | None = None
    # direct: read the 0-10 score distribution at each answer slot; reason: free generation.
    mode: Mode = "direct"
    # Seed of the random group assignment: same seed, same groups.
    seed: int = 0
    # Prompt template file (TOML); None uses grouprank/templates/groupwise.toml.
    prompt_template: str | None = None
    # Each document's text is cut to this many tokens before it enters the prompt.
    max_doc_tokens: int = 256
    # Reason mode: generation budget per group.
    max_new_tokens: int = 768
    # Padded tokens per forward batch of groups (bounds activation memory).
    batch_tokens: int = 16384
    # Duplicate (qid, docid) rows: fail, or keep the row with the best first-stage score.
    on_duplicates: DuplicatePolicy = "error"
    # Fail the job when more than this fraction of scored documents has no usable model score.
    max_unparsed_fraction: float = 1.0
    # groupwise: score groups of documents together (GroupRank); pointwise: one call per document;
    # listwise: RankGPT-style sliding window over the first-stage order, generating a permutation.
    paradigm: Paradigm = "groupwise"
    # Pointwise: yesno = 10 * P(yes) / (P(yes) + P(no)) under a relevance-judgement prompt;
    # score = expected 0-10 score read at the answer slot, as in groupwise direct mode.
    pointwise_scorer: PointwiseScorer = "yesno"
    # Listwise: documents per window.
    window_size: int = 20
    # Listwise: how far the window moves up the list each time (overlap = size - step).
    window_step: int = 10
    # Allow model code from the model directory to run (off unless the user asks).
    trust_remote_code: bool = False
    # Partitions of group rows fed to the scoring UDF; 0 = Spark's default parallelism.
    partitions: int = 0
    # Sentence-encoder precision (group-encoder models): auto = bf16 on GPUs and on CPUs with
    # native bf16 (AVX512_BF16/AMX), else fp32. The job resolves auto once, on the driver, and
    # records the choice in the settings digest. The group head always runs in fp32.
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.group_size < 1:
            problems.append(f"group_size must be >= 1, got {self.group_size}")
        if self.repeats < 1:
            problems.append(f"repeats must be >= 1, got {self.repeats}")
        if self.fusion_weight is not None and not 0.0 <= self.fusion_weight <= 1.0:
            problems.append(f"fusion_weight must be in [0, 1], got {self.fusion_weight}")
        if self.mode not in ("direct", "reason"):
            problems.append(f"mode must be 'direct' or 'reason', got {self.mode!r}")
        if self.paradigm not in ("groupwise", "pointwise", "listwise"):
            problems.append(
                f"paradigm must be 'groupwise', 'pointwise' or 'listwise', got {self.paradigm!r}"
            )
        if self.pointwise_scorer not in ("yesno", "score"):
            problems.append(
                f"pointwise_scorer must be 'yesno' or 'score', got {self.pointwise_scorer!r}"
            )
        if self.window_size < 2:
            problems.append(f"window_size must be >= 2, got {self.window_size}")
        if not 1 <= self.window_step <= self.window_size:
            # A step beyond the window would leave documents no window ever compares.
            problems.append(
                f"window_step must be in [1, window_size={self.window_size}], "
                f"got {self.window_step}"
            )
        if self.on_duplicates not in ("error", "keep-best"):
            problems.append(f"on_duplicates must be 'error' or 'keep-best', got {self.on_duplicates!r}")
        if self.max_doc_tokens < 1:
            problems.append(f"max_doc_tokens must be >= 1, got {self.max_doc_tokens}")
        if not 0.0 <= self.max_unparsed_fraction <= 1.0:
            problems.append(
                f"max_unparsed_fraction must be in [0, 1], got {self.max_unparsed_fraction}"
            )
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.partitions < 0:
            problems.append(f"partitions must be >= 0, got {self.partitions}")
        if problems:
            raise ValueError("invalid rerank settings: " + "; ".join(problems))

    def digest(self, template_text: str, model_digest: str) -> str:
        """A short, stable hash of everything that determines the scores: the settings, the
        prompt template's text and the model's weights (``ModelRef.digest``).

        Example:
            >>> RerankSettings().digest("t", "m1") == RerankSettings().digest("t", "m1")
            True
            >>> RerankSettings().digest("t", "m1") == RerankSettings().digest("t", "m2")
            False
        """
        payload = dataclasses.asdict(self)
        payload.pop("partitions")  # execution detail, does not change results
        payload["prompt_template"] = hashlib.sha256(template_text.encode()).hexdigest()
        payload["model_digest"] = model_digest
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
