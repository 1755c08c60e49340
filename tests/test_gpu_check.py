"""bench/gpu_check.py works end to end before a GPU is ever lent: ``--tiny`` on CPU.

The Spark section is left out here: a local-cluster session takes over a minute to start on the
shared CI cores. It is the rerank job itself, covered by tests/test_rerank_job.py.
"""

from __future__ import annotations

import json
import time

import pytest

from bench import gpu_check


def test_tiny_run_writes_every_section_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--tiny", "--sections", "correctness,speed,paradigms",
                           "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    sections = results["sections"]
    assert set(sections) == set(gpu_check.SECTIONS)
    assert {k: v["status"] for k, v in sections.items()} == {
        "correctness": "ok", "speed": "ok", "paradigms": "ok", "spark": "skipped"}

    correctness = sections["correctness"]
    assert correctness["groups"] == len(correctness["kendall_tau_per_group"]) >= 1
    assert all(-1 <= t <= 1 for t in correctness["kendall_tau_per_group"] if t is not None)
    assert correctness["max_abs_delta_score"] >= correctness["mean_abs_delta_score"] >= 0

    speed = sections["speed"]
    assert speed["attention"] == "sdpa"
    assert speed["prefill_prompt_tokens"] >= speed["prefill_computed_tokens"] > 0
    assert speed["prefill_prompt_tokens_per_s"] > 0 and speed["docs_per_s"] > 0
    assert speed["scored_groups"] >= 1

    paradigms = sections["paradigms"]
    assert set(paradigms["per_paradigm"]) == {"groupwise/direct", "pointwise/yesno", "listwise"}
    assert paradigms["listwise_over_groupwise"] > 0 and paradigms["pointwise_over_groupwise"] > 0
    # EOS is off on the random model: each listwise window generates its whole budget.
    listwise = paradigms["per_paradigm"]["listwise"]
    assert listwise["generated_tokens_per_query"] == (
        paradigms["listwise_generated_tokens_per_window"] * listwise["calls_per_query"])

    table = capsys.readouterr().out
    for name in gpu_check.SECTIONS:
        assert f"| {name} |" in table


def test_a_failing_or_overrunning_section_is_recorded_and_the_next_runs(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("no such device")

    def slow(*args):
        time.sleep(3)
        return {}

    monkeypatch.setattr(gpu_check, "correctness", broken)
    monkeypatch.setattr(gpu_check, "speed", slow)
    monkeypatch.setattr(gpu_check, "paradigms", lambda *args: {"measured": True})
    monkeypatch.setattr(gpu_check, "GRACE", 0)
    config = gpu_check.CheckConfig.tiny_shapes(
        out=str(tmp_path / "r.json"), sections=("correctness", "speed", "paradigms"),
        seconds={**gpu_check.TINY_SECONDS, "speed": 1})
    sections = gpu_check.run_check(config)["sections"]
    assert sections["correctness"]["status"] == "error"
    assert "RuntimeError: no such device" in sections["correctness"]["error"]
    assert sections["speed"]["status"] == "timed_out"
    assert sections["paradigms"] == {"status": "ok", "measured": True,
                                     "seconds": sections["paradigms"]["seconds"]}
    assert json.loads((tmp_path / "r.json").read_text())["sections"] == sections


@pytest.mark.parametrize("a, b, expected", [
    ([1, 2, 3], [1, 2, 3], 1.0),
    ([1, 2, 3], [3, 2, 1], -1.0),
    ([1, 2, 3, 4], [1, 3, 2, 4], 4 / 6),  # one discordant pair of six
    ([1, 1, 2], [1, 2, 3], 2 / (2 * 3) ** 0.5),  # tau-b: one pair tied in a only
    ([5, 5, 5], [1, 2, 3], None),
])
def test_kendall_tau_b_by_hand(a, b, expected):
    tau = gpu_check.kendall_tau(a, b)
    assert tau == (None if expected is None else pytest.approx(expected))


def test_groups_are_balanced_and_cover_each_candidate_once():
    query = gpu_check.Query("7", "q", [str(i) for i in range(45)], ["t"] * 45, list(range(1, 46)))
    groups = gpu_check.groups_of(query)
    assert [len(docids) for docids, _ in groups] == [15, 15, 15]
    assert sorted(d for docids, _ in groups for d in docids) == sorted(query.docids)
    assert groups == gpu_check.groups_of(query)  # seeded
