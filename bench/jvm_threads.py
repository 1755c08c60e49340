"""Where the JVMs' CPU goes: runs a command and adds up, by thread name, the CPU time of every
thread of every Java process alive during it (the JIT's compilers, py4j's call threads, the
executor's task threads, GC, ...).

    .venv/bin/python bench/jvm_threads.py .venv/bin/python -m pytest tests/test_publish.py -q

Reads ``/proc/PID/task/TID/stat`` once a second and keeps each thread's latest user + system
time, so a thread that ends between two reads loses at most its last second. Linux only.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import time

_TICKS = os.sysconf("SC_CLK_TCK")
# "C2 CompilerThread0", "Executor task launch worker for task 3.0 ...", "Thread-12": the kind.
_NUMBERED = re.compile(r"[#\d\- ]+$")


def _java_pids() -> list[str]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv0 = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"java"):
            pids.append(pid)
    return pids


def _sample(seen: dict[tuple[str, str], tuple[float, str]]) -> None:
    for pid in _java_pids():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = open(f"/proc/{pid}/task/{tid}/stat").read()
                name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            seen[pid, tid] = ((int(fields[11]) + int(fields[12])) / _TICKS, name)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    seen: dict[tuple[str, str], tuple[float, str]] = {}
    started = time.monotonic()
    proc = subprocess.Popen(argv)
    while proc.poll() is None:
        _sample(seen)
        time.sleep(1)
    by_kind: collections.Counter[str] = collections.Counter()
    for seconds, name in seen.values():
        by_kind[_NUMBERED.sub("", name) or name] += seconds
    print(f"wall {time.monotonic() - started:.1f} s, Java CPU {sum(by_kind.values()):.1f} s")
    for kind, seconds in by_kind.most_common(12):
        print(f"{seconds:8.1f} s  {kind}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
