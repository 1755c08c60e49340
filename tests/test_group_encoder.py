"""The group-encoder backbone and its SFT/GRPO trainer, on the real shipped MiniLM encoder."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from grouprank.backends import GroupInput
from grouprank.backends.group_encoder import (
    CONFIG_FILE,
    GroupEncoderConfig,
    GroupEncoderScorer,
    GroupHead,
    expected_scores,
    first_stage_agreement,
    is_group_encoder_dir,
    pad_groups,
    rank_features,
    pair_features,
    save_head,
)
from grouprank.models import load_scorer
from grouprank.reward import group_reward
from grouprank.settings import RerankSettings
from grouprank.training import group_encoder as trainer
from grouprank.training.group_encoder import (
    EncoderTrainConfig,
    soft_labels,
    train_rl,
    train_sft,
)

TOPICS = ["solar energy panels", "river fish species", "medieval castle walls", "jazz piano chords"]


def _group(rng: np.random.Generator, topic: str, size: int) -> tuple[list[str], list[float]]:
    """Documents on the query's topic get high targets, the others low."""
    texts, targets = [], []
    for i in range(size):
        on_topic = i % 3 == 0
        other = TOPICS[(TOPICS.index(topic) + 1 + i) % len(TOPICS)]
        texts.append(f"{topic if on_topic else other} note {i}")
        targets.append(9.0 if on_topic else float(rng.integers(0, 3)))
    return texts, targets


