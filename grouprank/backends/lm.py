"""What every causal-LM scorer shares: loading, chat prompts, truncation, padded batches, a step.

The groupwise, pointwise and listwise scorers differ only in what they ask and how they read the
answer; the model and tokenizer are loaded, prompted and batched here, one way.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Sequence

import torch


class LoadedCausalLM:
    """A loaded model, its tokenizer and prompt template, and the limits every paradigm shares.

    The scorers of each paradigm extend it; it is not a ``GroupScorer`` itself.

    Example:
        >>> model, tokenizer = load_causal_lm(path)  # doctest: +SKIP
        >>> LoadedCausalLM(model, tokenizer, template, name="m").truncate(["a"])  # doctest: +SKIP
        ['a']
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        template,
        *,
        name: str,
        max_doc_tokens: int = 256,
        batch_tokens: int = 16384,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        # A short identifier written to the output's `model` column.
        self.name = name
        self.max_doc_tokens = max_doc_tokens
        # Padded tokens per forward batch (bounds activation memory).
        self.batch_tokens = batch_tokens
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._pad = tokenizer.pad_token_id
        self._device = next(model.parameters()).device
        self._cache_arg = cache_argument(model)

    def truncate(self, texts: Sequence[str]) -> list[str]:
        """Cuts each text to ``max_doc_tokens`` tokens; texts within budget are kept verbatim."""
        return truncate_texts(self.tokenizer, texts, self.max_doc_tokens)


def load_causal_lm(
    path: str | Path, device: str = "cpu", trust_remote_code: bool = False
) -> tuple[torch.nn.Module, object]:
    """Loads a model directory (safetensors only) onto ``device``: bf16 on GPU, fp32 on CPU.

    The tokenizer pads on the left (every row's last position is its next-token position) and
    falls back to EOS as the pad token.

    Example:
        >>> model, tokenizer = load_causal_lm(default_model_dir())  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    ).to(device)
    return model.eval(), tokenizer


def chat_prompt_ids(
    tokenizer, messages: list[dict[str, str]], answer_prefix: str = ""
) -> list[int]:
    """Token ids of a chat prompt with the assistant turn opened and ``answer_prefix`` written.

    Without a chat template the turns are joined by blank lines and the tokenizer's own special
    tokens (BOS) are added instead.

    Example:
        >>> chat_prompt_ids(tokenizer, [{"role": "user", "content": "hi"}], "[")  # doctest: +SKIP
        [1, 9690, ...]
    """
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    text += answer_prefix
    return tokenizer(text, add_special_tokens=not tokenizer.chat_template).input_ids


def truncate_texts(tokenizer, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Cuts each text to ``max_tokens`` tokens; texts within budget are kept verbatim.

    Example:
        >>> truncate_texts(tokenizer, ["a b c d e f"], 2)  # doctest: +SKIP
        ['a b']
    """
    encoded = tokenizer(
        list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens
    ).input_ids
    return [
        tokenizer.decode(ids, skip_special_tokens=True) if len(ids) >= max_tokens else text
        for text, ids in zip(texts, encoded)
    ]


def cache_argument(model: torch.nn.Module) -> str:
    """The name of the KV-cache argument of ``model.forward``.

    transformers 5 renamed the argument and output field from ``past_key_values`` to ``cache``.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def forward_step(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, cache, cache_arg: str
) -> tuple[torch.Tensor, object]:
    """One forward step with the KV cache; returns (last-position logits, updated cache).

    Positions follow the attention mask, so left padding and tokens masked out after the fact
    leave no gap in the positions of real tokens.
    """
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
    extra = {cache_arg: cache}
    if _keeps_last_logits_only(type(model)):
        # Only the last position is read: skip the vocabulary projection of every other position
        # (a fifth of a small model's prefill compute, and batch x length x vocab floats).
        extra["logits_to_keep"] = 1
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra
    )
    return out.logits[:, -1, :], out[cache_arg]


@functools.cache
def _keeps_last_logits_only(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def generate_greedy(
    model: torch.nn.Module, tokenizer, prompts: list[list[int]], max_new_tokens: int
) -> list[list[int]]:
    """Greedy continuations of a batch of prompts, each cut after its first EOS.

    Example:
        >>> generate_greedy(model, tokenizer, [prompt_a, prompt_b], 32)  # doctest: +SKIP
        [[791, 374, 2], [58, 17, 60, 871, 58, 16, 60]]
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, device)
    generated = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )[:, ids.shape[1] :]
    eos = tokenizer.eos_token_id
    continuations = []
    for tokens in generated.tolist():
        if eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
        continuations.append(tokens)
    return continuations


def left_pad(
    sequences: list[list[int]], pad: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pads token id lists into (ids, attention mask) tensors on ``device``.

    Example:
        >>> ids, mask = left_pad([[5, 6], [7]], pad=0, device="cpu")
        >>> ids.tolist(), mask.tolist()
        ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def token_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped into batches whose padded size (rows x longest) stays within ``budget``.

    Sorting by length keeps padding small; a prompt longer than the budget runs alone.

    Example:
        >>> token_batches([5, 100, 6, 7], budget=20)
        [[0, 2], [3], [1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
