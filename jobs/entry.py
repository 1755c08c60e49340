"""The command-line entry shared by the ingest, retrieve and evaluate jobs: flags from the job's
config dataclass, logging, one-line errors with exit code 2, and the closing summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from jobs.args import add_dataclass_arguments, dataclass_from_args

C = TypeVar("C")


def job_parser(
    command: str, doc: str, config: type, settings: type | tuple[type, ...] | None = None
) -> argparse.ArgumentParser:
    """The job's argument parser: one flag per field of its config (and settings) dataclasses."""
    parser = argparse.ArgumentParser(prog=f"grouprank {command}", description=doc.splitlines()[0])
    for cls in (config, *_as_tuple(settings)):
        add_dataclass_arguments(parser, cls)
    return parser


def _as_tuple(settings: type | tuple[type, ...] | None) -> tuple[type, ...]:
    if settings is None:
        return ()
    return settings if isinstance(settings, tuple) else (settings,)


def run_job(
    command: str,
    config: type[C],
    run: Callable[..., dict],
    argv: list[str] | None,
    doc: str,
    settings: type | tuple[type, ...] | None = None,
    errors: tuple[type[Exception], ...] = (ValueError, FileNotFoundError),
) -> int:
    """Parses ``argv`` into ``config`` (and each ``settings`` dataclass, when the job has more),
    calls ``run`` and returns the exit code: 0, or 2 with the error on stderr for bad
    flags, tables or files (``errors``).

    Example:
        >>> run_job("evaluate", EvaluateJob, run, ["--help"], __doc__)  # doctest: +SKIP
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = job_parser(command, doc, config, settings).parse_args(argv)
    try:
        objects = [dataclass_from_args(cls, args) for cls in (config, *_as_tuple(settings))]
        run(*objects)
    except errors as err:
        print(f"grouprank {command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def print_summary(headline: str, summary: dict) -> None:
    """Prints the human headline, then the summary as one JSON line for logs and scripts."""
    print(headline)
    print("summary: " + json.dumps(summary, sort_keys=True, default=str))