def make_samples(count: int = 12, split: str = "sft", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(count):
        topic = TOPICS[k % len(TOPICS)]
        texts, targets = _group(rng, topic, 4 + k % 5)
        rows.append({
            "sample_id": f"{split}-{k:03d}", "qid": f"q{k % 4}", "query": f"about {topic}",
            "docids": [f"d{i}" for i in range(len(texts))], "texts": texts,
            "first_stage_scores": [float(rng.normal()) for _ in texts],
            "target_scores": targets, "split": split,
        })
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # One embedding cache per test session, outside the user's home.
    monkeypatch.setenv("GROUPRANK_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _random_head(layers: int = 2, dropout: float = 0.0) -> GroupHead:
    torch.manual_seed(0)
    return GroupHead(GroupEncoderConfig(hidden=32, layers=layers, heads=4, dropout=dropout)).eval()


def _batch(size: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(1, 384, generator=gen)
    docs = torch.randn(size, 384, generator=gen)
    return pad_groups(query, [docs], [torch.randn(size, generator=gen).tolist()])[:4]


def test_scores_follow_the_documents_not_their_order():
    head = _random_head()
    query, docs, first_stage, mask = _batch()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        scores = expected_scores(head(query, docs, first_stage, mask))[0]
        shuffled = expected_scores(head(query, docs[:, perm], first_stage[:, perm], mask))[0]
    assert torch.allclose(shuffled, scores[perm], atol=1e-5)
    assert ((scores >= 0) & (scores <= 10)).all()


def test_a_score_depends_on_the_rest_of_the_group():
    query, docs, first_stage, mask = _batch()
    other_docs = docs.clone()
    other_docs[0, 1:] = torch.randn(5, 384)
    head = _random_head(layers=2)
    with torch.no_grad():
        a = expected_scores(head(query, docs, first_stage, mask))[0, 0]
        b = expected_scores(head(query, other_docs, first_stage, mask))[0, 0]
    assert not torch.isclose(a, b, atol=1e-6)
    # Before attention, only the relative-cosine feature of document 0 sees the others.
    feats_a = pair_features(query, docs, first_stage, mask)[0, 0]
    feats_b = pair_features(query, other_docs, first_stage, mask)[0, 0]
    changed = (feats_a - feats_b).abs() > 1e-6
    assert changed.nonzero().flatten().tolist() == [385]  # index of "cosine - group mean"


def test_padding_and_unknown_first_stage_give_finite_features():
    query = torch.randn(2, 384)
    batch = pad_groups(query, [torch.randn(3, 384), torch.randn(1, 384)], [[1.0, 1.0, 2.0], []])
    features = pair_features(*batch[:4])
    assert torch.isfinite(features).all()
    assert features[1, 1:].abs().sum() == 0  # padding rows are zeros
    z, pct, known = features[0, :, -3], features[0, :, -2], features[0, :, -1]
    assert known.tolist() == [1.0, 1.0, 1.0] and features[1, 0, -1] == 0.0
    assert pct.tolist() == [0.0, 0.0, 1.0]  # the 2.0 beats both others; ties beat nobody
    assert z[2] > 0 > z[0]


def test_soft_labels_split_mass_between_neighbours():
    labels = soft_labels(torch.tensor([[0.0, 6.25, 10.0]]))
    assert labels.sum(-1).tolist() == [[1.0, 1.0, 1.0]]
    assert labels[0, 0, 0] == 1.0 and labels[0, 2, 10] == 1.0
    assert labels[0, 1, 6].item() == pytest.approx(0.75)


def test_checkpoint_loads_into_the_reranking_scorer(tmp_path):
    save_head(_random_head(), tmp_path / "ckpt")
    assert is_group_encoder_dir(tmp_path / "ckpt") and not is_group_encoder_dir(tmp_path)
    scorer = load_scorer(RerankSettings(model=str(tmp_path / "ckpt")))
    results = scorer.score_groups([
        GroupInput("solar panels", ("solar cells on roofs", "a fish"), (2.0, 1.0)),
        GroupInput("castles", ("stone walls",)),
    ])
    assert [len(r.scores) for r in results] == [2, 1]
    assert all(0 <= s <= 10 for r in results for s in r.scores)
    assert {st for r in results for st in r.statuses} == {"ok"}
    with pytest.raises(ValueError, match="scores groups only"):
        load_scorer(RerankSettings(model=str(tmp_path / "ckpt"), paradigm="pointwise"))


def _config(**changes) -> EncoderTrainConfig:
    base = dict(epochs=1, batch_size=4, hidden=32, layers=1, heads=4, dropout=0.0, save_every=0,
                rollouts=4)
    base.update(changes)
    return EncoderTrainConfig(**base)


def _fixed_batch_loss(path, samples) -> float:
    from grouprank.backends.group_encoder import load_head

    head = load_head(path)
    data = trainer._prepare(samples, "sft", head.config)
    batch = next(trainer._batches(data, _config(batch_size=len(samples))))
    with torch.no_grad():
        logits = head(batch["query"], batch["docs"], batch["first_stage"], batch["mask"])
        loss, _ = trainer.sft_loss(logits, batch["targets"], batch["mask"], 1.0)
    return float(loss)


def test_sft_lowers_the_loss_and_writes_a_loadable_checkpoint(tmp_path):
    samples = make_samples()
    train_sft(samples, "minilm", tmp_path / "start", _config(max_steps=0))
    summary = train_sft(samples, "minilm", tmp_path / "sft", _config(epochs=15))
    assert summary["steps"] == 45 and summary["samples"] == 12
    assert _fixed_batch_loss(tmp_path / "sft", samples) < 0.8 * _fixed_batch_loss(
        tmp_path / "start", samples
    )
    assert json.loads((tmp_path / "sft" / CONFIG_FILE).read_text())["kind"] == "group-encoder"
    assert not (tmp_path / "sft" / "checkpoints").exists()


def test_sft_resumes_after_a_crash_to_the_same_weights(tmp_path, monkeypatch):
    samples = make_samples()
    # Dropout on: the resumed run must continue with the same random draws.
    config = _config(epochs=2, save_every=2, dropout=0.3)
    train_sft(samples, "minilm", tmp_path / "clean", config)

    real_loss, calls = trainer.sft_loss, {"n": 0}

    def crash_on_fifth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("worker lost")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "sft_loss", crash_on_fifth)
    with pytest.raises(RuntimeError, match="worker lost"):
        train_sft(samples, "minilm", tmp_path / "crashed", config)
    assert (tmp_path / "crashed" / "checkpoints" / "step-000004").is_dir()
    monkeypatch.setattr(trainer, "sft_loss", real_loss)
    summary = train_sft(samples, "minilm", tmp_path / "crashed", config)
    assert summary["resumed_from_step"] == 4 and summary["steps"] == 6
    from safetensors.torch import load_file

    clean = load_file(str(tmp_path / "clean" / "head.safetensors"))
    resumed = load_file(str(tmp_path / "crashed" / "head.safetensors"))
    assert all(torch.allclose(clean[k], resumed[k], atol=1e-6) for k in clean)


def _greedy_reward(path, samples) -> float:
    from grouprank.backends.group_encoder import load_head

    head = load_head(path)
    data = trainer._prepare(samples, "rl", head.config)
    batch = next(trainer._batches(data, _config(batch_size=len(samples))))
    with torch.no_grad():
        scores = expected_scores(head(batch["query"], batch["docs"], batch["first_stage"],
                                      batch["mask"]))
    sizes = batch["mask"].sum(-1).tolist()
    return float(np.mean([
        group_reward(scores[b, :n].tolist(), batch["targets"][b, :n].tolist())
        for b, n in enumerate(sizes)
    ]))


def test_grpo_kl_compares_policy_and_reference_at_one_temperature(tmp_path):
    # Before its first update the policy is the reference, so the KL term must be 0 whatever
    # the sampling temperature (a tempered policy against an untempered reference is not).
    samples = pd.concat([make_samples(4, "sft"), make_samples(4, "rl", seed=1)])
    train_sft(samples, "minilm", tmp_path / "sft", _config(max_steps=2))
    summary = train_rl(samples, tmp_path / "sft", tmp_path / "rl",
                       _config(max_steps=1, inner_steps=1, temperature=2.0))
    assert summary["curve"][0]["kl"] == pytest.approx(0.0, abs=1e-6)


def test_grpo_raises_the_reward_on_a_fixed_batch(tmp_path):
    samples = pd.concat([make_samples(8, "sft"), make_samples(8, "rl", seed=1)])
    train_sft(samples, "minilm", tmp_path / "sft", _config(max_steps=1))
    before = _greedy_reward(tmp_path / "sft", samples)
    summary = train_rl(samples, tmp_path / "sft", tmp_path / "rl",
                       _config(epochs=40, batch_size=8, rl_learning_rate=3e-3, rollouts=8))
    after = _greedy_reward(tmp_path / "rl", samples)
    rewards = [point["reward"] for point in summary["curve"]]
    assert all(np.isfinite(rewards)) and summary["steps"] == 40
    assert after > before + 0.05
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5])
    with pytest.raises(ValueError, match="not a group-encoder checkpoint"):
        train_rl(samples, tmp_path, tmp_path / "x", _config())


