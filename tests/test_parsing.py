"""Tolerant parsing of groupwise answers: good, malformed, missing ids, out of range."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from grouprank.parsing import MISSING_SCORE, OK, OUT_OF_RANGE, UNPARSED, parse_answer
from grouprank.prompts import load_template


def test_paper_format():
    out = '<reason>[2] is best.</reason><answer>```json {"[1]": 3, "[2]": 9, "[3]": 0}```</answer>'
    p = parse_answer(out, 3)
    assert p.scores == [3.0, 9.0, 0.0]
    assert p.statuses == [OK, OK, OK]
    assert p.has_tags and p.json_valid and p.group_status == OK


def test_template_answer_round_trips():
    text = load_template().answer_text([4, 10, 0, 7])
    assert parse_answer(text, 4).scores == [4.0, 10.0, 0.0, 7.0]


def test_plain_keys_and_string_values_and_decimals():
    p = parse_answer('<answer>{"1": "7", "[2]": 2.5}</answer>', 2)
    assert p.scores == [7.0, 2.5]


def test_missing_ids_are_marked_not_zero():
    p = parse_answer('<answer>```json {"[1]": 5}```</answer>', 3)
    assert p.scores == [5.0, None, None]
    assert p.statuses == [OK, MISSING_SCORE, MISSING_SCORE]
    assert p.group_status == "partial"


def test_out_of_range_and_non_numeric_are_not_clipped():
    p = parse_answer('<answer>{"[1]": 11, "[2]": -1, "[3]": "high", "[4]": true, "[5]": 10}</answer>', 5)
    assert p.scores == [None, None, None, None, 10.0]
    assert p.statuses == [OUT_OF_RANGE] * 4 + [OK]


def test_unknown_ids_are_ignored():
    p = parse_answer('<answer>{"[1]": 1, "[7]": 9}</answer>', 2)
    assert p.scores == [1.0, None]


def test_broken_json_falls_back_to_pairs():
    p = parse_answer('<answer>```json {"[1]": 6, "[2]": 4,, ```', 2)
    assert p.scores == [6.0, 4.0]
    assert not p.json_valid
    assert not p.has_tags  # no closing tag


def test_garbage_is_unparsed():
    for out in ["", "I cannot help with that.", "<answer></answer>", "\x00\x01{", "[1] > [2]"]:
        p = parse_answer(out, 2)
        assert p.scores == [None, None], out
        assert p.statuses == [UNPARSED, UNPARSED]
        assert p.group_status == UNPARSED


def test_no_tags_but_json_is_read():
    p = parse_answer('Scores: {"[1]": 2, "[2]": 8}', 2)
    assert p.scores == [2.0, 8.0]
    assert not p.has_tags and p.json_valid


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=30))
def test_never_raises_and_always_aligned(output, n):
    p = parse_answer(output, n)
    assert len(p.scores) == len(p.statuses) == n
    for score, status in zip(p.scores, p.statuses):
        assert (score is None) == (status != OK)
        if score is not None:
            assert 0.0 <= score <= 10.0
