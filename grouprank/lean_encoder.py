"""A BERT sentence encoder in plain torch + ``tokenizers`` + ``safetensors`` (issue 18: start-up).

Importing ``sentence_transformers`` pulls in torch, transformers' model machinery, sklearn and
more; in a fresh Spark Python worker that import is most of the time a small job takes. This
module reproduces exactly the sentence-transformers directories it can (``lean_mismatch`` says
which: modules Transformer -> Pooling (mean only) [-> Normalize], a ``bert`` config with absolute
positions and GELU, ``tokenizer.json`` and ``model.safetensors``) with only torch, ``tokenizers``
and ``safetensors``; ``grouprank.retrieval.load_encoder`` falls back to sentence-transformers for
anything else. Inference only (eval mode, no dropout); bf16 autocast works as for any torch model.
No Spark import.

    encoder = LeanEncoder.load(encoder_dir())
    encoder.embed_batch(["a query", "a document"]).shape  # torch.Size([2, 384]), normalised
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from grouprank.encoding import padded_ids

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
# Keys a BERT checkpoint holds that the encoder does not use (the [CLS] pooler, a buffer).
_UNUSED_KEYS = ("pooler.", "embeddings.position_ids")


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face ``config.json`` a BERT encoder needs."""

    vocab_size: int  # word-piece vocabulary
    hidden_size: int  # width of every layer (MiniLM: 384)
    num_hidden_layers: int  # transformer blocks (MiniLM: 6)
    num_attention_heads: int  # heads per block (MiniLM: 12)
    intermediate_size: int  # feed-forward width (MiniLM: 1536)
    max_position_embeddings: int  # learned absolute positions
    type_vocab_size: int  # segment embeddings (all inputs use segment 0)
    layer_norm_eps: float  # LayerNorm epsilon (MiniLM: 1e-12)
    pad_token_id: int = 0  # id used for padding (masked out; its value never reaches the output)


@dataclass(frozen=True)
class _Spec:
    """What a matching directory resolves to."""

    config: BertConfig
    max_seq_length: int
    normalize: bool


def lean_mismatch(path: str | Path) -> str | None:
    """Why ``LeanEncoder`` cannot reproduce the sentence-transformers model in ``path``, or None.

    Example:
        >>> lean_mismatch("/nonexistent")
        'no modules.json'
    """
    try:
        _spec(Path(path).expanduser())
    except _Mismatch as e:
        return str(e)
    return None


class _Mismatch(Exception):
    pass


def _read_json(path: Path) -> dict | list:
    if not path.is_file():
        raise _Mismatch(f"no {path.name}")
    return json.loads(path.read_text())


