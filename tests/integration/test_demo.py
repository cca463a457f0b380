"""`meshgrpc demo --duration S` runs unattended, shows traffic following the
canary change and leaving the slow backend, exits 0 and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess

from tests.support.procs import MESHGRPC, REPO


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _shares(output: str, phase: str, who: str = "") -> dict[str, float]:
    line = re.search(rf"^{who}{phase} the canary change: \d+ calls: .*\((?P<backends>.*)\)$", output, re.M)
    assert line, f"no summary for {phase!r} in:\n{output[-3000:]}"
    return {name: float(pct) for name, pct in re.findall(r"([\w-]+) ([\d.]+)%", line["backends"])}


def test_demo_runs_unattended_and_stops_everything():
    result = subprocess.run([*MESHGRPC, "demo", "--duration", "8", "--http", "127.0.0.1:0"], capture_output=True,
                            text=True, timeout=90,
                            cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    assert re.match(r"dashboard: http://127\.0\.0\.1:\d+/\n", result.stdout), result.stdout[:500]  # first
    started = re.search(r"^started: (.*)$", result.stdout, re.M)
    assert started, output[-4000:]
    pids = [int(p) for p in re.findall(r"pid (\d+)", started[1])]
    assert len(pids) == 7, started[1]  # 4 backends, the control plane, the proxy, the proxyless client
    assert [p for p in pids if _alive(p)] == [], "processes left running"

    assert "applied the canary change through the management API" in result.stdout
    assert re.search(r"^greeter-canary +127\.0\.0\.1:\d+ +canary-1 ", result.stdout, re.M), "no table rows"
    before, after = _shares(result.stdout, "before"), _shares(result.stdout, "after")
    assert "failed" not in before and "failed" not in after, (before, after)
    assert before.get("canary-1", 0) < 25 < after.get("canary-1", 0), (before, after)
    # greeter-3 is 25 ms slower: the latency-aware balancer sends it less than either fast one.
    fast = min(after.get("greeter-1", 0), after.get("greeter-2", 0))
    assert after.get("greeter-3", 0) < fast, after
    # The proxyless client follows the same canary change, with no proxy in its path. Its
    # process is its own: on a loaded machine a stall of it past the 2 s deadline fails the
    # calls in flight then (DEADLINE_EXCEEDED), so a few failed calls are allowed, not many.
    before = _shares(result.stdout, "before", "proxyless client: ")
    after = _shares(result.stdout, "after", "proxyless client: ")
    assert before.get("failed", 0) < 10 and after.get("failed", 0) < 10, (before, after)
    assert before.get("canary-1", 0) < 25 < after.get("canary-1", 0), (before, after)
