"""Profiling the proxy under load with py-spy: record raw stacks, then rank
functions by the share of samples they were running in (self) and on the stack
(inclusive), so the next optimisation starts from data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    path = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return path if os.path.exists(path) else None


def start_recording(pid: int, seconds: float, out: str, rate: int = 200) -> subprocess.Popen:
    return subprocess.Popen([py_spy(), "record", "--format", "raw", "--pid", str(pid), "--duration",
                             str(max(1, int(seconds))), "--rate", str(rate), "--output", out],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    short = "/".join(path.split("/")[-2:]) if "site-packages" in path or path.startswith("/") else path
    return f"{m['func']} ({short})"


def top_frames(raw_path: str, limit: int = 20) -> dict:
    """{'samples': N, 'self': [(frame, pct)], 'inclusive': [(frame, pct)]} from py-spy raw output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            m = _LINE.match(line.rstrip("\n"))
            if not m:
                continue
            count = int(m["count"])
            frames = [_frame_name(x) for x in m["stack"].split(";") if x]
            if not frames:
                continue
            total += count
            self_time[frames[-1]] += count
            for name in set(frames):
                inclusive[name] += count
    pct = lambda c: round(100.0 * c / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total,
            "self": [(name, pct(c)) for name, c in self_time.most_common(limit)],
            # Frames on (nearly) every stack are the event loop and the entry point: no news there.
            "inclusive": [(name, pct(c)) for name, c in inclusive.most_common(limit + 20)
                          if c < 0.85 * total][:limit]}
