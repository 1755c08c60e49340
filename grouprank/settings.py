"""Typed settings of the model-side work (reranking, synthesis) and the names they share; no
Spark, numpy or torch import, so every command line can be built from them at once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal, get_args

Mode = Literal["direct", "reason"]
DuplicatePolicy = Literal["error", "keep-best"]
Paradigm = Literal["groupwise", "pointwise", "listwise"]
PointwiseScorer = Literal["yesno", "score"]
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# First-stage retrieval methods (grouprank.retrieval) and the hybrid's BM25 weight.
Method = Literal["bm25", "dense", "hybrid"]
METHODS: tuple[str, ...] = ("bm25", "dense", "hybrid")
DEFAULT_ALPHA = 0.5
# Terms of the group-ranking reward (grouprank.reward).
NDCG, RECALL, ALIGNMENT = "ndcg", "recall", "alignment"
ALL_TERMS = (NDCG, RECALL, ALIGNMENT)


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
    # Unset: the model's own: 1 for LLMs (each repeat is a full model pass); a group encoder's
    # checkpoint `repeats` (3 for the shipped default: its repeats are head passes over vectors
    # embedded once, and the leave-one-collection-out protocol chose 3).
    repeats: int | None = None
    # final = w * model_score / 10 + (1 - w) * (1 - ln(first-stage rank) / ln(candidates));
    # 1 = model alone.
    # Unset: the model's own: 0.6 (the authors' released setting) for LLMs; for a group encoder
    # with a fusion rule (the shipped default), set per table by how far its first stage agrees
    # with the encoder (weak first stage: ~1, strong: ~0.3-0.7, the encoder's own: ~0);
    # otherwise the checkpoint's `fusion_weight`.
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
    # Partitions of group rows fed to the scoring UDF; 0 = one per 1,000 candidates, at most
    # Spark's default parallelism.
    partitions: int = 0
    # Sentence-encoder precision (group-encoder models): auto = bf16 on GPUs and on CPUs with
    # native bf16 (AVX512_BF16/AMX), else fp32. The job resolves auto once, on the driver, and
    # records the choice in the settings digest. The group head always runs in fp32.
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.group_size < 1:
            problems.append(f"group_size must be >= 1, got {self.group_size}")
        if self.repeats is not None and self.repeats < 1:
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
        if self.precision not in PRECISIONS:
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
        return self._hash(dataclasses.asdict(self), template_text, model_digest)

    def scoring_digest(self, template_text: str, model_digest: str) -> str:
        """``digest`` without the settings that never change what one model call returns for a
        given group (how groups are drawn, repeated, fused and checked): the score cache's key,
        so a night with another fusion weight or seed still reuses the groups it has seen.

        Example:
            >>> a, b = RerankSettings(fusion_weight=0.5, seed=3), RerankSettings()
            >>> a.scoring_digest("t", "m") == b.scoring_digest("t", "m") != a.digest("t", "m")
            True
        """
        payload = dataclasses.asdict(self)
        for name in _NOT_SCORING:
            payload.pop(name)
        return self._hash(payload, template_text, model_digest)

    @staticmethod
    def _hash(payload: dict, template_text: str, model_digest: str) -> str:
        payload.pop("partitions", None)  # execution detail, does not change results
        payload["prompt_template"] = hashlib.sha256(template_text.encode()).hexdigest()
        payload["model_digest"] = model_digest
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Settings that decide which groups are formed and what is done with their scores, or that name
# the weights model_digest already identifies: never what one model call gives a group (left
# out of ``RerankSettings.scoring_digest``).
_NOT_SCORING = ("model", "group_size", "repeats", "fusion_weight", "seed", "on_duplicates",
                "max_unparsed_fraction", "trust_remote_code")


@dataclass(frozen=True)
class SynthesisSettings:
    """How pools are drawn, labels fused and samples cut."""

    # Documents per pool: pool_top from the top plus the rest drawn as hard negatives.
    pool_size: int = 50
    # The first-stage top this many are always in the pool.
    pool_top: int = 10
    # Hard negatives are drawn at random from first-stage ranks pool_top+1 .. pool_depth.
    pool_depth: int = 200
    # Fusion weight: S(d) = -beta * log L_p(d) - (1 - beta) * log L_l(d).
    beta: float = 0.5
    # Sub-list sizes, e.g. "5-20" (every size in the range) or "5,10,20".
    group_sizes: str = "5-20"
    # Samples cut from each pool (sizes cycle through a seeded shuffle of group_sizes).
    samples_per_query: int = 4
    # Fraction of queries (not samples) whose samples go to the RL split.
    rl_fraction: float = 0.2
    # Seed of every random choice: pools, sizes, offsets, prompt order, split.
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.pool_top <= self.pool_size:
            problems.append("need 1 <= pool_top <= pool_size")
        if self.pool_depth < self.pool_size:
            problems.append("need pool_depth >= pool_size")
        if not 0.0 <= self.beta <= 1.0:
            problems.append("beta must be in [0, 1]")
        if not 0.0 <= self.rl_fraction <= 1.0:
            problems.append("rl_fraction must be in [0, 1]")
        if self.samples_per_query < 1:
            problems.append("samples_per_query must be >= 1")
        try:
            parse_group_sizes(self.group_sizes)
        except ValueError as err:
            problems.append(str(err))
        if problems:
            raise ValueError("invalid synthesis settings: " + "; ".join(problems))


def parse_group_sizes(text: str) -> list[int]:
    """``"5-20"`` -> 5..20, ``"5,10,20"`` -> [5, 10, 20].

    Example:
        >>> parse_group_sizes("5-8"), parse_group_sizes("20,5,10")
        ([5, 6, 7, 8], [5, 10, 20])
    """
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-"))
            sizes = list(range(lo, hi + 1))
        else:
            sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as err:
        raise ValueError(f"group_sizes {text!r} is not like '5-20' or '5,10,20'") from err
    if not sizes or min(sizes) < 2:
        raise ValueError(f"group_sizes {text!r} must name sizes of at least 2")
    return sizes
