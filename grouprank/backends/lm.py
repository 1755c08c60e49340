"""What every causal-LM scorer shares: loading, chat prompts, truncation, padded batches, a step.

The groupwise, pointwise and listwise scorers differ only in what they ask and how they read the
answer; the model and tokenizer are loaded, prompted and batched here, one way.
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Hashable, Sequence

import torch

log = logging.getLogger(__name__)


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

    Attention runs through PyTorch's fused ``scaled_dot_product_attention`` ("sdpa") where the
    model class supports it, else the model's own default. The tokenizer pads on the left (every
    row's last position is its next-token position) and falls back to EOS as the pad token.

    Example:
        >>> model, tokenizer = load_causal_lm(embedded_llm_dir())  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    options = dict(
        dtype=model_dtype(device), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **options)
    except ValueError as err:  # the model class has no sdpa path (transformers says so)
        log.info("sdpa attention not available for %s (%s): using the model's default", path, err)
        model = AutoModelForCausalLM.from_pretrained(path, **options)
    return model.to(device).eval(), tokenizer


def model_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a GPU, fp32 elsewhere: the dtype every scorer runs its model in.

    Example:
        >>> model_dtype("cuda:0"), model_dtype("cpu")
        (torch.bfloat16, torch.float32)
    """
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


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


def prefill(
    model: torch.nn.Module, prompts: list[list[int]], pad: int, cache_arg: str
) -> tuple[torch.Tensor, torch.Tensor, object]:
    """The first forward pass of a batch, computing each shared prompt prefix once.

    Groups of one query share a long prefix: the system turn and the query, when the template
    puts the query before the documents. Rows are clustered by the longest token prefix each
    shares with another row of the batch (``shared_prefixes``); each cluster's prefix is run
    once, its KV cache copied to the cluster's rows (``DynamicCache.batch_select_indices``), and
    only the rows' own suffixes are run after it. With no shared prefix it is one plain pass.

    Left padding and a shared prefix go together by padding twice: the prefixes are left-padded
    among themselves, the suffixes among themselves, so a row reads
    ``[pad, prefix, pad, suffix]``. The attention mask hides both pads and the positions follow
    the mask (``forward_step``), so every real token sees exactly the tokens and positions it
    has in the unshared pass, and the last position is still every row's next-token position.

    Returns (last-position logits, attention mask, cache); continue with ``forward_step``.

    Example:
        >>> logits, mask, cache = prefill(model, [p1, p2], 0, "past_key_values")  # doctest: +SKIP
    """
    device = next(model.parameters()).device
    plan = shared_prefixes(prompts)
    if plan is None:
        ids, mask = left_pad(prompts, pad, device)
        logits, cache = forward_step(model, ids, mask, None, cache_arg)
        return logits, mask, cache
    prefixes, row_prefix, cuts = plan
    prefix_ids, prefix_mask = left_pad(prefixes, pad, device)
    _, cache = forward_step(model, prefix_ids, prefix_mask, None, cache_arg)
    rows = torch.tensor(row_prefix, device=device)
    cache.batch_select_indices(rows)
    suffix_ids, suffix_mask = left_pad(
        [prompt[cut:] for prompt, cut in zip(prompts, cuts, strict=True)], pad, device
    )
    mask = torch.cat([prefix_mask[rows], suffix_mask], dim=1)
    logits, cache = forward_step(model, suffix_ids, mask, cache, cache_arg)
    return logits, mask, cache


