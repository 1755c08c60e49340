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


def run_job(
    command: str, config: type[C], run: Callable[[C], dict], argv: list[str] | None, doc: str
) -> int:
    """Parses ``argv`` into ``config``, calls ``run`` and returns the exit code: 0, or 2 with the
    error on stderr for bad flags, tables or files.

    Example:
        >>> run_job("evaluate", EvaluateJob, run, ["--help"], __doc__)  # doctest: +SKIP
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(prog=f"grouprank {command}", description=doc.splitlines()[0])
    add_dataclass_arguments(parser, config)
    args = parser.parse_args(argv)
    try:
        run(dataclass_from_args(config, args))
    except (ValueError, FileNotFoundError) as err:
        print(f"grouprank {command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def print_summary(headline: str, summary: dict) -> None:
    """Prints the human headline, then the summary as one JSON line for logs and scripts."""
    print(headline)
    print("summary: " + json.dumps(summary, sort_keys=True, default=str))