def test_score_augmentation_changes_the_spacing_of_the_scores_never_their_order():
    rng = np.random.default_rng(0)
    scores = [float(s) for s in np.random.default_rng(1).normal(12.0, 3.0, 20)]
    seen = [np.asarray(trainer.order_keeping_transform(scores, rng)) for _ in range(30)]
    for out in seen:
        assert (np.argsort(out) == np.argsort(scores)).all()
    # The within-group z-scores, the head's reading of the spacing, really move.
    z = [(s - s.mean()) / s.std() for s in [np.asarray(scores), *seen]]
    assert max(float(np.abs(a - z[0]).max()) for a in z[1:]) > 0.5
    # Ties, a constant group and a group of one pass through unchanged in order.
    assert trainer.order_keeping_transform([2.0, 2.0], rng) == [2.0, 2.0]
    assert trainer.order_keeping_transform([5.0], rng) == [5.0]
    # In training: a seeded share of the samples per epoch, the same in every run.
    given = [list(map(float, s)) for s in make_samples()["first_stage_scores"]]
    config = _config(score_augment=0.5)
    first = trainer._augmented(given, config, epoch=0)
    assert first == trainer._augmented(given, config, epoch=0)
    assert first != trainer._augmented(given, config, epoch=1)
    changed = sum(a != b for a, b in zip(first, given, strict=True))
    assert 0 < changed < len(first)
    assert trainer._augmented(given, _config(), epoch=0) is given
    with pytest.raises(ValueError, match="score_augment"):
        EncoderTrainConfig(score_augment=1.5)


def test_bad_settings_and_empty_splits_fail_first(tmp_path):
    with pytest.raises(ValueError, match="rollouts must be >= 2"):
        EncoderTrainConfig(rollouts=1)
    with pytest.raises(ValueError, match="reward_terms"):
        EncoderTrainConfig(reward_terms=("mrr",))
    with pytest.raises(ValueError, match="no 'rl' rows"):
        save_head(_random_head(), tmp_path / "ckpt")
        train_rl(make_samples(4, "sft"), tmp_path / "ckpt", tmp_path / "out", _config())


def test_rerank_job_runs_a_group_encoder_checkpoint(spark, tmp_path):
    from jobs.stages.rerank import check_candidates, rerank
    from schemas import CANDIDATES

    save_head(_random_head(), tmp_path / "ckpt")
    rows = [("q1", "solar panels", f"d{i}", f"text {i} about solar", float(10 - i), None)
            for i in range(7)] + [("q2", "castles", "e0", "", 1.0, None)]
    settings = RerankSettings(model=str(tmp_path / "ckpt"), group_size=3, partitions=2)
    checked, _ = check_candidates(spark.createDataFrame(rows, CANDIDATES), settings.on_duplicates)
    out = rerank(checked, settings, dt.date(2026, 11, 27)).toPandas()
    assert len(out) == 8 and set(out.model) == {"ckpt"}
    scored = out[out.qid == "q1"]
    assert scored.model_score.between(0, 10).all() and set(scored.status) == {"ok"}
    assert sorted(scored["rank"]) == list(range(1, 8))


