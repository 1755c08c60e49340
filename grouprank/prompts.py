"""Groupwise prompt templates: loading, rendering and the direct-mode answer skeleton."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

_KEYS = (
    "system",
    "user",
    "document",
    "document_separator",
    "answer_prefix",
    "slot",
    "slot_separator",
    "answer_suffix",
)


@dataclass(frozen=True)
class PromptTemplate:
    """A groupwise prompt: the chat turns plus the answer skeleton used by direct mode."""

    system: str
    user: str
    document: str
    document_separator: str
    answer_prefix: str
    slot: str
    slot_separator: str
    answer_suffix: str
    source_text: str

    def messages(self, query: str, texts: Sequence[str]) -> list[dict[str, str]]:
        """Chat messages for one group (texts already truncated).

        Example:
            >>> t = load_template()
            >>> m = t.messages("what is BM25?", ["a ranking function", "a fish"])
            >>> m[0]["role"], "[2]. a fish" in m[1]["content"]
            ('system', True)
        """
        documents = self.document_separator.join(
            self.document.format(index=i, text=text) for i, text in enumerate(texts, start=1)
        )
        user = self.user.format(num=len(texts), query=query, documents=documents)
        return [
            {"role": "system", "content": self.system.format()},
            {"role": "user", "content": user},
        ]

    def answer_prefix_text(self) -> str:
        """The start of the answer up to and including the first slot."""
        return self.answer_prefix.format() + self.slot.format(index=1)

    def slot_text(self, index: int) -> str:
        """Text fed after the score of document ``index - 1`` and before that of ``index``."""
        return self.slot_separator.format() + self.slot.format(index=index)

    def answer_text(self, scores: Sequence[int]) -> str:
        """A complete answer block for the given scores (the format the model is asked for)."""
        body = self.slot_separator.format().join(
            self.slot.format(index=i) + str(s) for i, s in enumerate(scores, start=1)
        )
        return self.answer_prefix.format() + body + self.answer_suffix.format()


def load_template(path: str | Path | None = None) -> PromptTemplate:
    """Loads a prompt template TOML file; ``None`` loads the bundled groupwise template.

    Raises ``ValueError`` naming missing keys or unknown format fields before any model work.
    """
    if path is None:
        text = resources.files("grouprank").joinpath("templates/groupwise.toml").read_text("utf-8")
        origin = "bundled groupwise.toml"
    else:
        origin = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as err:
            raise ValueError(f"cannot read prompt template {origin}: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"prompt template {origin} is not valid TOML: {err}") from err
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ValueError(f"prompt template {origin} lacks keys: {', '.join(missing)}")
    template = PromptTemplate(**{k: str(data[k]) for k in _KEYS}, source_text=text)
    _check_fields(template, origin)
    return template


def _check_fields(t: PromptTemplate, origin: str) -> None:
    try:
        t.messages("q", ["d"])
        t.answer_text([1, 2])
        t.slot_text(2)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"prompt template {origin} has a bad format field: {err!r}") from err
