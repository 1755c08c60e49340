"""The train-sft and train-rl jobs on a real Delta samples table, in-process and through
TorchDistributor, and their checkpoints in the reranking job."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from grouprank.backends.group_encoder import is_group_encoder_dir
from grouprank.models import load_scorer
from grouprank.settings import RerankSettings
from jobs.stages import main as stage_main
from jobs.training import backbone_of
from schemas.samples import SAMPLES
from tests.test_group_encoder import make_samples

DAY = dt.date(2026, 11, 27)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GROUPRANK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def samples_table(spark, tmp_path_factory):
    frame = __import__("pandas").concat([make_samples(12, "sft"), make_samples(8, "rl", seed=1)])
    rows = []
    for r in frame.itertuples(index=False):
        n = len(r.texts)
        ranks = sorted(range(n), key=lambda i: -r.target_scores[i])
        target_ranks = [ranks.index(i) + 1 for i in range(n)]
        rows.append((
            r.sample_id, r.qid, r.query, list(r.docids), list(r.texts),
            list(r.first_stage_scores), list(range(1, n + 1)), list(r.target_scores),
            target_ranks, n, r.split,
            target_ranks, target_ranks, list(r.texts[:2]), 0, "{}", "prompt", "completion", "0123456789abcdef", DAY,
        ))
    path = str(tmp_path_factory.mktemp("train") / "samples")
    spark.createDataFrame(rows, SAMPLES).write.format("delta").save(path)
    return path


def _flags(samples: str, output, **extra) -> list[str]:
    argv = ["--samples", samples, "--output", str(output), "--batch-size", "4", "--epochs", "2"]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def test_sft_then_rl_through_the_jobs_and_torch_distributor(samples_table, tmp_path, capsys):
    argv = ["--base", "minilm"] + _flags(samples_table, tmp_path / "sft", score_augment=0.5)
    assert stage_main("train-sft", argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.split("summary: ", 1)[1])
    assert summary["backbone"] == "group-encoder" and summary["samples"] == 12
    assert summary["config"]["score_augment"] == 0.5
    assert summary["steps"] == 6  # 12 samples / 4 per step * 2 epochs
    argv = ["--init", str(tmp_path / "sft")] + _flags(
        samples_table, tmp_path / "rl", num_processes=1, rollouts=4,
        reward_terms="ndcg,recall", run_date="2026-11-27",
    )
    assert stage_main("train-rl", argv) == 0
    summary = json.loads(capsys.readouterr().out.split("summary: ", 1)[1])
    assert summary["stage"] == "rl" and summary["samples"] == 8 and summary["steps"] == 4
    assert summary["config"]["reward_terms"] == ["ndcg", "recall"]
    assert is_group_encoder_dir(tmp_path / "rl")
    scorer = load_scorer(RerankSettings(model=str(tmp_path / "rl")))
    from grouprank.backends import GroupInput

    (result,) = scorer.score_groups([GroupInput("q", ("a", "b"), (1.0, 0.0))])
    assert all(0 <= s <= 10 for s in result.scores)


def test_bad_flags_fail_before_training(samples_table, tmp_path, capsys):
    assert stage_main("train-sft", ["--base", str(tmp_path)] + _flags(samples_table, tmp_path / "o")) == 2
    assert "is not a model" in capsys.readouterr().err
    assert stage_main("train-rl", ["--init", "minilm"] + _flags(samples_table, tmp_path / "o")) == 2
    assert "not a group-encoder checkpoint" in capsys.readouterr().err
    argv = ["--base", "minilm"] + _flags(samples_table, tmp_path / "o", run_date="2026-01-01")
    assert stage_main("train-sft", argv) == 2
    assert "holds no samples for run date 2026-01-01" in capsys.readouterr().err
    argv = ["--init", "minilm"] + _flags(samples_table, tmp_path / "o", reward_terms="ndcg,mrr")
    assert stage_main("train-rl", argv) == 2
    assert "reward_terms" in capsys.readouterr().err
    argv = ["--base", "minilm"] + _flags(samples_table, tmp_path / "o", score_augment=2)
    assert stage_main("train-sft", argv) == 2
    assert "--score-augment" in capsys.readouterr().err


def test_samples_missing_a_column_are_named(spark, tmp_path, capsys):
    path = str(tmp_path / "broken")
    spark.createDataFrame([("s1", "q")], "sample_id string, qid string").write.format(
        "delta"
    ).save(path)
    assert stage_main("train-sft", ["--base", "minilm", "--samples", path, "--output", "x"]) == 2
    err = capsys.readouterr().err
    assert "missing column 'target_scores'" in err and "missing column 'texts'" in err


def test_llm_training_refuses_prompts_in_another_models_chat_format(
    samples_table, tiny_model_dir, tmp_path, capsys
):
    # The table's prompts were rendered with chat template 0123456789abcdef, not the tiny Llama's.
    code = stage_main("train-sft", ["--base", str(tiny_model_dir)] + _flags(samples_table, tmp_path / "o"))
    assert code == 2
    err = capsys.readouterr().err
    assert "rendered with chat template(s) ['0123456789abcdef']" in err and "--chat-model" in err
    assert not (tmp_path / "o").exists()


def test_backbone_follows_the_model_argument(tiny_model_dir, tmp_path):
    from grouprank.models import CAUSAL_LM, GROUP_ENCODER, SENTENCE_ENCODER, base_ref
    from grouprank.retrieval import encoder_dir
    from jobs.configs import RLOptions, TrainJob
    from jobs.training import check

    def backbone(model):
        return backbone_of(base_ref(model))

    assert backbone("minilm") == "group-encoder"
    assert backbone(str(encoder_dir())) == "group-encoder"
    assert backbone(str(tiny_model_dir)) == "llm"
    assert backbone("smollm2") == "llm"
    assert [base_ref(m).kind for m in ("minilm", "default", "smollm2")] == [
        SENTENCE_ENCODER, GROUP_ENCODER, CAUSAL_LM]
    assert base_ref("minilm").path() == encoder_dir()
    with pytest.raises(ValueError, match="is not a model"):
        base_ref(str(tmp_path))
    job = TrainJob(samples=str(tmp_path / "samples"), output=str(tmp_path / "out"))
    assert check(job, "minilm").kind == SENTENCE_ENCODER
    with pytest.raises(ValueError, match="sentence encoder with no head"):
        check(job, "minilm", RLOptions())


def test_training_through_the_embedding_store_gives_the_same_head(
    spark, samples_table, tmp_path, capsys
):
    """train-sft embeds the samples' texts in a Spark stage, with or without the store, and
    trains the head the trainer trains alone; a rerun encodes nothing, and train-rl from the
    checkpoint and rerank share the store's rows (one key per encoder)."""
    import numpy as np
    import pandas as pd
    from safetensors.torch import load_file

    from grouprank.models import base_ref, model_ref
    from grouprank.training.group_encoder import train_sft
    from jobs.configs import TrainJob
    from jobs.embeddings import store_key
    from jobs.training import GROUP_ENCODER, config_for, read_samples

    store = str(tmp_path / "store")
    sft_rows = make_samples(12, "sft")
    rl_rows = make_samples(8, "rl", seed=1)
    sft_texts = set(sft_rows["query"]) | {t for block in sft_rows["texts"] for t in block}
    rl_texts = set(rl_rows["query"]) | {t for block in rl_rows["texts"] for t in block}

    def job(stage: str, start: str, out: str, *extra: str) -> dict:
        flag = "--base" if stage == "sft" else "--init"
        argv = [flag, start] + _flags(samples_table, tmp_path / out, max_steps=3) + list(extra)
        if stage == "rl":
            argv += ["--rollouts", "4"]
        assert stage_main(f"train-{stage}", argv) == 0
        return json.loads(capsys.readouterr().out.split("summary: ", 1)[1])

    def trained(out: str) -> tuple[list[float], dict]:
        summary = json.loads((tmp_path / out / "training_summary.json").read_text())
        head = load_file(str(tmp_path / out / "head.safetensors"))
        return [s["loss"] for s in summary["curve"]], head

    plain = job("sft", "minilm", "plain")
    assert plain["embeddings"] == {**plain["embeddings"], "texts": len(sft_texts),
                                   "encoded": len(sft_texts), "store": None}
    first = job("sft", "minilm", "first", "--embedding-store", store)
    assert (first["embeddings"]["encoded"], first["embeddings"]["reused"]) == (len(sft_texts), 0)
    again = job("sft", "minilm", "again", "--embedding-store", store)
    assert (again["embeddings"]["encoded"], again["embeddings"]["reused"]) == (0, len(sft_texts))
    assert spark.read.format("delta").load(store).count() == len(sft_texts)
    # The trainer alone, in-process encoding, the job's config.
    samples = read_samples(spark, samples_table, "")
    config = config_for(GROUP_ENCODER, TrainJob(samples_table, "x", epochs=2, max_steps=3,
                                                batch_size=4))
    train_sft(samples, "minilm", tmp_path / "alone", config)
    curve, head = trained("plain")
    for out in ("first", "again", "alone"):
        other_curve, other_head = trained(out)
        # The trainer alone encodes in this process, with its own torch thread count, so its
        # vectors may differ from the Spark workers' in the last bits (~1e-7); three steps can
        # grow that to ~4e-5 in the loss (seen once), and Adam's per-weight normalisation to
        # more on weights whose gradient is near zero. The jobs' three runs must agree exactly.
        atol = 1e-3 if out == "alone" else 1e-6
        assert np.allclose(other_curve, curve, atol=atol, rtol=0), (out, other_curve, curve)
        worst = max(float((head[k] - other_head[k]).abs().max()) for k in head)
        assert worst <= atol, (out, worst)
    # train-rl from the checkpoint reads the rows train-sft added: its key is the base's.
    rl = job("rl", str(tmp_path / "first"), "rl", "--embedding-store", store)
    assert rl["embeddings"]["reused"] == len(rl_texts & sft_texts)
    assert rl["embeddings"]["encoded"] == len(rl_texts - sft_texts)
    settings = RerankSettings(precision=first["embeddings"]["precision"])
    assert store_key(settings, base_ref("minilm")) == store_key(settings, model_ref("default"))
    assert pd.Series(sorted(sft_texts | rl_texts)).size == spark.read.format("delta").load(
        store).count()


def test_an_llm_backbone_refuses_the_embedding_store(samples_table, tiny_model_dir, tmp_path,
                                                     capsys):
    argv = ["--base", str(tiny_model_dir), "--embedding-store", str(tmp_path / "store")]
    assert stage_main("train-sft", argv + _flags(samples_table, tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--embedding-store needs a group-encoder model" in err[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "store").exists()