def test_rerank_job_feeds_an_agreement_reading_head(spark, tmp_path):
    from jobs.stages.rerank import check_candidates, rerank
    from schemas import CANDIDATES

    torch.manual_seed(0)
    head = GroupHead(GroupEncoderConfig(hidden=32, heads=4, dropout=0.0, agreement_feature=True,
                                        rank_features=True, context_top=2)).eval()
    save_head(head, tmp_path / "ckpt")
    rows = [("q1", "solar panels", f"d{i}", f"text {i} about solar", float(10 - i), None)
            for i in range(7)]
    settings = RerankSettings(model=str(tmp_path / "ckpt"), group_size=3, partitions=2,
                              precision="fp32")
    checked, _ = check_candidates(spark.createDataFrame(rows, CANDIDATES), settings.on_duplicates)
    out = rerank(checked, settings, dt.date(2026, 12, 2)).toPandas()
    assert len(out) == 7 and set(out.status) == {"ok"} and out.model_score.between(0, 10).all()
    # Parity: the head read in-process, from the library's own features (whole-list ranks,
    # feedback vector, agreement) over the groups the job dealt, gives the job's scores. The
    # held-out benchmark and the trainer compute their features this way.
    from grouprank.backends.group_encoder import feedback_vector
    from grouprank.encoding import embed_in_memory

    frame = out.sort_values("docid").reset_index(drop=True)
    by_doc = {r[2]: r for r in rows}
    query = embed_in_memory("minilm", ["solar panels"], precision="fp32")[0]
    docs = embed_in_memory("minilm", [by_doc[d][3] for d in frame.docid], precision="fp32")
    ranks = frame.first_stage_rank.to_numpy()
    context = torch.from_numpy(feedback_vector(query.numpy(), docs.numpy(), ranks, 2))[None]
    agreement = torch.tensor([first_stage_agreement(ranks, (docs @ query).numpy())])
    dealt = frame.repeat_groups.str[0].to_numpy()
    for group in set(dealt):
        idx = np.flatnonzero(dealt == group)
        batch = pad_groups(query[None], [docs[idx]], [[by_doc[frame.docid[i]][4] for i in idx]],
                           [ranks[idx].tolist()])
        with torch.no_grad():
            expect = expected_scores(head(*batch, context=context, agreement=agreement))[0]
        assert frame.model_score.to_numpy()[idx] == pytest.approx(expect.numpy(), abs=1e-4)
    # The groups carry the whole list's agreement (one value per query), not the group's own.
    from grouprank.models import model_ref
    from jobs.embeddings import driver_precision
    from jobs.stages.rerank import group_candidates, prepare_candidates

    groups = group_candidates(prepare_candidates(checked), driver_precision(settings, spark),
                              model_ref(settings.model), 2).toPandas()
    assert len(groups) == 3 and groups.first_stage_agreement.notna().all()
    assert groups.first_stage_agreement.nunique() == 1


def test_rerank_job_feeds_a_late_interaction_head(spark, tmp_path):
    from grouprank.encoding import embed_in_memory, loaded_encoder
    from grouprank.late_interaction import maxsim_scores
    from grouprank.models import model_ref
    from jobs.stages.rerank import check_candidates, group_candidates, prepare_candidates, rerank
    from schemas import CANDIDATES

    torch.manual_seed(0)
    head = GroupHead(GroupEncoderConfig(hidden=32, heads=4, dropout=0.0,
                                        late_interaction=True)).eval()
    save_head(head, tmp_path / "ckpt")
    texts = ["solar panels on a roof", "a roof of old slate", "baking bread", "panels of wood",
             "solar power at night", "river fish"]
    rows = [("q1", "solar panels", f"d{i}", t, float(10 - i), None) for i, t in enumerate(texts)]
    settings = RerankSettings(model=str(tmp_path / "ckpt"), group_size=3, partitions=2,
                              precision="fp32")
    checked, _ = check_candidates(spark.createDataFrame(rows, CANDIDATES), settings.on_duplicates)
    frame = rerank(checked, settings, dt.date(2026, 12, 7)).toPandas()
    frame = frame.sort_values("docid").reset_index(drop=True)
    assert len(frame) == 6 and set(frame.status) == {"ok"}
    # The embedding stage gave every document its MaxSim: the scorer encodes none again.
    groups = group_candidates(prepare_candidates(checked), settings,
                              model_ref(settings.model), 2).toPandas()
    assert sum(len(g) for g in groups.lates) == 6
    assert all(v is not None for g in groups.lates for v in g)
    # Parity: the head read in-process with the library's MaxSim of each group's texts gives
    # the job's scores; with the MaxSim zeroed it gives other scores, so the head reads it.
    query = embed_in_memory("minilm", ["solar panels"], precision="fp32")[0]
    docs = embed_in_memory("minilm", texts, precision="fp32")
    dealt = frame.repeat_groups.str[0].to_numpy()
    for group in set(dealt):
        idx = np.flatnonzero(dealt == group)
        batch = pad_groups(query[None], [docs[idx]], [[rows[i][4] for i in idx]])
        late = torch.tensor([maxsim_scores(loaded_encoder("minilm"), "solar panels",
                                           [texts[i] for i in idx], "fp32")])
        with torch.no_grad():
            expect = expected_scores(head(*batch, late=late))[0]
            blind = expected_scores(head(*batch, late=torch.zeros_like(late)))[0]
        assert frame.model_score.to_numpy()[idx] == pytest.approx(expect.numpy(), abs=1e-4)
        assert (expect - blind).abs().max() > 1e-3


