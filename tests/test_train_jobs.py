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
    assert stage_main("train-sft", ["--base", "minilm"] + _flags(samples_table, tmp_path / "sft")) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.split("summary: ", 1)[1])
    assert summary["backbone"] == "group-encoder" and summary["samples"] == 12
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
    from grouprank.retrieval import encoder_dir

    assert backbone_of("minilm") == "group-encoder"
    assert backbone_of(str(encoder_dir())) == "group-encoder"
    assert backbone_of(str(tiny_model_dir)) == "llm"
    assert backbone_of("smollm2") == "llm"
    with pytest.raises(ValueError, match="is not a model"):
        backbone_of(str(tmp_path))