def _spec(path: Path) -> _Spec:
    modules = _read_json(path / "modules.json")
    types = [m.get("type") for m in modules]
    if types not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        raise _Mismatch(f"modules {types} are not Transformer, Pooling[, Normalize]")
    if modules[0].get("path", "") != "":
        raise _Mismatch("the Transformer module is not at the directory's root")
    for name in ("model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise _Mismatch(f"no {name}")
    st = _read_json(path / "sentence_bert_config.json")
    if set(st) - {"max_seq_length", "do_lower_case"} or st.get("do_lower_case"):
        raise _Mismatch(f"sentence_bert_config.json {st} has settings beyond max_seq_length")
    if (path / "config_sentence_transformers.json").is_file():
        st_config = _read_json(path / "config_sentence_transformers.json")
        if st_config.get("default_prompt_name"):
            raise _Mismatch("a default prompt is set")
    tokenizer_class = _tokenizer_class(path)
    if tokenizer_class not in (None, "BertTokenizer", "BertTokenizerFast"):
        raise _Mismatch(f"tokenizer class {tokenizer_class}")
    hf = _read_json(path / "config.json")
    if hf.get("model_type") != "bert":
        raise _Mismatch(f"model_type {hf.get('model_type')!r} is not 'bert'")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise _Mismatch(f"position_embedding_type {hf['position_embedding_type']!r}")
    if hf.get("hidden_act") != "gelu":
        raise _Mismatch(f"hidden_act {hf.get('hidden_act')!r} is not 'gelu'")
    config = BertConfig(**{k: hf[k] for k in BertConfig.__dataclass_fields__ if k in hf})
    if config.hidden_size % config.num_attention_heads:
        raise _Mismatch("hidden_size is not a multiple of num_attention_heads")
    pooling = _read_json(path / modules[1]["path"] / "config.json")
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        raise _Mismatch(f"pooling {sorted(modes)} is not mean pooling alone")
    if pooling.get("word_embedding_dimension", config.hidden_size) != config.hidden_size:
        raise _Mismatch("pooling dimension differs from hidden_size")
    _check_keys(path / "model.safetensors", config)
    max_len = st.get("max_seq_length") or config.max_position_embeddings
    return _Spec(config, min(max_len, config.max_position_embeddings), len(modules) == 3)


def _tokenizer_class(path: Path) -> str | None:
    file = path / "tokenizer_config.json"
    return json.loads(file.read_text()).get("tokenizer_class") if file.is_file() else None


def _check_keys(weights: Path, config: BertConfig) -> None:
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        found = {_strip_prefix(k) for k in f.keys() if not _strip_prefix(k).startswith(_UNUSED_KEYS)}
    with _skeleton():  # names only: no memory, no random init
        expected = set(_Bert(config).state_dict())
    if found != expected:
        missing, extra = sorted(expected - found)[:3], sorted(found - expected)[:3]
        raise _Mismatch(f"weights differ from BERT's (missing {missing}, unexpected {extra})")


# The init functions BERT's modules call in their constructors (Linear, Embedding, LayerNorm).
_INITS = ("normal_", "uniform_", "kaiming_uniform_", "ones_", "zeros_")


@contextlib.contextmanager
def _skeleton() -> Iterator[None]:
    """Modules built on the meta device (shapes only, no memory) without their random init. On
    meta tensors the init ops run torch's Python reference kernels, whose first import cost a
    fresh worker ~5 s before it embedded anything (docs/BENCHMARKS.md, issue 18). The init
    functions are swapped module-wide for the moment, so only meta tensors skip them: a module
    another thread builds meanwhile on a real device is still initialised."""
    saved = {name: getattr(nn.init, name) for name in _INITS}

    def skipped(init):
        def on_meta_skip(tensor, *args, **kwargs):
            return tensor if tensor.is_meta else init(tensor, *args, **kwargs)
        return on_meta_skip

    for name, init in saved.items():
        setattr(nn.init, name, skipped(init))
    try:
        with torch.device("meta"):
            yield
    finally:
        for name, init in saved.items():
            setattr(nn.init, name, init)


def _strip_prefix(key: str) -> str:
    return key.removeprefix("bert.")


class _Layer(nn.Module):
    """One post-LayerNorm BERT block; parameter names follow Hugging Face's ``BertLayer``."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(c.hidden_size, c.hidden_size))
        self.attention.output = _DenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = _DenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        attn = self.attention.self

        def split(linear: nn.Linear) -> torch.Tensor:
            return linear(x).view(batch, length, self.heads, -1).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            split(attn.query), split(attn.key), split(attn.value), attn_mask=keep
        )
        context = context.transpose(1, 2).reshape(batch, length, width)
        x = self.attention.output(context, x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _DenseNorm(nn.Module):
    """Linear, then LayerNorm of the sum with the residual (BERT's ``*Output`` modules)."""

    def __init__(self, width_in: int, width_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, width_out)
        self.LayerNorm = nn.LayerNorm(width_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Bert(nn.Module):
    """BERT's embeddings and encoder stack (no pooler), token states out."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.embeddings.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.embeddings.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.embeddings.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (e.word_embeddings(input_ids) + e.position_embeddings(positions)[None]
             + e.token_type_embeddings(torch.zeros_like(input_ids)))
        x = e.LayerNorm(x)
        keep = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, keys): True = attend
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x


class LeanEncoder(nn.Module):
    """A sentence encoder for the directories ``lean_mismatch`` accepts; implements
    ``grouprank.encoding.SentenceEncoder``. Load with ``LeanEncoder.load``.

    ``max_seq_length`` (settable) is the token limit, special tokens included, as in
    sentence-transformers; ``embed_batch`` pads a batch to its longest member.
    """

    def __init__(self, spec: _Spec, tokenizer) -> None:
        super().__init__()
        self.bert = _Bert(spec.config)
        self.max_seq_length = spec.max_seq_length
        self.dimension = spec.config.hidden_size
        self.normalize = spec.normalize
        self.pad_id = spec.config.pad_token_id
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> LeanEncoder:
        """The encoder in ``path`` on ``device``, in eval mode; raises ``ValueError`` naming the
        reason when ``lean_mismatch(path)`` is not None."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = Path(path).expanduser()
        try:
            spec = _spec(path)
        except _Mismatch as e:
            raise ValueError(f"{path} is not a directory LeanEncoder reproduces: {e}") from None
        with _skeleton():  # the weights come from the file: skip the random init
            encoder = cls(spec, Tokenizer.from_file(str(path / "tokenizer.json")))
        state = {_strip_prefix(k): v for k, v in load_file(str(path / "model.safetensors")).items()}
        encoder.bert.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith(_UNUSED_KEYS)}, assign=True
        )
        return encoder.to(device).eval()

    @property
    def device(self) -> torch.device:
        return self.bert.embeddings.word_embeddings.weight.device

    def token_ids(self, texts: Sequence[str], limit: int | None = None) -> list[list[int]]:
        """Each text's ids: special tokens added, cut at ``limit`` (default ``max_seq_length``),
        not padded (what a Hugging Face fast tokenizer gives with ``truncation=True,
        max_length=limit``)."""
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(limit or self.max_seq_length)
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch's last-layer token states (batch, tokens, hidden) and attention mask
        (batch, tokens), special tokens included, padded to its longest text, on ``device``."""
        return self.states_of_ids(self.token_ids(texts))

    def embed_ids(
        self, ids: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``embed_with_states`` of sequences already tokenised (special tokens included, each
        within ``max_seq_length``)."""
        return self._pooled(*self.states_of_ids(ids))

    def states_of_ids(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``token_states`` of sequences already tokenised."""
        input_ids, mask = padded_ids(ids, self.pad_id, self.device)
        return self.bert(input_ids, mask), mask

    def embed_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of one batch (mean of the token states over the attention mask, then
        normalised if the directory has a Normalize module), on ``device``."""
        return self.embed_with_states(texts)[0]

    def embed_with_states(
        self, texts: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``embed_batch`` and ``token_states`` of one batch from one forward pass."""
        return self._pooled(*self.token_states(texts))

    def _pooled(self, states: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weight).sum(1) / weight.sum(1).clamp(min=1e-9)
        return (F.normalize(pooled, p=2, dim=1) if self.normalize else pooled), states, mask
