"""A group-encoder checkpoint's config (``grouprank.json``), readable without torch.

The reranking job's driver resolves ``--model`` (``grouprank.models.model_ref``) from this alone,
so it never imports torch: only the Python workers that score do (``grouprank.backends.
group_encoder``, which re-exports everything here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from grouprank.fusion import FusionRule

CONFIG_FILE = "grouprank.json"
HEAD_FILE = "head.safetensors"
KIND = "group-encoder"
SHIPPED_ENCODER = "minilm"


@dataclass(frozen=True)
class GroupEncoderConfig:
    """The architecture of a group-encoder checkpoint (saved as ``grouprank.json``)."""

    # Always "group-encoder": tells the model loader which backbone a directory holds.
    kind: str = KIND
    # Sentence encoder: "minilm" (the package-shipped all-MiniLM-L6-v2) or a directory.
    encoder: str = SHIPPED_ENCODER
    # The encoder's embedding size.
    embedding_dim: int = 384
    # Width of the cross-document Transformer.
    hidden: int = 128
    # Transformer layers across the group (0 = pointwise: no document sees another).
    layers: int = 2
    # Attention heads per layer.
    heads: int = 4
    # Dropout inside the Transformer while training.
    dropout: float = 0.1
    # Tokens per document the encoder reads (MiniLM was trained with 256).
    max_doc_tokens: int = 256
    # The reranking job's fusion weight when --fusion-weight is not given: the head already reads
    # the first-stage score, so fusing it in again only double-counts it.
    fusion_weight: float = 1.0
    # When set, the job's fusion weight is instead set per table by its first stage's mean
    # agreement with the encoder (``grouprank.fusion.agreement_weight`` at this reliability):
    # lean on the head over a weak first stage, defer to a strong one. ``fusion_weight`` stays
    # the fallback where no agreement can be measured (every query under 3 documents).
    fusion_reliability: float | None = None
    # Or (instead of ``fusion_reliability``) the weight is a logistic step in that agreement:
    # 1/2 at ``fusion_center``, the head alone below it, the first stage above
    # (``grouprank.fusion.logistic_weight``; ``fusion_slope`` sets how fast).
    fusion_center: float | None = None
    fusion_slope: float | None = None
    # With either rule: at or above this agreement the first stage is taken to be the encoder's
    # own ranking (its cosine, which the head already reads), so fusing it in adds nothing the
    # head lacks and the head scores alone (weight 1). None: the rule alone.
    fusion_echo: float | None = None
    # Whether the head also reads each document's first-stage rank in the query's whole list
    # (``GroupInput.first_stage_rank``); checkpoints from before it was a feature read only the
    # scores normalised within the group.
    rank_features: bool = False
    # Pseudo-relevance feedback: the mean embedding of the query's top this many documents (by
    # ``feedback_order``: first-stage rank and cosine fused) is the query's feedback vector, and
    # each document's cosine to it is a feature (0 = off). The reranking job computes the vector
    # over the whole candidate list (``GroupInput.context_vector``).
    context_top: int = 0
    # Whether the head reads how far the query's first stage agrees with the encoder: the
    # correlation of log first-stage rank and log cosine rank over the query's whole list
    # (``first_stage_agreement``). A first stage that agrees more with the encoder is the
    # stronger one more often, so the head can learn how far to defer to it.
    agreement_feature: bool = False
    # Whether the head reads each document's late-interaction score: the encoder's MaxSim of
    # query and document token states (``grouprank.late_interaction``), which the reranking
    # job's embedding stage gives from the pass that pools the document's vector (the scorer
    # computes it for documents that arrive without one).
    late_interaction: bool = False
    # Windows of ``max_doc_tokens`` that MaxSim reads per document: a longer document's tokens
    # are cut into consecutive windows, each encoded on its own, and their token states joined
    # (``grouprank.late_interaction.text_windows``). 1: the first ``max_doc_tokens`` tokens, the
    # same text the pooled vector reads. The pooled vector is the first window's either way.
    late_windows: int = 1
    # The reranking job's --repeats when it is not given: groupings of each query's list whose
    # scores are averaged. Each costs one head pass over vectors the job embeds once.
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.kind != KIND:
            raise ValueError(f"not a group-encoder config (kind={self.kind!r})")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.late_windows < 1:
            raise ValueError(f"late_windows must be >= 1, got {self.late_windows}")
        FusionRule.from_config(self)  # raises for a rule that cannot be used


def is_group_encoder_dir(path: str | Path) -> bool:
    """True if ``path`` is a group-encoder checkpoint directory."""
    config = Path(path).expanduser() / CONFIG_FILE
    if not config.is_file():
        return False
    return json.loads(config.read_text()).get("kind") == KIND


def load_config(path: str | Path) -> GroupEncoderConfig:
    """The architecture saved in a checkpoint's ``grouprank.json``."""
    return GroupEncoderConfig(**json.loads((Path(path).expanduser() / CONFIG_FILE).read_text()))