def test_sft_computes_maxsim_from_the_texts_where_the_samples_hold_none():
    from grouprank.encoding import loaded_encoder
    from grouprank.late_interaction import maxsim_scores

    samples = make_samples(6)
    config = GroupEncoderConfig(late_interaction=True)
    computed = trainer._late_scores(samples, config)
    encoder = loaded_encoder("minilm")
    for row, got in zip(samples.itertuples(), computed, strict=True):
        assert got == pytest.approx(maxsim_scores(encoder, row.query, row.texts, "auto"), abs=1e-2)
    given = samples.assign(late_scores=[[0.5] * len(t) for t in samples.texts])
    assert trainer._late_scores(given, config)[0] == [0.5] * len(samples.texts[0])


def test_rank_features_say_where_a_document_stood_in_the_whole_list():
    ranks = torch.tensor([[1, 3, 100, 0]])
    mask = torch.tensor([[True, True, True, True]])
    features = rank_features(ranks, mask)[0]
    assert features[0].tolist() == [1.0, 0.0, 1.0]  # rank 1: full discount, no depth
    assert features[1, 0] == pytest.approx(0.5) and features[2, 1] == pytest.approx(2 / 3)
    assert features[3].tolist() == [0.0, 0.0, 0.0]  # unknown rank: nothing, flagged unknown


def test_a_rank_reading_head_is_order_free_and_uses_the_ranks():
    torch.manual_seed(0)
    head = GroupHead(GroupEncoderConfig(hidden=32, heads=4, dropout=0.0, rank_features=True))
    head.eval()
    query, docs, first_stage, mask, ranks = pad_groups(
        torch.randn(1, 384), [torch.randn(4, 384)], [[0.1, 0.2, 0.3, 0.4]], [[7, 1, 40, 3]]
    )
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        scores = expected_scores(head(query, docs, first_stage, mask, ranks))[0]
        shuffled = expected_scores(
            head(query, docs[:, perm], first_stage[:, perm], mask, ranks[:, perm])
        )[0]
        other = expected_scores(head(query, docs, first_stage, mask, ranks.flip(-1)))[0]
    assert torch.allclose(shuffled, scores[perm], atol=1e-5)
    assert not torch.allclose(other, scores, atol=1e-4)


def test_first_stage_agreement_is_the_log_rank_correlation_with_the_cosine():
    same = first_stage_agreement(np.arange(1, 11), np.linspace(1, 0, 10))
    reverse = first_stage_agreement(np.arange(1, 11), np.linspace(0, 1, 10))
    # Log ranks: the reversed order is not exactly -1 (log r against log(11 - r)).
    assert same == pytest.approx(1.0) and -0.9 < reverse < -0.8
    assert np.isnan(first_stage_agreement(np.array([1, 2]), np.array([0.5, 0.1])))


def test_an_agreement_reading_head_uses_the_agreement_it_is_given(tmp_path):
    torch.manual_seed(0)
    head = GroupHead(GroupEncoderConfig(hidden=32, heads=4, dropout=0.0, agreement_feature=True))
    head.eval()
    batch = pad_groups(torch.randn(1, 384), [torch.randn(4, 384)], [[0.1, 0.2, 0.3, 0.4]])
    with torch.no_grad():
        high = expected_scores(head(*batch, agreement=torch.tensor([0.9])))
        low = expected_scores(head(*batch, agreement=torch.tensor([-0.5])))
        unknown = expected_scores(head(*batch))
    assert not torch.allclose(high, low, atol=1e-4) and torch.isfinite(unknown).all()

    # Through the scorer: the job's whole-list value is used when given, else the group's own.
    save_head(head, tmp_path / "ckpt")
    scorer = load_scorer(RerankSettings(model=str(tmp_path / "ckpt"), precision="fp32"))
    texts = ("solar cells on roofs", "a fish", "solar heating", "castle walls")
    ranks = (1, 2, 3, 4)

    def scores(agreement):
        group = GroupInput("solar panels", texts, (4.0, 3.0, 2.0, 1.0), ranks,
                           first_stage_agreement=agreement)
        return scorer.score_groups([group])[0].scores

    assert scores(0.9) != scores(-0.5)
    assert scores(None) == scores(_measured(scorer, "solar panels", texts, ranks))


