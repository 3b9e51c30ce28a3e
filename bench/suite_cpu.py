"""Where the test suite's time goes: per test, its wall seconds and the CPU seconds the machine
spent meanwhile (user, nice and system from /proc/stat: Ray runs its workers, so every Tune trial,
at nice 15, and leaving nice out hid their CPU, measured), and their ratio, the cores the test
kept busy. A test far below 1 core waits (on Ray, Tune, a subprocess); one near or above 1
computes. Run serially (-n 0), on an otherwise idle machine (no background sweep): with xdist
workers the machine's CPU would be shared among tests. Linux only.

    PYTHONPATH=bench .venv/bin/python -m pytest -n 0 -p suite_cpu tests/test_sweep.py

prints the slowest tests and the totals at the end; SUITE_CPU_TSV=path also writes every test.
"""
from __future__ import annotations

import os
import time

import pytest

_TICK = os.sysconf("SC_CLK_TCK")
_SEEN: list[tuple[float, float, str]] = []


def _busy_seconds() -> float:
    """CPU seconds the machine has spent in user, nice, system, irq and softirq time."""
    with open("/proc/stat") as fh:
        parts = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = parts[:7]
    return (user + nice + system + irq + softirq) / _TICK


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    wall0, cpu0 = time.monotonic(), _busy_seconds()
    yield
    _SEEN.append((time.monotonic() - wall0, _busy_seconds() - cpu0, item.nodeid))


def pytest_terminal_summary(terminalreporter):
    if not _SEEN:
        return
    out = terminalreporter
    out.section("wall and CPU per test (bench/suite_cpu.py)")
    out.write_line(f"{'wall s':>7} {'cpu s':>7} {'cores':>5}  test")
    for wall, cpu, name in sorted(_SEEN, reverse=True)[:25]:
        out.write_line(f"{wall:7.1f} {cpu:7.1f} {cpu / max(wall, 1e-9):5.2f}  {name}")
    wall, cpu = sum(s[0] for s in _SEEN), sum(s[1] for s in _SEEN)
    waiting = sum(s[0] for s in _SEEN if s[1] < 0.7 * s[0])
    out.write_line(f"{len(_SEEN)} tests: {wall:.0f} s wall, {cpu:.0f} s CPU ({cpu / max(wall, 1e-9):.2f} cores); "
                   f"{waiting:.0f} s in tests that kept < 0.7 core busy")
    path = os.environ.get("SUITE_CPU_TSV")
    if path:
        with open(path, "w") as fh:
            fh.write("wall_s\tcpu_s\ttest\n")
            fh.writelines(f"{w:.2f}\t{c:.2f}\t{n}\n" for w, c, n in _SEEN)
