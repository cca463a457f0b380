"""A real etcd cluster on loopback for tests and benchmarks: Debian's etcd-server,
three members in a temporary data dir, each started and stopped by PID.

etcd's peer URLs must be known before any member starts (every member is told
the whole --initial-cluster), so ports cannot be bound at :0 and read back: they
are picked at random from a range below the kernel's ephemeral ports, and when a
member cannot bind one (another process took it in between) the whole cluster is
stopped and started again on fresh ports.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from tests.support.procs import poll_until

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
PORT_RANGE = (20000, 32000)   # below Linux's default ephemeral range (32768-60999)
ATTEMPTS = 5
# Short raft timers: a SIGKILLed leader is replaced within about a second.
TIMING = ("--heartbeat-interval", "50", "--election-timeout", "500")


def available() -> bool:
    return os.path.exists(ETCD)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(count: int, rng: random.Random) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(*PORT_RANGE)
        if port not in ports and _free(port):
            ports.append(port)
    return ports


class Member:
    def __init__(self, name: str, client_port: int, peer_port: int, data_dir: str) -> None:
        self.name, self.client_port, self.peer_port, self.data_dir = name, client_port, peer_port, data_dir
        self.popen: subprocess.Popen | None = None
        self.log_path = data_dir + ".log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, extra: tuple[str, ...] = ()) -> None:
        args = [ETCD, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", f"http://{self.endpoint}", "--advertise-client-urls", f"http://{self.endpoint}",
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "meshgrpc-test", "--logger", "zap", "--log-level", "warn", *TIMING, *extra]
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def bind_failed(self) -> bool:
        try:
            with open(self.log_path, errors="replace") as f:
                return "address already in use" in f.read()
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, by PID."""
        if self.running:
            os.kill(self.popen.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self) -> None:
        if self.running:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class EtcdCluster:
    """`size` members on loopback. `endpoints` is the comma list meshgrpc's
    `--store etcd://...` takes; `url(prefix)` builds that flag's value."""

    def __init__(self, size: int = 3, rng: random.Random | None = None, extra: tuple[str, ...] = ()) -> None:
        """`extra`: more etcd flags for every member (e.g. --max-txn-ops)."""
        self.size = size
        self.extra = extra
        self.rng = rng or random.Random()
        self.root = tempfile.mkdtemp(prefix="meshgrpc-etcd-")
        self.members: list[Member] = []

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for attempt in range(ATTEMPTS):
            self._launch(attempt)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if any(m.bind_failed() for m in self.members):
                    break
                if all(m.healthy() for m in self.members):
                    return self
                time.sleep(0.1)
            self._stop_members()
        raise AssertionError(f"etcd cluster did not start in {ATTEMPTS} attempts; logs in {self.root}")

    def _launch(self, attempt: int) -> None:
        ports = _pick_ports(2 * self.size, self.rng)
        self.members = [Member(f"m{i}", ports[2 * i], ports[2 * i + 1], os.path.join(self.root, f"a{attempt}-m{i}"))
                        for i in range(self.size)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.start(initial, self.extra)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def url(self) -> str:
        return "etcd://" + self.endpoints

    def leader(self, timeout: float = 10.0) -> Member:
        """The member the running members agree leads the cluster."""
        def agreed():
            ids = {}
            for m in self.members:
                if m.running:
                    status = _status(m)
                    if status:
                        ids[m.name] = status
            leaders = {s["leader"] for s in ids.values()}
            if len(leaders) != 1:
                return None
            (leader,) = leaders
            return next((m for m in self.members if ids.get(m.name, {}).get("member") == leader), None)
        return poll_until(agreed, timeout, "the etcd members agree on a leader")

    def restart(self, member: Member) -> None:
        """Starts a killed member again on its data dir (it rejoins the cluster)."""
        member.start(",".join(f"{m.name}={m.peer_url}" for m in self.members), self.extra)
        poll_until(member.healthy, 30, f"etcd member {member.name} healthy again")

    def _stop_members(self) -> None:
        for m in self.members:
            m.stop()

    def stop(self) -> None:
        self._stop_members()
        shutil.rmtree(self.root, ignore_errors=True)


def _status(member: Member) -> dict | None:
    """Member id and the leader it sees, over the v3 gRPC gateway's JSON."""
    request = urllib.request.Request(f"http://{member.endpoint}/v3/maintenance/status", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=1) as r:
            body = json.loads(r.read())
    except (OSError, ValueError):
        return None
    return {"member": int(body["header"]["member_id"]), "leader": int(body.get("leader", 0))}
