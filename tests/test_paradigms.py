"""Pointwise and listwise reranking: permutation repair, hand computations, and the Spark job."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from grouprank.backends import GroupInput
from grouprank.backends.causal_lm import CausalLMScorer
from grouprank.backends.listwise import ListwiseScorer
from grouprank.backends.pointwise import PointwiseScoreScorer, YesNoScorer
from grouprank.models import load_scorer
from grouprank.parsing import OK, REPAIRED
from grouprank.permutation import (
    Repair,
    apply_permutation,
    parse_permutation,
    rank_scores,
    sliding_windows,
)
from grouprank.prompts import template_for
from grouprank.settings import RerankSettings
from jobs.stages import rerank as rerank_job
from jobs.configs import RerankJob
from jobs.stages.rerank import build_groups, prepare_candidates
from schemas import CANDIDATES
from tests.test_direct_mode import _hand_expected

GROUPS = [
    GroupInput("what is bm25", ("a ranking function for search", "a fish", "x y z")),
    GroupInput("second query", ("only one document here, a longer one than the others",)),
]

# ---- permutation math (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "n, window, step, expected",
    [
        (100, 20, 10, [(80 - 10 * k, 100 - 10 * k) for k in range(9)]),
        (20, 20, 10, [(0, 20)]),
        (25, 20, 10, [(5, 25), (0, 15)]),
        (3, 20, 10, [(0, 3)]),
        (6, 4, 4, [(2, 6), (0, 2)]),
        (0, 20, 10, []),
    ],
)
def test_sliding_windows_run_bottom_to_top(n, window, step, expected):
    assert sliding_windows(n, window, step) == expected


@pytest.mark.parametrize(
    "output, n, order, repair",
    [
        ("[3] > [1] > [2]", 3, [2, 0, 1], Repair(0, 0, 0)),
        ("3 > 1 > 2", 3, [2, 0, 1], Repair(0, 0, 0)),
        # A repeat keeps its first mention; 2 was never named and goes last.
        ("[3] > [3] > [1]", 3, [2, 0, 1], Repair(0, 1, 1)),
        # [0] and [7] are not ids of a 3-document window.
        ("[0] > [2] > [7] > [1] > [3]", 3, [1, 0, 2], Repair(2, 0, 0)),
        # Missing ids are appended in their current order.
        ("[4]", 5, [3, 0, 1, 2, 4], Repair(0, 0, 4)),
        ("I cannot rank these.", 3, [0, 1, 2], Repair(0, 0, 3)),
        ("", 2, [0, 1], Repair(0, 0, 2)),
        ("[2] is best, then [1].", 3, [1, 0, 2], Repair(0, 0, 1)),
        ("[12] > [2] > [1]", 12, [11, 1, 0] + list(range(2, 11)), Repair(0, 0, 9)),
    ],
)
def test_parse_permutation_repairs_malformed_output(output, n, order, repair):
    assert parse_permutation(output, n) == (order, repair)


def test_apply_permutation_reorders_only_the_window():
    assert apply_permutation(list("abcdef"), 2, 5, [2, 1, 0]) == list("abedcf")
    with pytest.raises(ValueError, match="not a permutation"):
        apply_permutation(list("abc"), 0, 3, [0, 0, 1])


def test_rank_scores_decrease_evenly_with_rank():
    # order[r] = position of the document ranked r + 1; n = 5 gives steps of 2.
    assert rank_scores([4, 0, 3, 1, 2]) == [8.0, 4.0, 2.0, 6.0, 10.0]
    assert rank_scores([0]) == [10.0]


# ---- settings and templates -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"paradigm": "cross"}, "paradigm must be"),
        ({"pointwise_scorer": "logit"}, "pointwise_scorer must be"),
        ({"window_size": 1}, "window_size must be >= 2"),
        ({"window_size": 10, "window_step": 11}, "window_step must be in"),
    ],
)
def test_bad_paradigm_settings_fail(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RerankSettings(**kwargs)


def test_worker_cache_keeps_one_copy_of_the_weights_across_knobs(tiny_model_dir, monkeypatch):
    from grouprank.backends.listwise import ListwiseScorer
    from grouprank.backends.pointwise import YesNoScorer
    from grouprank.models import model_ref
    from udfs import cache
    from udfs.scoring import get_scorer

    ref = model_ref(str(tiny_model_dir))
    before = cache.loads()
    variants = [
        RerankSettings(model=ref.spec, paradigm="pointwise", batch_tokens=512),
        RerankSettings(model=ref.spec, paradigm="listwise", window_step=5),
        RerankSettings(model=ref.spec, max_new_tokens=8, max_doc_tokens=32),
    ]
    scorers = [get_scorer(s, ref, "cpu") for s in variants]
    assert cache.loads() - before == 1  # knobs apply per call, on one loaded model
    assert isinstance(scorers[0], YesNoScorer) and scorers[0].batch_tokens == 512
    assert isinstance(scorers[1], ListwiseScorer) and scorers[1].window_step == 5
    assert scorers[2].max_doc_tokens == 32
    assert len({id(s.model) for s in scorers}) == 1
    # At most GROUPRANK_WORKER_MODELS models stay loaded: one more evicts the least recent.
    monkeypatch.setenv("GROUPRANK_WORKER_MODELS", "1")
    other = cache.cached(("another model",), lambda: object())
    assert cache.cached_keys() == [("another model",)] and other is not None
    again = get_scorer(variants[0], ref, "cpu")
    assert cache.loads() - before == 3 and again.model is not scorers[0].model


def test_cli_exposes_the_paradigm_flags():
    from jobs.stages import parser as stage_parser

    args = stage_parser("rerank").parse_args(
        ["--candidates", "c", "--output", "o", "--run-date", "2026-11-27", "--paradigm",
         "listwise", "--window-size", "8", "--window-step", "4"]
    )
    assert (args.paradigm, args.window_size, args.window_step) == ("listwise", 8, 4)
    assert args.pointwise_scorer == "yesno"
    with pytest.raises(SystemExit):
        stage_parser("rerank").parse_args(["--paradigm", "cross"])


# ---- scorers on the tiny model, against hand computations ----------------------------------


@pytest.fixture(scope="module")
def yesno(tiny_model_dir):
    scorer = load_scorer(RerankSettings(model=str(tiny_model_dir), paradigm="pointwise"))
    assert isinstance(scorer, YesNoScorer)
    return scorer


def _hand_yes_probability(scorer: YesNoScorer, query: str, text: str) -> float:
    """The chat prompt written out by hand (tiny ChatML), one unpadded forward, two logits."""
    t = scorer.template
    user = t.user.format(num=1, query=query, documents=text)
    prompt = (
        f"<|im_start|>system\n{t.system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    tok = scorer.tokenizer
    ids = tok(prompt, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    yes = tok("yes", add_special_tokens=False).input_ids[0]
    no = tok("no", add_special_tokens=False).input_ids[0]
    p = torch.softmax(torch.stack([logits[yes], logits[no]]), dim=0)[0]
    return 10.0 * float(p)


def test_yesno_matches_hand_computation_in_a_padded_batch(yesno):
    results = yesno.score_groups(GROUPS)
    for group, result in zip(GROUPS, results):
        expected = [_hand_yes_probability(yesno, group.query, t) for t in group.texts]
        assert result.scores == pytest.approx(expected, abs=1e-4)
        assert result.statuses == [OK] * len(group.texts)
        assert result.generated_tokens == 0
    assert results[0].prompt_tokens == sum(
        len(yesno.prompt_ids(GROUPS[0].query, t)) for t in GROUPS[0].texts
    )
    flat = [s for r in results for s in r.scores]
    assert max(flat) - min(flat) > 0.01  # not a constant


def test_pointwise_score_reads_one_slot_like_direct_mode(tiny_model_dir):
    settings = RerankSettings(
        model=str(tiny_model_dir), paradigm="pointwise", pointwise_scorer="score"
    )
    scorer = load_scorer(settings)
    assert isinstance(scorer, PointwiseScoreScorer)
    single = CausalLMScorer.from_pretrained(tiny_model_dir, template_for(settings), name="tiny")
    results = scorer.score_groups(GROUPS)
    for group, result in zip(GROUPS, results):
        expected = [_hand_expected(single, GroupInput(group.query, (t,)))[0] for t in group.texts]
        assert result.scores == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def listwise(tiny_model_dir):
    scorer = load_scorer(
        RerankSettings(model=str(tiny_model_dir), paradigm="listwise", window_size=4, window_step=2)
    )
    assert isinstance(scorer, ListwiseScorer)
    return scorer


def test_listwise_order_replays_from_the_window_outputs(listwise):
    texts = tuple(f"document {i} about the fox" for i in range(7))
    groups = [GroupInput("fox", texts), GroupInput("dog", texts[:3])]
    results = listwise.score_groups(groups)
    for group, result in zip(groups, results):
        windows = sliding_windows(len(group.texts), 4, 2)
        outputs = result.output.split("\n")
        assert len(outputs) == len(windows)
        # Replay by hand: every number is an id; drop unknown/repeated; append the rest.
        order = list(range(len(group.texts)))
        placed_by_model: dict[int, bool] = {i: True for i in order}
        for (start, end), text in zip(windows, outputs):
            size = end - start
            named = []
            for token in "".join(c if c.isdigit() else " " for c in text).split():
                if 1 <= int(token) <= size and int(token) - 1 not in named:
                    named.append(int(token) - 1)
            rest = [i for i in range(size) if i not in named]
            window = order[start:end]
            for i in rest:
                placed_by_model[window[i]] = False
            order[start:end] = [window[i] for i in named + rest]
        n = len(order)
        expected = [0.0] * n
        for rank, position in enumerate(order):
            expected[position] = 10.0 * (n - rank) / n
        assert result.scores == pytest.approx(expected)
        assert [s == OK for s in result.statuses] == [placed_by_model[i] for i in range(n)]
        assert set(result.statuses) <= {OK, REPAIRED}
        assert result.generated_tokens > 0 and result.prompt_tokens > 0
    assert listwise.repairs["windows"] == 3 + 1


def test_listwise_window_budget_fits_a_full_permutation(listwise):
    ranking = " > ".join(f"[{i}]" for i in range(1, 5))
    assert listwise.output_budget(4) == len(listwise.tokenizer(ranking).input_ids) + 1


# ---- the Spark job with each paradigm --------------------------------------------------------


def _rows(qid: str, n: int) -> list[tuple]:
    return [
        (qid, "fox query", f"{qid}-d{i:02d}", f"text {i} on foxes {i % 3}", float(n - i), i + 1)
        for i in range(n)
    ]


def _run(spark, tmp_path, rows, settings) -> tuple[dict, object]:
    cand = str(tmp_path / "candidates")
    spark.createDataFrame(rows, CANDIDATES).write.format("delta").mode("overwrite").save(cand)
    out = str(tmp_path / "out")
    summary = rerank_job.run(RerankJob(cand, out, "2026-11-27"), settings)
    return summary, spark.read.format("delta").load(out).toPandas()


def test_listwise_groups_are_whole_lists_in_first_stage_order(spark, tiny_model_dir):
    rows = _rows("a", 25) + _rows("b", 3)
    # No given rank: first-stage order comes from the scores, shuffled for query a.
    rows = [(*r[:4], float(i * 7 % 25) if r[0] == "a" else r[4], None) for i, r in enumerate(rows)]
    prepared = prepare_candidates(spark.createDataFrame(rows, CANDIDATES))
    s = RerankSettings(model=str(tiny_model_dir), paradigm="listwise", repeats=2)
    groups = build_groups(prepared, s).toPandas().sort_values(["qid", "repeat"])
    assert groups.group.tolist() == [0, 0, 0, 0]
    for qid, docids in zip(groups.qid, groups.docids):
        by_score = sorted((r for r in rows if r[0] == qid), key=lambda r: (-r[4], r[2]))
        assert list(docids) == [r[2] for r in by_score]


@pytest.mark.parametrize(
    "overrides",
    [
        {"paradigm": "pointwise", "pointwise_scorer": "yesno"},
        {"paradigm": "pointwise", "pointwise_scorer": "score"},
    ],
)
def test_pointwise_job_writes_every_candidate(spark, tiny_model_dir, tmp_path, overrides):
    settings = RerankSettings(model=str(tiny_model_dir), partitions=2, group_size=4, **overrides)
    rows = _rows("a", 9) + _rows("b", 2)
    summary, table = _run(spark, tmp_path, rows, settings)
    assert len(table) == len(rows) and summary["status_counts"] == {"ok": len(rows)}
    assert table.model_score.between(0, 10).all() and table.model_score.nunique() > 1
    # Pointwise scores do not depend on the group a document was dealt into.
    alone = load_scorer(settings).score_groups(
        [GroupInput(r[1], (r[3],)) for r in rows]
    )
    by_doc = table.set_index("docid").model_score
    assert [by_doc[r[2]] for r in rows] == pytest.approx([a.scores[0] for a in alone], abs=1e-4)
    assert summary["scoring"]["prompt_tokens"] > 0


def test_listwise_job_scores_are_rank_positions(spark, tiny_model_dir, tmp_path):
    settings = RerankSettings(
        model=str(tiny_model_dir), partitions=2, paradigm="listwise", window_size=4, window_step=2
    )
    rows = _rows("a", 7) + _rows("b", 1)
    summary, table = _run(spark, tmp_path, rows, settings)
    assert len(table) == len(rows) == summary["rows_out"]
    assert summary["scoring"]["groups"] == 2  # one list per query
    for qid, part in table.groupby("qid"):
        n = len(part)
        assert sorted(part.model_score) == pytest.approx([10.0 * k / n for k in range(1, n + 1)])
        assert part.repeat_groups.map(list).tolist() == [[0]] * n
    assert set(table.status) <= {OK, REPAIRED}
    assert (table.run_date == dt.date(2026, 11, 27)).all()