def _measured(scorer, query, texts, ranks) -> float:
    vectors = scorer.embed([query, *texts])
    return first_stage_agreement(np.array(ranks), (vectors[1:] @ vectors[0]).numpy())


def test_sft_reads_the_samples_agreement_when_the_head_does(tmp_path):
    samples = make_samples().assign(first_stage_agreement=lambda f: np.linspace(-0.2, 0.9, len(f)))
    train_sft(samples, "minilm", tmp_path / "head", _config(agreement_feature=True))
    saved = json.loads((tmp_path / "head" / CONFIG_FILE).read_text())
    assert saved["agreement_feature"] is True
    from grouprank.backends.group_encoder import load_head

    data = trainer._prepare(samples, "sft", load_head(tmp_path / "head").config)
    assert data.agreements.tolist() == pytest.approx(np.linspace(-0.2, 0.9, 12).tolist())
    plain = trainer._prepare(samples.drop(columns="first_stage_agreement"), "sft",
                             load_head(tmp_path / "head").config)
    assert torch.isnan(plain.agreements).all()


def _table_by(spark, path: str, order: str) -> list[tuple]:
    """Two queries of 8 documents whose first-stage scores follow MiniLM's cosine (``agree``),
    its reverse (``reverse``) or a fixed shuffle (``mixed``), written as a candidates table."""
    from grouprank.encoding import embed_in_memory
    from schemas import CANDIDATES

    rows = []
    for q, query in enumerate(["solar panels on a roof", "fish that live in rivers"]):
        texts = [f"{topic} note {k}" for k, topic in enumerate(TOPICS * 2)]
        cosines = (embed_in_memory("minilm", texts, precision="fp32")
                   @ embed_in_memory("minilm", [query], precision="fp32")[0]).numpy()
        scores = {"agree": cosines, "two": cosines, "reverse": -cosines,
                  "mixed": np.random.default_rng(q).permutation(cosines)}[order]
        rows += [(f"q{q}", query, f"d{k}", text, float(score), None)
                 for k, (text, score) in enumerate(zip(texts, scores))]
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").save(path)
    return rows


