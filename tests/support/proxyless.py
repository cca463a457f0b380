"""Proxyless gRPC clients in integration tests: each a real grpcio process
(tests/support/xds_client.py) with GRPC_XDS_BOOTSTRAP pointing at a file written
by `meshgrpc bootstrap`, owned by the test's Mesh (stopped with it).

    client = ProxylessClient(mesh, "app-1")          # calls xds:///greeter.mesh until stopped
    client.wait_calls(300)
    assert set(client.backends()) == {"a", "b"}
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys

from tests.support.mesh import Mesh
from tests.support.procs import Proc, poll_until, run_meshgrpc

TARGET = "greeter.mesh"


def with_listener(config: dict, name: str = TARGET, route_config: str = "default") -> dict:
    """A MeshConfig dict with a listener `name` (the target clients dial) added, and
    its route config visible to every service (the clients' identity is "app")."""
    routes = [{**r, "services": ["*"]} if r.get("name") == route_config else r for r in config.get("routes", [])]
    return {**config, "routes": routes,
            "listeners": [*config.get("listeners", []), {"name": name, "route_config": route_config}]}


@dataclasses.dataclass(frozen=True)
class Call:
    started: float  # time.monotonic() in the client process (the same clock as the test's)
    ended: float
    ok: bool
    label: str  # the answering backend when ok, the status code name when not
    tagged: bool


class ProxylessClient:
    """A running xds_client process and the calls it made so far."""

    def __init__(self, mesh: Mesh, node_id: str, *, target: str = TARGET, threads: int = 2, tag_every: int = 0,
                 calls: int = 0, duration: float = 0.0, zone: str = "", started: bool = True) -> None:
        assert mesh.cp_address, "start the control plane first"
        self.node_id = node_id
        self.bootstrap = os.path.join(mesh.workdir, f"{node_id}-bootstrap.json")
        result = run_meshgrpc("bootstrap", "--node-id", node_id, "--zone", zone, "--service", "app",
                              "--cert-dir", os.path.join(mesh.workdir, f"{node_id}-certs"),
                              "--control-plane", mesh.cp_address, "-o", self.bootstrap)
        assert result.returncode == 0, result.stderr
        self.out = os.path.join(mesh.workdir, f"{node_id}-calls.log")
        args = [sys.executable, "-m", "tests.support.xds_client", "--target", f"xds:///{target}", "--out", self.out,
                "--threads", str(threads), "--tag-every", str(tag_every), "--calls", str(calls),
                "--duration", str(duration)]
        self.proc = Proc(args, env={"GRPC_XDS_BOOTSTRAP": self.bootstrap})
        mesh.procs.append(self.proc)
        if started:
            self.proc.wait_for_line("xds-client started", timeout=30)

    def calls(self, after: float = 0.0) -> list[Call]:
        """Every finished call that started at or after `after` (monotonic seconds)."""
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            lines = [line.split() for line in f.read().splitlines()]
        parsed = [Call(float(s), float(e), kind == "OK", label, tag == "1")
                  for s, e, kind, label, tag in (line for line in lines if len(line) == 5)]
        return [c for c in parsed if c.started >= after]

    def backends(self, after: float = 0.0, tagged: bool | None = None) -> collections.Counter:
        """Successful calls per answering backend."""
        return collections.Counter(c.label for c in self.calls(after)
                                   if c.ok and (tagged is None or c.tagged == tagged))

    def failures(self, after: float = 0.0) -> list[Call]:
        return [c for c in self.calls(after) if not c.ok]

    def wait_calls(self, n: int, after: float = 0.0, timeout: float = 30.0) -> list[Call]:
        """Waits until `n` calls that started after `after` finished; returns them."""
        def enough():
            got = self.calls(after)
            return got if len(got) >= n else None
        return poll_until(enough, timeout, f"{n} calls by proxyless client {self.node_id}", interval=0.1)

    def wait_exit(self, timeout: float = 60.0) -> int:
        code = self.proc.popen.wait(timeout)
        assert code == 0, f"xds client exited {code}\n{self.proc.output()}"
        return code
