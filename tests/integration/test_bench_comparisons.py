"""The benchmark's comparison proxies (nghttpx, haproxy, nginx) as real child
processes in front of the real echo backend: each adopts the socket bound for it at
port 0, serves unary and streaming gRPC, and leaves no process behind; one that
cannot start is reported with its reason, not raised. Each is skipped where its
Debian package is missing (`make bench` installs them)."""

from __future__ import annotations

import signal
import sys

import pytest

from bench import load, procstat
from bench.haproxy import Haproxy
from bench.paths import COMPARISONS
from tests.support.procs import Proc


@pytest.fixture(scope="module")
def backend():
    proc = Proc([sys.executable, "-m", "bench.echo_backend"])
    try:
        yield proc.address("backend")
    finally:
        proc.stop()


@pytest.mark.parametrize("kind", COMPARISONS, ids=lambda kind: kind.name)
def test_each_serves_grpc_on_the_socket_handed_to_it_and_stops_whole(kind, backend, tmp_path):
    if kind.binary() is None:
        pytest.skip(f"{kind.binary_name} is not installed (make bench installs it as root)")
    proxy, why = kind.start(str(tmp_path), backend)
    assert proxy is not None, why
    try:
        assert procstat.holds_socket(proxy.pid, proxy.inode)
        assert load.sample_statuses(proxy.address, 20) == {"OK": 20}
        assert load.stream_rate(proxy.address, 0.3) > 0
        assert proxy.memory_kib()["VmRSS"] > 0
    finally:
        proxy.stop()
    left = {pid: open(f"/proc/{pid}/stat").read()[:80] for pid in proxy.pids if procstat.running(pid)}
    assert not left, left


class UnknownDirective(Haproxy):
    """haproxy given a config it refuses."""

    def launch(self, binary, fd, backend):
        argv, env = super().launch(binary, fd, backend)
        with open(argv[-1], "a") as f:
            f.write("    no-such-directive on\n")
        return argv, env


def test_one_that_cannot_start_is_reported_with_its_reason(backend, tmp_path):
    if Haproxy.binary() is None:
        pytest.skip("haproxy is not installed (make bench installs it as root)")
    proxy, why = UnknownDirective.start(str(tmp_path), backend)
    assert proxy is None
    assert why.startswith("haproxy exited with 1: ") and "no-such-directive" in why, why


def test_a_stop_signal_it_ignores_is_followed_by_sigkill(backend, tmp_path):
    if Haproxy.binary() is None:
        pytest.skip("haproxy is not installed (make bench installs it as root)")
    proxy, why = type("Stubborn", (Haproxy,), {"stop_signal": signal.SIGWINCH}).start(str(tmp_path), backend)
    assert proxy is not None, why
    proxy.stop(timeout=0.5)
    assert proxy.popen.returncode == -signal.SIGKILL
