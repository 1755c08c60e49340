"""Prompt templates of every paradigm: loading, rendering and the direct-mode answer skeleton.

Each paradigm reads one bundled TOML file from ``grouprank/templates/`` (``--prompt-template``
replaces it with a file of the same keys): groupwise.toml and pointwise_score.toml are
``PromptTemplate``s, pointwise_yesno.toml a ``YesNoTemplate`` and listwise.toml a ``ChatTemplate``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TypeVar

if TYPE_CHECKING:
    from grouprank.settings import RerankSettings


@dataclass(frozen=True)
class ChatTemplate:
    """A system turn and a user turn listing bracketed documents, plus text opening the answer."""

    system: str
    user: str
    document: str
    document_separator: str
    # Written after the assistant turn opens, before the model's first token.
    answer_prefix: str
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

    def _check(self) -> None:
        self.messages("q", ["d"])
        self.answer_prefix.format()


@dataclass(frozen=True)
class PromptTemplate(ChatTemplate):
    """A groupwise prompt: the chat turns plus the answer skeleton used by direct mode."""

    slot: str
    slot_separator: str
    answer_suffix: str

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

    def _check(self) -> None:
        super()._check()
        self.answer_text([1, 2])
        self.slot_text(2)


@dataclass(frozen=True)
class YesNoTemplate(ChatTemplate):
    """A relevance-judgement prompt for one document, answered by the word ``yes`` or ``no``."""

    # The two answer words; the first token of each is read at the answer position.
    yes: str
    no: str


T = TypeVar("T", bound=ChatTemplate)


def load_template(
    path: str | Path | None = None, bundled: str = "groupwise.toml"
) -> PromptTemplate:
    """Loads a prompt template TOML file; ``None`` loads the bundled file ``bundled``.

    Raises ``ValueError`` naming missing keys or unknown format fields before any model work.
    """
    return _load(PromptTemplate, path, bundled)


def template_for(settings: RerankSettings) -> ChatTemplate:
    """The template the settings' paradigm uses: ``--prompt-template``, else its bundled file.

    Example:
        >>> from grouprank.settings import RerankSettings
        >>> type(template_for(RerankSettings(paradigm="listwise"))).__name__
        'ChatTemplate'
    """
    path = settings.prompt_template
    if settings.paradigm == "listwise":
        return _load(ChatTemplate, path, "listwise.toml")
    if settings.paradigm == "pointwise" and settings.pointwise_scorer == "yesno":
        return _load(YesNoTemplate, path, "pointwise_yesno.toml")
    if settings.paradigm == "pointwise":
        return _load(PromptTemplate, path, "pointwise_score.toml")
    return _load(PromptTemplate, path, "groupwise.toml")


def _load(cls: type[T], path: str | Path | None, bundled: str) -> T:
    if path is None:
        text = resources.files("grouprank").joinpath(f"templates/{bundled}").read_text("utf-8")
        origin = f"bundled {bundled}"
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
    keys = [f.name for f in dataclasses.fields(cls) if f.name != "source_text"]
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"prompt template {origin} lacks keys: {', '.join(missing)}")
    template = cls(**{k: str(data[k]) for k in keys}, source_text=text)
    try:
        template._check()
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"prompt template {origin} has a bad format field: {err!r}") from err
    return template


def chat_template_digest(tokenizer) -> str:
    """16 hex digits of sha256 over a tokenizer's chat template (what a samples table records).

    Example:
        >>> class T: chat_template = "{{ messages }}"
        >>> len(chat_template_digest(T()))
        16
    """
    import hashlib

    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # several named templates
        template = repr(sorted(template.items()))
    return hashlib.sha256(template.encode()).hexdigest()[:16]