def test_the_first_stage_agreement_sets_the_fusion_weight_per_table(spark, tmp_path):
    from dataclasses import replace

    from grouprank.encoding import embed_in_memory
    from grouprank.fusion import agreement_weight, logistic_weight
    from grouprank.models import model_ref
    from jobs.candidates import prepare_candidates
    from jobs.embeddings import distinct_texts, embed_texts
    from jobs.stages import rerank as rerank_job

    torch.manual_seed(0)
    save_head(GroupHead(GroupEncoderConfig(hidden=32, heads=4, dropout=0.0, rank_features=True,
                                           fusion_weight=0.5, fusion_reliability=0.8)).eval(),
              tmp_path / "ckpt")
    settings = RerankSettings(model=str(tmp_path / "ckpt"), group_size=4, partitions=2,
                              precision="fp32")
    ref = model_ref(settings.model)
    # Through the job: a first stage that ranks as the encoder does is the strong one, and the
    # job defers to it.
    _table_by(spark, str(tmp_path / "agree"), "agree")
    summary = rerank_job.run(rerank_job.RerankJob(
        str(tmp_path / "agree"), str(tmp_path / "out"), "2026-12-02"), settings)
    fusion = summary["fusion"]
    assert fusion["set_by"] == "first-stage agreement" and fusion["queries"] == 2
    assert fusion["first_stage_agreement"] == pytest.approx(1.0, abs=1e-9)
    assert fusion["weight"] == pytest.approx(agreement_weight(1.0, 0.8), abs=1e-4)
    assert fusion["weight"] < 0.01 and summary["settings"]["fusion_weight"] == fusion["weight"]
    out = spark.read.format("delta").load(str(tmp_path / "out")).toPandas()
    for _, ranked in out.sort_values(["qid", "rank"]).groupby("qid"):
        assert ranked["first_stage_rank"].tolist() == list(range(1, 9))

    def resolved(order: str, where: str = "true") -> tuple[list[tuple], dict]:
        rows = _table_by(spark, str(tmp_path / order), order)
        prepared = prepare_candidates(
            spark.read.format("delta").load(str(tmp_path / order)).where(where))
        vectors = embed_texts(distinct_texts(prepared), settings, ref, 2)
        last.update(prepared=prepared, vectors=vectors)
        return rows, rerank_job.resolve_fusion(prepared, vectors, settings, ref)[1]

    last: dict = {}

    def numpy_mean(rows) -> float:
        """The mean of the queries' agreements, as grouprank computes it in numpy."""
        frame = pd.DataFrame(rows, columns=["qid", "query", "docid", "text", "score", "r"])
        agreements = []
        for _, group in frame.groupby("qid"):
            query = embed_in_memory("minilm", [group["query"].iloc[0]], precision="fp32")[0]
            vectors = embed_in_memory("minilm", list(group.text), precision="fp32")
            ranks = group.score.rank(ascending=False, method="first").to_numpy()
            agreements.append(first_stage_agreement(ranks, (vectors @ query).numpy()))
        return float(np.mean(agreements))

    # One that ranks against it gets no share: the head's score alone.
    rows, fusion = resolved("reverse")
    assert fusion["first_stage_agreement"] == pytest.approx(numpy_mean(rows), abs=1e-6)
    assert fusion["first_stage_agreement"] < -0.5 and fusion["weight"] == 1.0
    # In between, the rule's weight for the table's mean agreement.
    rows, fusion = resolved("mixed")
    assert fusion["first_stage_agreement"] == pytest.approx(numpy_mean(rows), abs=1e-6)
    assert fusion["weight"] == pytest.approx(
        agreement_weight(fusion["first_stage_agreement"], 0.8), abs=1e-4)
    assert fusion["rule"] == "reliability" and fusion["reliability"] == 0.8
    # The same head carrying the logistic rule instead: its weight for the same agreement.
    config = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    shutil.copytree(tmp_path / "ckpt", tmp_path / "logistic")
    (tmp_path / "logistic" / CONFIG_FILE).write_text(json.dumps(
        {**config, "fusion_reliability": None, "fusion_center": 0.3, "fusion_slope": 12.0}))
    logistic = replace(settings, model=str(tmp_path / "logistic"))
    _, by_logistic = rerank_job.resolve_fusion(last["prepared"], last["vectors"], logistic,
                                               model_ref(logistic.model))
    agreement = fusion["first_stage_agreement"]
    assert by_logistic["first_stage_agreement"] == pytest.approx(agreement, abs=1e-9)
    assert by_logistic["weight"] == pytest.approx(logistic_weight(agreement, 0.3, 12.0), abs=1e-4)
    assert by_logistic["weight"] != pytest.approx(fusion["weight"], abs=1e-3)
    assert (by_logistic["rule"], by_logistic["center"], by_logistic["slope"]) == (
        "logistic", 0.3, 12.0)
    # With an echo threshold, a first stage that ranks as the encoder does is its own ranking,
    # which the head already reads: the head scores alone.
    shutil.copytree(tmp_path / "ckpt", tmp_path / "echo")
    (tmp_path / "echo" / CONFIG_FILE).write_text(json.dumps({**config, "fusion_echo": 0.95}))
    echo = replace(settings, model=str(tmp_path / "echo"))
    prepared = prepare_candidates(spark.read.format("delta").load(str(tmp_path / "agree")))
    _, by_echo = rerank_job.resolve_fusion(
        prepared, embed_texts(distinct_texts(prepared), settings, ref, 2), echo,
        model_ref(echo.model))
    assert by_echo["first_stage_agreement"] == pytest.approx(1.0, abs=1e-9)
    assert (by_echo["weight"], by_echo["rule"], by_echo["echo"]) == (1.0, "reliability", 0.95)
    # Two documents a query: no agreement to measure, so the model's own weight.
    _, fusion = resolved("two", "docid IN ('d0', 'd1')")
    assert fusion == {"weight": 0.5, "set_by": "model (no agreement measurable)"}
    # --fusion-weight wins over the rule, and costs no Spark job.
    given = replace(settings, fusion_weight=0.3)
    assert rerank_job.resolve_fusion(None, None, given, ref) == (
        given, {"weight": 0.3, "set_by": "--fusion-weight"})


