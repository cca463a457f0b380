"""The data paths the benchmark compares, each a real process on loopback:

    direct       h2load -> grpc.aio echo backend
    meshgrpc     h2load -> meshgrpc proxy (configured by a real control plane) -> backend
    meshgrpc-Nw  the same proxy with --workers N (SO_REUSEPORT): only over 8 connections,
                 where the kernel can spread them between the workers
    nginx, nghttpx, haproxy   the C proxies users would pick instead (bench/child_proxy.py)

Ours (direct and meshgrpc) must work or the run fails; a comparison proxy that
cannot start, or fails during the rounds, is reported and dropped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from bench import mesh, procstat, proxyless
from bench.haproxy import Haproxy
from bench.nghttpx import Nghttpx
from bench.nginx import Nginx
from tests.support.procs import Proc, poll_until

COMPARISONS = (Nghttpx, Haproxy, Nginx)


@dataclass(frozen=True)
class Path:
    name: str
    target: str
    ours: bool
    cpu_seconds: Callable[[], float] | None = None  # the proxy's process tree; None for direct
    memory_kib: Callable[[], dict[str, int]] | None = None
    admin: str | None = None  # whose /metrics counts every call (a single-process proxy's)
    only_8_connections: bool = False


class Paths:
    """Starts every path's processes; `stop` ends them, proxies before what they call."""

    def __init__(self, workdir: str, args) -> None:
        self.workdir = workdir
        self.procs: list = []
        self.skipped: dict[str, str] = {}
        self.backend_proc = self._own(Proc([sys.executable, "-m", "bench.echo_backend"]))
        self.backend = self.backend_proc.address("backend")
        config = mesh.write_config(proxyless.with_listener(mesh.echo_mesh(self.backend)),
                                   os.path.join(workdir, "mesh.json"))
        self.cp, self.cp_address = mesh.start_control_plane(config, os.path.join(workdir, "data"))
        self._own(self.cp)
        self.proxy, proxy_address, self.admin = mesh.start_proxy(self.cp_address)
        self._own(self.proxy)
        self.paths: dict[str, Path] = {
            "direct": Path("direct", self.backend, ours=True),
            "meshgrpc": Path("meshgrpc", proxy_address, ours=True, admin=self.admin,
                             cpu_seconds=lambda: procstat.cpu_seconds(self.proxy.pid),
                             memory_kib=lambda: procstat.memory_kib(self.proxy.pid))}
        if "workers" in args.skip:
            self.skipped["meshgrpc workers"] = "--skip workers"
        else:
            self._start_workers(args.workers)
        for kind in COMPARISONS:
            self._start_comparison(kind, workdir, args.skip)

    def _own(self, proc):
        self.procs.append(proc)
        return proc

    def _start_workers(self, workers: int) -> None:
        proc, address, _ = mesh.start_proxy(self.cp_address, "bench-workers", "--workers", str(workers))
        self._own(proc)
        # /ready is worker 0's; each worker joins the port once configured, and says so.
        poll_until(lambda: proc.output().count("proxy listening on ") == workers, 60,
                   f"not all {workers} proxy workers joined the port")
        name = f"meshgrpc-{workers}w"
        self.paths[name] = Path(name, address, ours=True, only_8_connections=True,
                                cpu_seconds=lambda: procstat.tree_cpu_seconds(proc.pid),
                                memory_kib=lambda: procstat.tree_memory_kib(proc.pid))

    def _start_comparison(self, kind, workdir: str, skip: list[str]) -> None:
        if kind.name in skip:
            self.skipped[kind.name] = f"--skip {kind.name}"
            return
        proxy, why = kind.start(workdir, self.backend)
        if proxy is None:
            self.skipped[kind.name] = why
            return
        self._own(proxy)
        self.paths[kind.name] = Path(kind.name, proxy.address, ours=False,
                                     cpu_seconds=proxy.cpu_seconds, memory_kib=proxy.memory_kib)

    def drop(self, name: str, why: str) -> None:
        """A comparison proxy that failed during the rounds leaves the comparison."""
        del self.paths[name]
        self.skipped[name] = why

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
