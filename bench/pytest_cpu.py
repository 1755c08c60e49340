"""A pytest plugin: each test's wall time and the whole machine's busy CPU time over it.

    PYTHONPATH=bench .venv/bin/python -m pytest -p pytest_cpu [--cpu-json out.json]

Busy CPU is read from /proc/stat (every process on the machine: the test's own, its JVMs and
their Python workers), so a file whose busy CPU is near twice its wall time on two cores is
bound by CPU work, and the rest ("idle core-seconds") is time a second process could have used.
At the end it prints one line per test file, slowest first (docs/BENCHMARKS.md, issue 18).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict

import pytest

_TICKS = os.sysconf("SC_CLK_TCK")
_records: list[tuple[str, float, float]] = []


def _busy_seconds() -> float:
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / _TICKS


def pytest_addoption(parser):
    parser.addoption("--cpu-json", default=None,
                     help="write [nodeid, wall s, busy CPU s] rows here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    wall, busy = time.time(), _busy_seconds()
    yield
    _records.append((item.nodeid, time.time() - wall, _busy_seconds() - busy))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cores = os.cpu_count() or 1
    files: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for nodeid, wall, busy in _records:
        row = files[nodeid.split("::")[0]]
        row[0] += 1
        row[1] += wall
        row[2] += busy
    write = terminalreporter.write_line
    write(f"busy CPU per test file ({cores} cores): tests, wall s, busy CPU s, use, idle core-s")
    for name, (tests, wall, busy) in sorted(files.items(), key=lambda kv: -kv[1][1]):
        use = busy / (cores * wall) if wall else 0.0
        write(f"  {name:40s} {tests:4.0f} {wall:8.1f} {busy:8.1f} {use:5.2f} "
              f"{cores * wall - busy:8.1f}")
    wall = sum(r[1] for r in _records)
    busy = sum(r[2] for r in _records)
    if wall:
        write(f"  {'all':40s} {len(_records):4d} {wall:8.1f} {busy:8.1f} "
              f"{busy / (cores * wall):5.2f} {cores * wall - busy:8.1f}")
    path = config.getoption("--cpu-json")
    if path:
        with open(path, "w") as out:
            json.dump(_records, out)
