"""Prompt building from the template file, and user-supplied templates."""

from __future__ import annotations

import pytest

from grouprank.prompts import load_template
from grouprank.settings import RerankSettings


def test_groupwise_prompt_structure():
    t = load_template()
    system, user = t.messages("why is the sky blue", ["Rayleigh scattering.", "Blue paint {x}."])
    assert system["role"] == "system" and user["role"] == "user"
    s = system["content"]
    # Usefulness first, relevance second; comparison across the group; a 0-10 rubric.
    assert s.index("usefulness") < s.index("relevance")
    assert "compare" in s and "0 to 10" in s
    assert '{"[1]": 0, "[2]": 9, "[3]": 4}' in s
    assert "<reason>" in s and "<answer>" in s and "```json" in s
    u = user["content"]
    assert u.startswith("Below are 2 documents")
    assert "Query: why is the sky blue" in u
    # Documents as "[i]. text"; braces in texts are kept verbatim.
    assert "[1]. Rayleigh scattering.\n[2]. Blue paint {x}." in u


def test_direct_skeleton_pieces():
    t = load_template()
    assert t.answer_prefix_text().endswith('{"[1]": ')
    assert t.slot_text(3) == ', "[3]": '
    assert t.answer_text([1, 2]) == (
        '<reason>Scored directly.</reason><answer>```json {"[1]": 1, "[2]": 2}```</answer>'
    )


def test_user_template_replaces_bundled(tmp_path):
    path = tmp_path / "mine.toml"
    text = load_template().source_text.replace("Below are {num} documents", "Here come {num} docs")
    path.write_text(text)
    t = load_template(path)
    assert t.messages("q", ["a"])[1]["content"].startswith("Here come 1 docs")
    # The settings digest follows the template text.
    s = RerankSettings()
    assert s.digest(t.source_text, "m") != s.digest(load_template().source_text, "m")


@pytest.mark.parametrize(
    "content, message",
    [
        ("system = 'x'", "lacks keys"),
        ("not toml [", "not valid TOML"),
        (load_template().source_text.replace("{query}", "{question}"), "bad format field"),
    ],
)
def test_bad_templates_fail_early(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_template(path)


def test_missing_template_file():
    with pytest.raises(ValueError, match="cannot read prompt template"):
        load_template("/nonexistent/prompt.toml")


@pytest.mark.parametrize(
    "kwargs", [{"group_size": 0}, {"repeats": 0}, {"fusion_weight": 1.5}, {"mode": "fast"}]
)
def test_invalid_settings_name_the_field(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        RerankSettings(**kwargs)
