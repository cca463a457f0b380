"""Starting and stopping the real processes integration tests run on loopback.

Every meshgrpc server logs `<role> listening on HOST:PORT` once its socket is
bound, so a test binds port 0 and reads the real port back from that line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESHGRPC = [sys.executable, "-m", "meshgrpc.cli"]
LISTENING = re.compile(r"(?P<role>[\w-]+) listening on (?P<addr>[\w.\[\]:]+:\d+)")


class Proc:
    """A child process whose output is collected in the background and whose
    `<role> listening on` lines are parsed into `addresses`."""

    def __init__(self, args: list[str], env: dict | None = None, cwd: str | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd or REPO,
        )
        self.lines: deque[str] = deque(maxlen=2000)
        self.addresses: dict[str, str] = {}
        self._changed = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            with self._changed:
                self.lines.append(line)
                for m in LISTENING.finditer(line):
                    self.addresses[m["role"]] = m["addr"]
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 15.0) -> re.Match:
        """Waits until some output line matches `pattern`; fails with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if m := regex.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout}s from {self.args}\n"
                        f"exit code: {self.popen.poll()}\noutput:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.2))

    def address(self, role: str, timeout: float = 15.0) -> str:
        """The HOST:PORT the process says `role` listens on."""
        self.wait_for_line(rf"{re.escape(role)} listening on ", timeout)
        with self._changed:
            return self.addresses[role]

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(5)

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.popen.wait(5)


def meshgrpc(*args: str, **kwargs) -> Proc:
    """Starts `meshgrpc ARGS...` as a child process."""
    return Proc([*MESHGRPC, *args], **kwargs)


def run_meshgrpc(*args: str, timeout: float = 30.0, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs a short `meshgrpc` command to completion and returns its result (text)."""
    return subprocess.run([*MESHGRPC, *args], capture_output=True, text=True, timeout=timeout,
                          input=input, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def poll_until(predicate, timeout: float, message: str, interval: float = 0.05):
    """Polls `predicate` until it returns a truthy value (returned) or fails with `message`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{message} (after {timeout}s; last value {last!r})")
