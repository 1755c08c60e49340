"""The command-line entry shared by every job: flags from the job's config dataclass, logging
(``--verbose``), one-line errors with exit code 2, and the closing summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from jobs.args import add_dataclass_arguments, dataclass_from_args

C = TypeVar("C")
# The project's own loggers; everything else (py4j, transformers, Spark's JVM) stays at WARNING.
PROJECT_LOGGERS = ("grouprank", "jobs", "udfs")
# Spark error conditions meaning "the table or path named is not there, or is not a table".
_MISSING_CONDITIONS = (
    "PATH_NOT_FOUND",
    "TABLE_OR_VIEW_NOT_FOUND",
    "SCHEMA_NOT_FOUND",
    "UNABLE_TO_INFER_SCHEMA",
    "DELTA_TABLE_NOT_FOUND",
    "DELTA_MISSING_DELTA_TABLE",
    "DELTA_PATH_DOES_NOT_EXIST",
    "FAILED_READ_FILE",
)
# Spark error conditions meaning "the output cannot be created there".
_UNWRITABLE_CONDITIONS = ("DELTA_CANNOT_CREATE_LOG_PATH",)
# Java exceptions, anywhere in a failure's cause chain, that mean the OS or the storage refused.
_DENIED_CLASSES = (
    "java.nio.file.AccessDeniedException",
    "org.apache.hadoop.security.AccessControlException",
)
_DENIED_WORDS = ("Permission denied", "Operation not permitted", "Read-only file system",
                 "Mkdirs failed to create", "Access Denied", "AccessDenied")


def job_parser(
    command: str, doc: str, config: type, settings: type | tuple[type, ...] | None = None
) -> argparse.ArgumentParser:
    """The job's argument parser: one flag per field of its config (and settings) dataclasses,
    and ``--verbose``."""
    parser = argparse.ArgumentParser(prog=f"grouprank {command}", description=doc.splitlines()[0])
    for cls in (config, *_as_tuple(settings)):
        add_dataclass_arguments(parser, cls)
    parser.add_argument(
        "--verbose", action="store_true",
        help="the project's logs at DEBUG and Spark's at INFO (default: INFO and WARN)",
    )
    return parser


def _as_tuple(settings: type | tuple[type, ...] | None) -> tuple[type, ...]:
    if settings is None:
        return ()
    return settings if isinstance(settings, tuple) else (settings,)


def configure_logging(verbose: bool = False) -> None:
    """The project's loggers at INFO (DEBUG when ``verbose``), every other logger at WARNING.

    Spark's JVM log follows (``jobs.session``): WARN, or INFO when verbose; so do Hugging
    Face's progress bars (off unless verbose).
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not verbose:
        # Hugging Face's per-load progress bars ("Loading weights"), here and in the Python
        # workers, which inherit this environment; read when transformers is first imported.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def run_job(
    command: str,
    config: type[C],
    run: Callable[..., object],
    argv: list[str] | None,
    doc: str,
    settings: type | tuple[type, ...] | None = None,
    errors: tuple[type[Exception], ...] = (ValueError, FileNotFoundError),
) -> int:
    """Parses ``argv`` into ``config`` (and each ``settings`` dataclass, when the job has more),
    calls ``run`` and returns the exit code: 0, or 2 with a one-line error on stderr for bad
    flags, tables or files (``errors``), a table or path that is missing or not a table, a
    permission problem, or an unfilled jar cache.

    Example:
        >>> run_job("evaluate", EvaluateJob, run, ["--help"], __doc__)  # doctest: +SKIP
    """
    args = job_parser(command, doc, config, settings).parse_args(argv)
    configure_logging(args.verbose)
    try:
        objects = [dataclass_from_args(cls, args) for cls in (config, *_as_tuple(settings))]
        run(*objects)
    except Exception as err:
        message = str(err) if isinstance(err, errors) else input_error(err)
        if message is None:
            raise
        print(f"grouprank {command}: error: {message}", file=sys.stderr)
        return 2
    return 0


def input_error(err: BaseException) -> str | None:
    """The one-line message for a failure caused by what the job was pointed at, or None for
    any other failure (a bug, a crash), which keeps its traceback.

    Covered: a missing table or path, a path that holds no readable table, a permission or
    read-only problem (Python's or the JVM's), and the jar cache not filled yet.

    Example:
        >>> input_error(PermissionError(13, "Permission denied", "/data/qrels"))
        "permission denied: [Errno 13] Permission denied: '/data/qrels'"
        >>> input_error(KeyError("bug")) is None
        True
    """
    return None if (message := _input_error(err)) is None else _first_line(message)


def _input_error(err: BaseException) -> str | None:
    from jobs.session import DeltaJarsMissing

    if isinstance(err, DeltaJarsMissing):
        return str(err)
    if isinstance(err, (PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"permission denied: {err}" if isinstance(err, PermissionError) else str(err)
    if isinstance(err, FileNotFoundError):
        return str(err)
    for condition, message in _spark_conditions(err):
        if condition.split(".")[0] in _MISSING_CONDITIONS:
            return message
        if condition in _UNWRITABLE_CONDITIONS:
            return f"cannot write: {message}"
    denied = _denied(err)
    if denied is not None:
        return f"permission denied: {denied}"
    return None


def _spark_conditions(err: BaseException):
    """(error condition, message) of every Spark error in ``err``: the captured Python one and
    the Java exceptions behind it (a failed task arrives as a plain Py4JJavaError)."""
    for source in (err, *_java_chain(err)):
        try:
            condition, message = source.getCondition(), source.getMessage()
        except Exception:  # not a Spark error, or a JVM already gone
            continue
        if condition:
            yield condition, message or str(err)


def _java_chain(err: BaseException):
    """The Java exceptions behind a Python one: the captured origin and its causes."""
    java = getattr(err, "java_exception", None) or getattr(err, "_origin", None)
    seen = 0
    while java is not None and seen < 20:
        yield java
        try:
            java = java.getCause()
        except Exception:
            return
        seen += 1


def _denied(err: BaseException) -> str | None:
    """The innermost message of a permission failure in ``err``'s Python or Java causes."""
    found = None
    python: BaseException | None = err
    while python is not None:
        if isinstance(python, PermissionError):
            found = str(python)
        for java in _java_chain(python):
            try:
                name, message = java.getClass().getName(), java.getMessage() or ""
            except Exception:
                break
            if name in _DENIED_CLASSES or any(w in message for w in _DENIED_WORDS):
                found = f"{message} ({name.rsplit('.', 1)[-1]})"
        python = python.__cause__ or python.__context__
    return found


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else message


def print_summary(headline: str, summary: dict) -> None:
    """Prints the human headline, then the summary as one JSON line for logs and scripts."""
    print(headline)
    print("summary: " + json.dumps(summary, sort_keys=True, default=str))
