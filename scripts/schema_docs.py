"""Writes every table's column list in the docs from its StructType, or checks that they match.

    .venv/bin/python scripts/schema_docs.py            # rewrite the generated blocks in docs/
    .venv/bin/python scripts/schema_docs.py --check    # exit 1 and show the diff if they differ

A generated block sits between ``<!-- schema: schemas.reranked.RERANKED -->`` and
``<!-- /schema -->``; the marker names the module and the StructType. Each column's meaning is the
comment written above its ``StructField`` in that module (``tests/test_docs.py`` runs the check).
A ``<!-- statuses -->`` ... ``<!-- /statuses -->`` block lists every per-document status from
``grouprank.parsing.STATUSES``, and a ``<!-- flags: rerank -->`` ... ``<!-- /flags -->`` block a
stage's flags from the stage registry (``jobs.stages``): name, default and the comment above
the config field, the same text ``grouprank rerank --help`` prints.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "docs" / "ARCHITECTURE.md", REPO / "docs" / "RUNNING.md", REPO / "README.md")
_BLOCK = re.compile(r"(<!-- schema: ([\w.]+) -->\n)(.*?)(<!-- /schema -->)", re.DOTALL)
_STATUSES = re.compile(r"(<!-- statuses -->\n)(.*?)(<!-- /statuses -->)", re.DOTALL)
_FLAGS = re.compile(r"(<!-- flags: ([\w-]+) -->\n)(.*?)(<!-- /flags -->)", re.DOTALL)


def column_comments(module, name: str) -> dict[str, str]:
    """The comment lines right above each ``T.StructField("column", ...)`` of ``name``."""
    lines = inspect.getsource(module).splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{name} = ")), None)
    comments: dict[str, str] = {}
    if start is None:
        return comments
    pending: list[str] = []
    for line in lines[start + 1:]:
        stripped = line.strip()
        if line.startswith(")"):
            break
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r'T\.StructField\("(\w+)"', stripped)
        if match:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


def schema_table(ref: str) -> str:
    """A markdown table of the StructType ``ref`` (``module.NAME``): column, type, nullable, meaning.

    Example:
        >>> print(schema_table("schemas.qrels.QRELS").splitlines()[2])
        | `qid` | string | no |  |
    """
    module_name, name = ref.rsplit(".", 1)
    module = importlib.import_module(module_name)
    schema = getattr(module, name)
    comments = column_comments(module, name)
    # A column a schema takes from another of its module's (``[*OTHER.fields, ...]``), not
    # declared in its own source, keeps the meaning written there.
    for other in vars(module):
        if other != name and isinstance(getattr(module, other), type(schema)):
            for column, meaning in column_comments(module, other).items():
                comments.setdefault(column, meaning)
    rows = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for field in schema.fields:
        meaning = comments.get(field.name, "").replace("|", "\\|")
        rows.append(f"| `{field.name}` | {field.dataType.simpleString()} | "
                    f"{'yes' if field.nullable else 'no'} | {meaning} |")
    return "\n".join(rows) + "\n"


def status_table() -> str:
    """A markdown table of every per-document status and its meaning."""
    from grouprank.parsing import STATUSES

    rows = ["| status | meaning |", "| --- | --- |"]
    rows += [f"| `{name}` | {meaning} |" for name, meaning in STATUSES.items()]
    return "\n".join(rows) + "\n"


def flag_table(stage: str) -> str:
    """A markdown table of a stage's flags: flag, default, meaning (its config field comments).

    Example:
        >>> print(flag_table("demo").splitlines()[2])
        | `--workdir` | `out/demo` | Folder for the demo's tables (candidates, reranked), replaced on every run. |
    """
    import dataclasses

    from jobs.args import field_comments
    from jobs.stages import config_classes

    rows = ["| flag | default | meaning |", "| --- | --- | --- |"]
    for config in config_classes(stage):
        comments = field_comments(config)
        for field in dataclasses.fields(config):
            default = field.default
            shown = ("required" if default is dataclasses.MISSING else "none" if default is None
                     else ("on" if default else "off") if isinstance(default, bool)
                     else f"`{default}`" if default != "" else "empty")
            meaning = comments.get(field.name, "").replace("|", "\\|")
            rows.append(f"| `--{field.name.replace('_', '-')}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """``text`` with every generated block rewritten from its StructType, the status list or the
    stage registry."""
    text = _BLOCK.sub(lambda m: m.group(1) + schema_table(m.group(2)) + m.group(4), text)
    text = _FLAGS.sub(lambda m: m.group(1) + flag_table(m.group(2)) + m.group(4), text)
    return _STATUSES.sub(lambda m: m.group(1) + status_table() + m.group(3), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    stale = 0
    for path in DOCS:
        text = path.read_text()
        fresh = render(text)
        if fresh == text:
            continue
        stale += 1
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(True), fresh.splitlines(True), str(path), "from schemas"))
        else:
            path.write_text(fresh)
            print(f"rewrote {path.relative_to(REPO)}")
    if args.check and stale:
        print(f"\n{stale} file(s) out of date: run .venv/bin/python scripts/schema_docs.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
