"""What every reader shares: the error, the ``Benchmark`` value, opening files, iterating lines
and JSON records, reading typed fields, and building the result frame.

    from grouprank.formats.common import FormatError, open_text
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# BRIGHT writes this placeholder for "no ids".
_NO_IDS = "N/A"


class FormatError(ValueError):
    """A file that does not follow its format; the message names the file and line."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Benchmark:
    """The three tables of a benchmark, as pandas frames with the project's column names."""

    corpus: pd.DataFrame
    queries: pd.DataFrame
    qrels: pd.DataFrame


def open_text(path: str | Path) -> io.TextIOBase:
    """Opens a text file for reading, decompressing ``.gz``; a missing file names the path.

    Example:
        >>> with open_text("../shared/data/vaswani/qrels") as handle:  # doctest: +SKIP
        ...     first = handle.readline()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    with open_text(path) as handle:
        try:
            yield from enumerate(handle, 1)
        except UnicodeDecodeError as err:
            raise FormatError(path, None, f"not UTF-8 text ({err})") from err


def _nonblank_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    return ((number, line) for number, line in _lines(path) if line.strip())


def _jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _nonblank_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FormatError(path, number, f"invalid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise FormatError(path, number, "expected a JSON object")
        yield number, record


def _records(path: str | Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """Rows of a JSON-lines file (with line numbers) or a parquet file (without)."""
    if str(path).endswith(".parquet"):
        yield from ((None, r) for r in pd.read_parquet(path).to_dict("records"))
    else:
        yield from _jsonl(path)


def _frame(rows: list[tuple], columns: list[str], path: str | Path, what: str) -> pd.DataFrame:
    if not rows:
        raise FormatError(path, None, f"no {what} found")
    return pd.DataFrame(rows, columns=columns)


def _unique(df: pd.DataFrame, keys: list[str], path: str | Path) -> pd.DataFrame:
    dupes = df[df.duplicated(keys, keep=False)]
    if not dupes.empty:
        example = tuple(dupes.iloc[0][keys])
        raise FormatError(path, None, f"duplicate {'/'.join(keys)} {example}")
    return df


def _judgements(rows: list[tuple[str, str, int]], path: str | Path) -> pd.DataFrame:
    """A qrels frame (qid, docid, relevance) from rows that must be non-empty and unique."""
    return _unique(_frame(rows, ["qid", "docid", "relevance"], path, "judgements"),
                   ["qid", "docid"], path)


def _field(record: dict, key: str, path: str | Path, line: int | None, optional: bool = False):
    if key not in record or record[key] is None:
        if optional:
            return None
        raise FormatError(path, line, f"missing field {key!r}")
    return record[key]


def _id(record: dict, key: str, path: str | Path, line: int | None) -> str:
    value = _field(record, key, path, line)
    if isinstance(value, (dict, list, float)) or str(value) == "":
        raise FormatError(path, line, f"field {key!r} is not a usable id: {value!r}")
    return str(value)


def _text(record: dict, key: str, path: str | Path, line: int | None) -> str:
    value = _field(record, key, path, line)
    if not isinstance(value, str):
        raise FormatError(path, line, f"field {key!r} is not a string: {value!r}")
    return value


def _int(value: Any, key: str, path: str | Path, line: int | None) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        return int(float(value))
    except (TypeError, ValueError):
        raise FormatError(path, line, f"field {key!r} is not an integer: {value!r}") from None


def _id_list(value: Any, key: str, path: str | Path, line: int | None) -> list[str]:
    if value is None:
        return []
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(path, line, f"field {key!r} is not a list of ids: {value!r}")
    return [v for v in value if v and v != _NO_IDS]

