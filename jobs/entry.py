"""What every job's command line shares: logging (``--verbose``), the one error mapping (bad
input: one line, exit code 2) and the closing summary. The parser and the run are in
``jobs.stages``."""

from __future__ import annotations

import json
import logging
import os
import sys

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


class Refused(RuntimeError):
    """The job read its input and refused to write it (too many unscored documents, a failed
    publish gate): the input's fault, reported like bad input. ``summary``, when given, is the
    job's summary of what it found; it is printed before the error."""

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary


# What bad input raises: a flag, table, file or model output the job cannot use.
BAD_INPUT = (ValueError, FileNotFoundError, Refused)


def exit_code(command: str, err: Exception) -> int:
    """The one error mapping of every job: bad input (``BAD_INPUT``, a table or path that is
    missing or not a table, a permission problem, an unfilled jar cache) prints one line,
    ``grouprank COMMAND: error: ...``, on stderr and gives 2; anything else (a bug, a crash)
    is raised again with its traceback.

    Example:
        >>> exit_code("evaluate", ValueError("--run-date 'x' is not a date"))
        2
    """
    message = str(err) if isinstance(err, BAD_INPUT) else input_error(err)
    if message is None:
        raise err
    print(f"grouprank {command}: error: {message}", file=sys.stderr)
    return 2


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
