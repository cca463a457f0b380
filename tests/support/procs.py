"""Starting and stopping the real processes integration tests run on loopback.

Every meshgrpc server logs `<role> listening on HOST:PORT` once its socket is
bound, so a test binds port 0 and reads the real port back from that line.

Control planes run secure by default, as in production: each one started here
is remembered with its data dir, and a `meshgrpc` command naming it with
--control-plane is given the admin token and CA bundle it wrote there (or
--insecure, for a control plane started with --insecure), unless the command
passes credentials of its own. `credentials(address)` gives in-process clients
the same (`dialer(address)`: for grpcwire's, the discovery clients).
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


_CONTROL_PLANES: list[tuple[Proc, str, bool]] = []   # (process, data dir, insecure), newest last
_CREDENTIAL_FLAGS = ("--token-file", "--ca-file", "--insecure")


def meshgrpc(*args: str, **kwargs) -> Proc:
    """Starts `meshgrpc ARGS...` as a child process (with credentials, see the module doc)."""
    proc = Proc([*MESHGRPC, *args, *credential_args(args)], **kwargs)
    if "control-plane" in args:
        _CONTROL_PLANES[:] = [c for c in _CONTROL_PLANES if c[0].popen.poll() is None][-64:]
        data_dir = os.path.join(kwargs.get("cwd") or REPO, _flag(args, "--data-dir") or ".meshgrpc")
        _CONTROL_PLANES.append((proc, data_dir, "--insecure" in args))
    return proc


def run_meshgrpc(*args: str, timeout: float = 30.0, input: str | None = None,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a short `meshgrpc` command to completion and returns its result (text)."""
    return subprocess.run([*MESHGRPC, *args, *credential_args(args)], capture_output=True, text=True,
                          timeout=timeout, input=input, cwd=REPO,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _flag(args, name: str) -> str | None:
    args = list(args)
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def _control_plane_of(targets: str) -> tuple[str, bool] | None:
    """(data dir, insecure) of the control plane started here that listens on one of `targets`."""
    wanted = set(targets.split(","))
    for proc, data_dir, insecure in reversed(_CONTROL_PLANES):
        if proc.popen.poll() is None and proc.addresses.get("control-plane") in wanted:
            return data_dir, insecure
    return None


def credential_args(args) -> list[str]:
    """The credential flags a command aimed at one of our control planes needs."""
    target = _flag(args, "--control-plane")
    if target is None or "control-plane" in args or any(f in args for f in _CREDENTIAL_FLAGS):
        return []
    found = _control_plane_of(target)
    if found is None:
        return []
    data_dir, insecure = found
    if insecure:
        return ["--insecure"]
    return ["--token-file", os.path.join(data_dir, "admin.token"), "--ca-file", os.path.join(data_dir, "ca.pem")]


def credentials(target: str):
    """ClientCredentials for an in-process client of our control plane at `target`
    (the admin token; plaintext for an --insecure one)."""
    from meshgrpc.control_channel import INSECURE, ClientCredentials
    found = _control_plane_of(target)
    assert found is not None, f"no control plane started by this test listens on {target}"
    data_dir, insecure = found
    if insecure:
        return INSECURE
    with open(os.path.join(data_dir, "ca.pem"), "rb") as f:
        bundle = f.read()
    with open(os.path.join(data_dir, "admin.token")) as f:
        token = f.read().strip()
    return ClientCredentials(ca_bundle=bundle, token=token)


def dialer(target: str):
    """A grpcwire Dialer for an in-process discovery client of our control plane at
    `target`, with the credentials `credentials(target)` gives."""
    from meshgrpc.xds.client import control_plane_dialer
    creds = credentials(target)
    if creds.insecure:
        return control_plane_dialer()
    return control_plane_dialer(ssl_context=creds.ssl_context(),
                                metadata=lambda: [("authorization", f"Bearer {creds.token}")])


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
