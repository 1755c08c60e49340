"""Command-line arguments built from config dataclasses, so defaults and help live in one place.

A field's help text is the comment written above it in the dataclass (one comment per field).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def field_comments(cls: type) -> dict[str, str]:
    """Maps each field of a dataclass to the comment lines written right above it."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^(\w+)\s*:", stripped)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds ``--field-name`` for every field of ``cls``, typed and defaulted from the dataclass."""
    hints = typing.get_type_hints(cls)
    helps = field_comments(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        kwargs: dict[str, Any] = {"dest": field.name, "help": helps.get(field.name, "")}
        required = field.default is dataclasses.MISSING
        if not required:
            kwargs["default"] = field.default
            kwargs["help"] += f" (default: {field.default})"
        else:
            kwargs["required"] = True
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif choices:
            kwargs["choices"] = choices
        else:
            kwargs["type"] = _scalar_type(hint)
        parser.add_argument(flag, **kwargs)


def dataclass_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Builds ``cls`` from the parsed arguments that ``add_dataclass_arguments`` declared."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def _scalar_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:  # Optional[X]
        return args[0]
    return hint
