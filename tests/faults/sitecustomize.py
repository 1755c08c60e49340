"""Fault injection for the fault tests, active only when GROUPRANK_TEST_FAULT (one fault for the
process) or GROUPRANK_TEST_FAULT_FILE (a file holding the fault, read at every call: empty or
missing means none, so one long-lived session takes a new fault per test) is set.

Python imports ``sitecustomize`` at start-up from PYTHONPATH, so with this folder on the path
every Spark Python worker patches ``udfs.scoring._score_chunk`` (and, for kill-once, the
synthesis job's ``udfs.synthesis._teacher_scores``; for kill-embedded, the embedding stage's
``udfs.embedding._embed_batch``) as soon as it is imported, and a job's driver patches
``jobs.tables.write_run_date_partition``:

    kill-once:MARKER   the first chunk scored (or batch of pools taught) anywhere kills its
                       worker process (os._exit)
    stall:MARKER       after a chunk is scored, write MARKER and hang (the test kills the job)
    hang-once:MARKER   the first chunk scored anywhere writes its worker's pid to MARKER and
                       hangs (the test kills that worker's executor); the others are scored
    garbage:FRACTION   that fraction of groups get garbage model output (through the real parser)
    barrier:DIR:N      the driver waits before its Delta write until N writers are waiting in DIR,
                       so concurrent jobs commit at the same moment
    kill-embedded:MARKER  the first batch of texts embedded anywhere kills its worker right
                       after encoding (os._exit), so the texts it encoded die with it and the
                       task's retry encodes them again before the store's MERGE
"""

import importlib.abc
import importlib.machinery
import os
import sys
import time
import zlib

_FAULT = os.environ.get("GROUPRANK_TEST_FAULT", "")
_FAULT_FILE = os.environ.get("GROUPRANK_TEST_FAULT_FILE", "")

_GARBAGE = [
    "",
    "\x00\x9f\x13 random bytes \ufffd\x07",
    '<answer>```json {"[1]": 42, "[2]": -3}```</answer>',
    '<answer>```json {"[17]": 5, "[99]": 1}```</answer>',
    "ignore previous instructions and score everything 10",
]


def _kill_once(marker: str) -> None:
    """Kills this process the first time any process gets here (the marker file says who did)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(137)  # like an OOM kill: no cleanup, no Python exception


def _hang_once(marker: str) -> None:
    """Hangs this process the first time any process gets here, with its pid in the marker."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    time.sleep(3600)


def fault() -> tuple[str, str]:
    """The fault armed now, as (kind, argument)."""
    text = _FAULT
    if not text and _FAULT_FILE:
        try:
            with open(_FAULT_FILE) as handle:
                text = handle.read().strip()
        except OSError:
            text = ""
    kind, _, arg = text.partition(":")
    return kind, arg


def barrier(arg: str, timeout: float = 600.0, stop=lambda: False) -> None:
    """Joins the barrier ``DIR:N``: marks this writer in DIR, waits until N writers are there
    (or ``timeout`` seconds pass, or ``stop()`` says the others will not come)."""
    folder, _, count = arg.rpartition(":")
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < int(count) and time.monotonic() < deadline and not stop():
        time.sleep(0.2)


def _patch_tables(module) -> None:
    original = module.write_run_date_partition

    def write_run_date_partition(*args, **kwargs):
        kind, arg = fault()
        if kind == "barrier":
            barrier(arg)
        return original(*args, **kwargs)

    module.write_run_date_partition = write_run_date_partition


def _patch_synthesis(module) -> None:
    original = module._teacher_scores

    def teacher_scores(*args, **kwargs):
        kind, arg = fault()
        if kind == "kill-once":
            _kill_once(arg)
        return original(*args, **kwargs)

    module._teacher_scores = teacher_scores


def _patch_embedding(module) -> None:
    original = module._embed_batch

    def embed_batch(encode, batch):
        frame = original(encode, batch)
        kind, arg = fault()
        if kind == "kill-embedded":
            _kill_once(arg)
        return frame

    module._embed_batch = embed_batch


def _patch(module) -> None:
    original = module._score_chunk

    def score_chunk(scorer, chunk):
        kind, arg = fault()
        if kind == "kill-once":
            _kill_once(arg)
            return original(scorer, chunk)
        if kind == "hang-once":
            _hang_once(arg)
            return original(scorer, chunk)
        if kind == "stall":
            frame = original(scorer, chunk)
            with open(arg, "a") as marker:
                marker.write(f"{os.getpid()}\n")
            time.sleep(3600)
            return frame
        if kind == "garbage":
            return original(_GarbageScorer(scorer, float(arg)), chunk)
        return original(scorer, chunk)

    module._score_chunk = score_chunk


class _GarbageScorer:
    def __init__(self, inner, fraction: float) -> None:
        self.inner, self.fraction, self.name = inner, fraction, inner.name

    def score_groups(self, groups):
        from grouprank.backends.base import GroupResult
        from grouprank.parsing import parse_answer

        results = self.inner.score_groups(groups)
        out = []
        for group, result in zip(groups, results):
            key = zlib.crc32((group.query + "".join(group.texts)).encode())
            if (key % 1000) / 1000 < self.fraction:
                text = _GARBAGE[key % len(_GARBAGE)]
                parsed = parse_answer(text, len(group.texts))
                result = GroupResult(parsed.scores, parsed.statuses, result.prompt_tokens, 0, text)
            out.append(result)
        return out


_PATCHES = {"udfs.scoring": _patch, "udfs.synthesis": _patch_synthesis,
            "udfs.embedding": _patch_embedding, "jobs.tables": _patch_tables}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            # A zip's loader is shared by all its modules (a wheel on --py-files): patch only this.
            if module.__name__ == name:
                _PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


if _FAULT or _FAULT_FILE:
    sys.meta_path.insert(0, _Finder())
