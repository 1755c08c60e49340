"""SFT and GRPO of a causal-LM reranker (grouprank.training.llm) on a tiny random Llama.

Every run is a few optimizer steps on CPU; torch runs one thread here, which is much faster
than two for a model this small on a shared machine.
"""

from __future__ import annotations

import json
import math
import warnings

import pandas as pd
import pytest

from grouprank import synthesis as syn
from grouprank.backends import GroupInput
from grouprank.prompts import load_template
from grouprank.training.llm import (
    ADAPTER_DIR,
    REQUIRED_COLUMNS,
    SUMMARY_FILE,
    LLMTrainConfig,
    _plain_prompts,
    train_rl,
    train_sft,
)
from schemas.samples import SAMPLES

# Large steps: a handful of them must visibly move a random model.
FAST = {
    "learning_rate": 2e-2,
    "batch_size": 2,
    "gradient_accumulation": 1,
    "activation_checkpointing": False,
    "lora_rank": 8,
    "lora_alpha": 16,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _samples(model_dir) -> pd.DataFrame:
    """Six samples of three documents (four sft, two rl), rendered as the synthesis job does."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = load_template()
    rows = []
    for q in range(6):
        texts = [f"the quick brown fox {i}" for i in range(3)]
        scores = [float((q + 3 * i) % 11) for i in range(3)]
        ranks = syn.ranks_from_scores(scores, tiebreak=[0, 1, 2])
        messages = template.messages(f"fox {q}", texts)
        rows.append(
            {
                "sample_id": f"q{q}#0",
                "qid": f"q{q}",
                "query": f"fox {q}",
                "texts": texts,
                "target_scores": scores,
                "target_ranks": ranks,
                "group_size": 3,
                "split": syn.SFT if q < 4 else syn.RL,
                "prompt": tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                ),
                "completion": syn.completion_text(scores, ranks),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def samples(tiny_model_dir) -> pd.DataFrame:
    return _samples(tiny_model_dir)


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, samples, tmp_path_factory):
    """A full fine-tuning run long enough for the tiny model to learn the answer format."""
    output = tmp_path_factory.mktemp("sft")
    config = LLMTrainConfig(max_steps=20, save_steps=20, full_finetune=True, **FAST)
    return output, train_sft(samples, tiny_model_dir, output, config)


def _completion_loss(model_dir, samples: pd.DataFrame) -> float:
    """Mean next-token loss over the sft rows' completion tokens (prompt masked), computed here."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    for row in samples[samples["split"] == syn.SFT].itertuples():
        prompt = tokenizer(row.prompt, add_special_tokens=False).input_ids
        completion = tokenizer(row.completion, add_special_tokens=False).input_ids
        ids = torch.tensor([prompt + completion])
        labels = torch.tensor([[-100] * len(prompt) + completion])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        # Labels shift by one inside the model: every completion token is predicted once.
        total += float(loss) * len(completion)
        count += len(completion)
    return total / count


def _weights(model_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _changed(before: dict, after: dict) -> bool:
    assert before.keys() == after.keys()
    return any(not (before[k] == after[k]).all() for k in before)


def test_the_trainers_read_columns_of_the_samples_table():
    assert set(REQUIRED_COLUMNS) <= set(SAMPLES.fieldNames())


def test_sft_changes_the_weights_and_lowers_the_completion_loss(tiny_model_dir, samples, sft_run):
    output, summary = sft_run
    assert summary["global_step"] == 20
    assert _changed(_weights(tiny_model_dir), _weights(output))
    before, after = _completion_loss(tiny_model_dir, samples), _completion_loss(output, samples)
    assert after < 0.5 * before
    written = json.loads((output / SUMMARY_FILE).read_text())
    assert written["losses"][0]["step"] == 1 and len(written["losses"]) == 20
    assert written["samples"] == 4 and written["peak_rss_mb"] > 0


def test_sft_output_is_a_model_the_reranker_loads(sft_run):
    from grouprank.backends.causal_lm import CausalLMScorer
    from grouprank.backends.lm import load_causal_lm

    output, _ = sft_run
    model, tokenizer = load_causal_lm(output)
    scorer = CausalLMScorer(model, tokenizer, load_template(), mode="direct", name="sft")
    (result,) = scorer.score_groups([GroupInput("fox 9", ("a fox", "a dog", "the lazy dog"))])
    assert result.statuses == ["ok"] * 3
    assert all(0.0 <= s <= 10.0 for s in result.scores)


def test_grpo_changes_the_weights_and_logs_finite_rewards(sft_run, samples, tmp_path):
    init, _ = sft_run
    config = LLMTrainConfig(
        max_steps=2, rollouts=4, temperature=0.5, max_new_tokens=80, kl=0.001, **FAST
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train_rl(samples, init, tmp_path, config)
    # Pinned memory is asked for only where there is a GPU to copy to (torch warns otherwise).
    assert not [w for w in caught if "pin_memory" in str(w.message)]
    assert summary["global_step"] == 2
    assert [r["step"] for r in summary["rewards"]] == [1, 2]
    assert all(math.isfinite(r["reward"]) for r in summary["rewards"])
    assert all(0.0 <= r["parse_rate"] <= 1.0 for r in summary["rewards"])
    assert _changed(_weights(init), _weights(tmp_path))
    assert (tmp_path / ADAPTER_DIR / "adapter_config.json").is_file()


def test_a_rerun_with_more_steps_continues_from_the_last_checkpoint(
    tiny_model_dir, samples, tmp_path
):
    first = train_sft(
        samples, tiny_model_dir, tmp_path, LLMTrainConfig(max_steps=2, save_steps=1, **FAST)
    )
    assert first["resumed_from"] is None
    # Mark the checkpoint's logged history: a resumed run carries the mark, a restart would not.
    state_file = tmp_path / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["loss"] = 123.0
    state_file.write_text(json.dumps(state))
    second = train_sft(
        samples, tiny_model_dir, tmp_path, LLMTrainConfig(max_steps=4, save_steps=1, **FAST)
    )
    assert second["resumed_from"] == str(tmp_path / "checkpoints" / "checkpoint-2")
    assert second["global_step"] == 4
    assert [x["step"] for x in second["losses"]] == [1, 2, 3, 4]
    assert second["losses"][0]["loss"] == 123.0
    assert second["losses"][1] == first["losses"][1]


def test_prompts_keep_one_bos_when_the_tokenizer_adds_its_own(tiny_model_dir, samples):
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = samples["prompt"].iloc[0]
    assert _plain_prompts([prompt], tokenizer) == [prompt]
    # Llama 3 style: the tokenizer adds BOS, and the chat template already starts with it.
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", tokenizer.bos_token_id)]
    )
    (plain,) = _plain_prompts([prompt], tokenizer)
    reranker_ids = tokenizer(prompt, add_special_tokens=False).input_ids  # as chat_prompt_ids
    assert tokenizer(plain).input_ids == reranker_ids


def test_bad_input_fails_before_training(tiny_model_dir, samples, tmp_path):
    with pytest.raises(ValueError, match="lack columns"):
        train_sft(samples.drop(columns=["completion"]), tiny_model_dir, tmp_path)
    with pytest.raises(ValueError, match="no 'rl' rows"):
        train_rl(samples[samples["split"] == syn.SFT], tiny_model_dir, tmp_path)
    with pytest.raises(ValueError, match="exceed max_length"):
        train_sft(samples, tiny_model_dir, tmp_path, LLMTrainConfig(max_length=16))
    with pytest.raises(ValueError, match="rollouts"):
        LLMTrainConfig(rollouts=1)