def shared_prefixes(
    prompts: list[list[int]],
) -> tuple[list[list[int]], list[int], list[int]] | None:
    """How ``prefill`` splits a batch: (prefixes, each row's prefix index, each row's cut).

    A row's prefix is the longest token prefix it shares with any other row (found among its
    neighbours in lexicographic order); rows with the same prefix form a cluster that computes it
    once. The groups of one query thus share system turn and query, and a query with one group
    runs alone. Every suffix keeps at least one token; a row that shares nothing runs all but its
    last token as its own "prefix", so the suffix pass stays narrow. None when no two rows share a
    prefix.

    Example:
        >>> shared_prefixes([[1, 2, 3, 4], [1, 2, 5], [1, 7, 8]])
        ([[1, 2], [1, 7]], [0, 0, 1], [2, 2, 2])
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    neighbours = [
        _common_prefix_length(prompts[a], prompts[b]) for a, b in zip(order, order[1:])
    ]
    clusters: dict[tuple[int, ...], list[int]] = {}
    for k, row in enumerate(order):
        depth = max(neighbours[k - 1] if k > 0 else 0, neighbours[k] if k < len(order) - 1 else 0)
        clusters.setdefault(tuple(prompts[row][:depth]), []).append(row)
    prefixes: list[list[int]] = []
    row_prefix = [0] * len(prompts)
    cuts = [0] * len(prompts)
    shared = False
    for prefix, rows in clusters.items():
        if len(rows) > 1:
            cut = min(len(prefix), min(len(prompts[r]) for r in rows) - 1)
            shared |= cut > 0
        else:
            cut = len(prompts[rows[0]]) - 1
        for r in rows:
            row_prefix[r], cuts[r] = len(prefixes), max(cut, 0)
        prefixes.append(prompts[rows[0]][: max(cut, 0)])
    return (prefixes, row_prefix, cuts) if shared else None


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    length = min(len(a), len(b))
    return next((i for i in range(length) if a[i] != b[i]), length)


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


def token_batches(
    lengths: list[int], budget: int, keys: Sequence[Hashable] | None = None
) -> list[list[int]]:
    """Indices grouped into batches whose padded size (rows x longest) stays within ``budget``.

    Sorting by length keeps padding small; a prompt longer than the budget runs alone. With
    ``keys``, items of one key stay next to each other (so ``prefill`` can share their prefix):
    keys are ordered by their longest item, items inside a key by length.

    Example:
        >>> token_batches([5, 100, 6, 7], budget=20)
        [[0, 2], [3], [1]]
        >>> token_batches([5, 9, 6, 8], budget=20, keys=["a", "b", "a", "b"])
        [[0, 2], [3, 1]]
    """
    if keys is None:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    else:
        longest: dict[Hashable, int] = {}
        first: dict[Hashable, int] = {}
        for i, key in enumerate(keys):
            longest[key] = max(longest.get(key, 0), lengths[i])
            first.setdefault(key, i)
        order = sorted(
            range(len(lengths)), key=lambda i: (longest[keys[i]], first[keys[i]], lengths[i])
        )
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        if current and (len(current) + 1) * max(width, lengths[i]) > budget:
            batches.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, lengths[i])
    if current:
        batches.append(current)
    return batches


def check_results(groups: Sequence, results: Sequence, scorer: str) -> list:
    """``results`` if there is one per group and one score and status per document, else raises.

    A scorer that silently returned fewer results or scores would shift scores onto the wrong
    documents downstream; this fails loudly (``RuntimeError``), naming the first group that does
    not line up. Each result is checked by ``grouprank.backends.base.check_result``.

    Example:
        >>> from grouprank.backends.base import GroupInput, GroupResult
        >>> g = [GroupInput("q", ("a", "b"))]
        >>> check_results(g, [GroupResult([1.0], ["ok"], 3, 1)], "tiny")
        Traceback (most recent call last):
        ...
        RuntimeError: the scorer returned 1 scores and 1 statuses for the 2 documents of tiny's group 0 (query 'q')
    """
    from grouprank.backends.base import check_result

    if len(results) != len(groups):
        raise RuntimeError(f"{scorer} returned {len(results)} results for {len(groups)} groups")
    for number, (group, result) in enumerate(zip(groups, results, strict=True)):
        where = f"{scorer}'s group {number} (query {group.query[:60]!r})"
        if result is None:
            raise RuntimeError(f"{scorer} returned no result for group {number}")
        check_result(result, len(group.texts), where)
    return list(results)
