"""Where a command's CPU goes, by kind of process: runs the command and adds up the CPU time of
every process alive during it, sorted into the kinds a test run starts (Spark drivers' JVMs, the
Python workers their daemons fork, a Connect server, a standalone cluster's daemons and
executors, pytest itself, other Python processes, everything else).

    .venv/bin/python bench/process_cpu.py --out /tmp/process_cpu.json -- \
        .venv/bin/python -m pytest -q -p no:cacheprovider

Reads ``/proc/PID/stat`` twice a second and keeps each process's latest user + system time, so
a process that ends between two reads loses at most its last half second, and one that lives
less than that may be missed. "other" holds kernel threads and shells. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_TICKS = os.sysconf("SC_CLK_TCK")
# The first marker found in a process's command line names its kind; order matters (a Connect
# server and an executor are Java processes too).
_KINDS = [
    ("pyspark.daemon", "python-worker"), ("pyspark.worker", "python-worker"),
    ("SparkConnectServer", "jvm-connect-server"), ("deploy.master", "jvm-standalone-daemon"),
    ("deploy.worker", "jvm-standalone-daemon"), ("CoarseGrainedExecutorBackend", "jvm-executor"),
    ("/java ", "jvm-driver"), ("pytest", "pytest"), ("python", "python-other"),
]


def kind(cmdline: str) -> str:
    return next((name for marker, name in _KINDS if marker in cmdline), "other")


def _read(pid: str) -> tuple[str, int, str] | None:
    """(start time, user + system ticks, command line) of a process, or None if it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19], int(fields[11]) + int(fields[12]), cmdline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    me, ticks, kinds = str(os.getpid()), {}, {}

    def sample() -> None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            read = None if pid == me else _read(pid)
            if read is not None:
                key = (pid, read[0])  # a pid reused later is another process
                ticks[key] = read[1]
                kinds.setdefault(key, kind(read[2]))

    sample()
    before = dict(ticks)  # what the processes already running had used: not the command's
    started = time.monotonic()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        sample()
        time.sleep(0.5)
    cpu, count = {}, {}
    for key, used in ticks.items():
        used -= before.get(key, 0)
        if used or key not in before:
            cpu[kinds[key]] = cpu.get(kinds[key], 0.0) + used / _TICKS
            count[kinds[key]] = count.get(kinds[key], 0) + 1
    report = {"command": command, "exit": proc.returncode,
              "wall_s": round(time.monotonic() - started, 1),
              "cpu_s": {k: round(v, 1) for k, v in sorted(cpu.items(), key=lambda x: -x[1])},
              "processes": count}
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    print(json.dumps(report))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
