"""This process's CPU utilization, from /proc/self/stat (no extra dependency).

Utilization is the CPU time the process used (user + system) over the wall time
between two samples, divided by the CPUs it may run on (sched_getaffinity): 1.0
means every core it may use was busy with it. A process's own figure, not the
machine's, so backends sharing a machine do not all report their neighbours' load.
Samples are taken at most every `min_interval` seconds; reads in between return
the last figure.
"""

from __future__ import annotations

import os
import time
from typing import Callable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAT = "/proc/self/stat"


def process_cpu_seconds(stat_path: str = STAT) -> float:
    """utime + stime of this process in seconds (fields 14 and 15 of proc(5)'s stat,
    counted after the parenthesised command name, which may hold spaces)."""
    with open(stat_path, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ProcessCpu:
    __slots__ = ("_clock", "_read", "_cores", "_min_interval", "_at", "_used", "_value")

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 read: Callable[[], float] = process_cpu_seconds, cores: int | None = None,
                 min_interval: float = 0.5) -> None:
        self._clock = clock
        self._read = read
        self._cores = cores or len(os.sched_getaffinity(0))
        self._min_interval = min_interval
        self._at = clock()
        self._used = read()
        self._value = 0.0

    def utilization(self) -> float:
        now = self._clock()
        elapsed = now - self._at
        if elapsed >= self._min_interval:
            used = self._read()
            self._value = max(0.0, used - self._used) / elapsed / self._cores
            self._at, self._used = now, used
        return self._value