def test_a_checkpoint_carries_one_fusion_rule_and_a_bad_one_fails_on_loading(tmp_path):
    from grouprank.fusion import FusionRule
    from grouprank.models import model_ref

    assert FusionRule.from_config(GroupEncoderConfig()) is None
    assert FusionRule.from_config(GroupEncoderConfig(fusion_center=0.6, fusion_slope=20.0)) == (
        FusionRule(center=0.6, slope=20.0))
    for bad, message in (({"fusion_center": 0.6}, "set together"),
                         ({"fusion_reliability": 0.8, "fusion_center": 0.6, "fusion_slope": 9},
                          "not both"),
                         ({"fusion_center": 0.6, "fusion_slope": 0.0}, "fusion_slope must be > 0"),
                         ({"fusion_reliability": 1.0}, r"fusion_reliability must be in \(0, 1\)"),
                         ({"fusion_echo": 0.95}, "fusion_echo needs a rule"),
                         ({"fusion_reliability": 0.8, "fusion_echo": 1.5},
                          r"fusion_echo must be in \(0, 1\]")):
        with pytest.raises(ValueError, match=message):
            GroupEncoderConfig(**bad)
    # The echo threshold: the encoder's own ranking gets the head alone; below it, the rule.
    echo = FusionRule.from_config(GroupEncoderConfig(fusion_center=0.525, fusion_slope=30.0,
                                                     fusion_echo=0.95))
    plain = FusionRule(center=0.525, slope=30.0)
    assert echo.weight(1.0) == echo.weight(0.95) == 1.0 and plain.weight(1.0) < 1e-6
    assert echo.weight(0.6) == plain.weight(0.6) < 0.1
    assert echo.describe() == {**plain.describe(), "echo": 0.95}
    save_head(GroupHead(GroupEncoderConfig(hidden=32, heads=4)).eval(), tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    (tmp_path / "ckpt" / CONFIG_FILE).write_text(json.dumps({**config, "fusion_center": 0.6}))
    with pytest.raises(ValueError, match="fusion_center and fusion_slope are set together"):
        model_ref(str(tmp_path / "ckpt"))


def test_the_scorer_computes_only_the_maxsims_it_was_not_given(tmp_path):
    from grouprank.encoding import loaded_encoder
    from grouprank.late_interaction import maxsim_scores

    save_head(GroupHead(GroupEncoderConfig(hidden=32, heads=4, late_interaction=True)).eval(),
              tmp_path / "ckpt")
    scorer = GroupEncoderScorer(tmp_path / "ckpt", precision="fp32")
    texts = ("solar panels on a roof", "baking bread", "river fish")
    groups = [GroupInput(query="solar panels", texts=texts, late_scores=(0.25, None, float("nan"))),
              GroupInput(query="bread", texts=texts[:2])]
    late = scorer._late(groups, torch.Size([2, 3]))
    encoder = loaded_encoder("minilm")
    first = maxsim_scores(encoder, "solar panels", texts, "fp32")
    assert late[0].tolist() == pytest.approx([0.25, *first[1:]], abs=1e-5)
    assert late[1, :2].tolist() == pytest.approx(maxsim_scores(encoder, "bread", texts[:2], "fp32"),
                                                abs=1e-5)
    with pytest.raises(ValueError, match="2 MaxSim scores for a group of 3 documents"):
        scorer._late([GroupInput(query="q", texts=texts, late_scores=(0.1, 0.2))], torch.Size([1, 3]))


def test_a_head_with_late_windows_reads_maxsim_over_them_and_keys_its_table_apart(tmp_path):
    """``late_windows``: the scorer's MaxSims (the embedding stage's and its own) read that many
    windows of each document, and the MaxSim table's key counts those tokens, so MaxSims over
    one window are never reused for a head that reads more (and the reverse)."""
    from grouprank.encoding import loaded_encoder
    from grouprank.late_interaction import maxsim_scores
    from grouprank.models import model_ref
    from jobs.embeddings import maxsim_key, store_key

    with pytest.raises(ValueError, match="late_windows must be >= 1, got 0"):
        GroupEncoderConfig(late_windows=0)
    save_head(GroupHead(GroupEncoderConfig(hidden=32, heads=4, late_interaction=True,
                                           late_windows=3)).eval(), tmp_path / "ckpt")
    scorer = GroupEncoderScorer(tmp_path / "ckpt", precision="fp32")
    encoder = loaded_encoder("minilm")
    long = " ".join(["bread oven flour"] * 120) + " solar panels on the roof"  # > 2 windows
    texts = ("solar panels on a roof", long)
    want = maxsim_scores(encoder, "solar panels", texts, "fp32", windows=3)
    assert want[1] > maxsim_scores(encoder, "solar panels", [long], "fp32")[0] + 0.2
    _, late = scorer.embed_with_late(list(texts), [["solar panels"], ["solar panels"]])
    assert [row[0] for row in late] == pytest.approx(want, abs=1e-5)
    given = scorer._late([GroupInput(query="solar panels", texts=texts)], torch.Size([1, 2]))
    assert given[0].tolist() == pytest.approx(want, abs=1e-5)
    settings = RerankSettings(model=str(tmp_path / "ckpt"), precision="fp32")
    ref = model_ref(settings.model)
    assert ref.encoder.late_windows == 3
    assert store_key(settings, ref)["max_tokens"] == 256
    assert maxsim_key(settings, ref) == {**store_key(settings, ref), "max_tokens": 2 + 254 * 3}
