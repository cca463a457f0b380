"""What the kernel says about a process: CPU seconds used, resident and peak memory."""

from __future__ import annotations

import os

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def running(pid: int) -> bool:
    """Whether `pid` exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid` in KiB, from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    """Direct children of `pid` (e.g. nginx's workers)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of `pid` plus its live descendants (a master and its workers)."""
    return sum(cpu_seconds(p) for p in tree(pid))


def tree(pid: int) -> list[int]:
    """`pid` and its live descendants (a proxy's master and workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            todo += children(p)
        except FileNotFoundError:  # it ended meanwhile
            continue
        found.append(p)
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size of `pid` in KiB: each page it shares with other
    processes (a forked worker's with its parent) counted as a share of it."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def tree_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM summed over `pid` and its descendants (pages they share
    count once per process, as `ps` counts them), and Pss summed (shared pages
    counted once in all)."""
    total = {"VmRSS": 0, "VmHWM": 0, "Pss": 0}
    for p in tree(pid):
        for key, value in memory_kib(p).items():
            total[key] += value
        total["Pss"] += pss_kib(p)
    return total


def holds_socket(pid: int, inode: int) -> bool:
    """Whether `pid` or a descendant has the socket `inode` open (a listening
    socket handed over to it, rather than one it bound itself)."""
    target = f"socket:[{inode}]"
    for p in tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p}/fd/{fd}") == target:
                    return True
            except FileNotFoundError:
                continue
    return False


def busy_and_total_ticks() -> tuple[int, int]:
    """The machine's CPU ticks so far, (busy, all), from /proc/stat: the share
    busy between two reads says how loaded every core was."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total
