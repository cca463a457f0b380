"""A comparison proxy (nginx, nghttpx, haproxy) run as our own child process on
loopback: its config in its own directory of the run's temp dir, its listening
socket bound here at port 0 and handed over (so no port number is guessed or
reused), its readiness proven by gRPC calls answered through it, its CPU and
memory read over its process tree, and stopped by PID.

These are yardsticks, not the product: `start` reports why one cannot run
instead of raising, and the harness skips it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

from bench import load, procstat

SBIN = ("/usr/sbin", "/usr/local/sbin")


class NotReady(Exception):
    """The proxy did not start, or does not answer gRPC calls through the socket it was given."""


class ChildProxy:
    """One comparison proxy. A subclass names its binary and writes its config in
    `launch`, returning the command and the environment that hand it socket `fd`."""

    name = ""
    binary_name = ""
    version_flag = "-v"
    stop_signal = signal.SIGTERM

    def __init__(self, binary: str, workdir: str, backend: str) -> None:
        self.dir = os.path.join(workdir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.address = "127.0.0.1:%d" % sock.getsockname()[1]
        self.inode = os.fstat(sock.fileno()).st_ino
        fd = sock.fileno()
        os.set_inheritable(fd, True)
        argv, env = self.launch(binary, fd, backend)
        self.log_path = os.path.join(self.dir, "output.log")
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(argv, pass_fds=(fd,), env={**os.environ, **env},
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        sock.close()  # the child holds its own copy now
        self.pids = [self.popen.pid]

    def launch(self, binary: str, fd: int, backend: str) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    @classmethod
    def binary(cls) -> str | None:
        return shutil.which(cls.binary_name) or next(
            (p for p in (os.path.join(d, cls.binary_name) for d in SBIN) if os.path.exists(p)), None)

    @classmethod
    def version(cls, binary: str) -> str:
        out = subprocess.run([binary, cls.version_flag], capture_output=True, text=True, timeout=10)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[0]

    @classmethod
    def start(cls, workdir: str, backend: str) -> tuple[ChildProxy | None, str | None]:
        """(the running proxy, None), or (None, why it cannot be compared)."""
        binary = cls.binary()
        if binary is None:
            return None, f"{cls.binary_name} is not installed"
        proxy = cls(binary, workdir, backend)
        try:
            proxy.wait_ready()
        except NotReady as e:
            proxy.stop()
            return None, str(e)
        return proxy, None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self, limit: int = 600) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-limit:].strip()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Returns once the proxy holds the socket it was given and answers echo calls
        through it with status OK; raises NotReady with its output otherwise."""
        deadline = time.monotonic() + timeout
        statuses: dict[str, int] = {}
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise NotReady(f"{self.name} exited with {self.popen.returncode}: {self.output()}")
            if procstat.holds_socket(self.pid, self.inode):
                statuses = load.sample_statuses(self.address, 3)
                if statuses == {"OK": 3}:
                    self.pids = procstat.tree(self.pid)
                    return
            time.sleep(0.1)
        held = "holds" if procstat.holds_socket(self.pid, self.inode) else "does not hold"
        raise NotReady(f"{self.name} {held} the socket handed to it and answered {statuses or 'nothing'} "
                       f"within {timeout:g} s: {self.output()}")

    def cpu_seconds(self) -> float:
        return procstat.tree_cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return procstat.tree_memory_kib(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """`stop_signal` to the main process, SIGKILL after `timeout`; then its workers,
        which end with it, are waited for (and killed if they linger)."""
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        for pid in self.pids[1:]:
            _end_child_of_ours(pid, timeout)


def _end_child_of_ours(pid: int, timeout: float) -> None:
    """Waits up to `timeout` for a worker (reaped by its own master) to go, then kills it."""
    deadline = time.monotonic() + timeout
    while procstat.running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if procstat.running(pid):
        with contextlib.suppress(ProcessLookupError):  # it ended just now
            os.kill(pid, signal.SIGKILL)
