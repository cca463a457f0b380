"""The meshgrpc side of the benchmark: mesh configs, and a control plane plus a
proxy started as real processes (the same commands an operator runs)."""

from __future__ import annotations

import json
import re
import urllib.request

from tests.support.procs import Proc, meshgrpc, poll_until


def echo_mesh(backend: str) -> dict:
    """One cluster holding the echo backend, one route sending everything to it."""
    return {
        "clusters": [{"name": "echo"}],
        "endpoints": [{"cluster": "echo", "endpoints": [{"address": backend}]}],
        "routes": [{"name": "default", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"name": "echo", "match": {"prefix": "/"}, "route": {"cluster": "echo"}}]}]}],
    }


def many_endpoints_mesh(clusters: int, per_cluster: int, first_port: int = 20000) -> dict:
    """`clusters` x `per_cluster` endpoints (addresses that need not answer: nothing
    connects until a call is routed), and a route that splits over the clusters."""
    names = [f"svc-{i:03d}" for i in range(clusters)]
    port = iter(range(first_port, first_port + clusters * per_cluster))
    hosts = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(per_cluster)]
    return {
        "clusters": [{"name": n} for n in names],
        "endpoints": [{"cluster": n, "endpoints": [{"address": f"{h}:{next(port)}"} for h in hosts]}
                      for n in names],
        "routes": [{"name": "default", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"name": f"to-{n}", "match": {"prefix": f"/{n}/"}, "route": {"cluster": n}}
                       for n in names]}]}],
    }


def write_config(mesh: dict, path: str) -> str:
    with open(path, "w") as f:
        json.dump(mesh, f)
    return path


def start_control_plane(config: str, data_dir: str) -> tuple[Proc, str]:
    # Plaintext: the benchmarks measure calls and config pushes; proxies, the CLI and the
    # simulated fleets are given --insecure for it (tests/support/procs.py).
    cp = meshgrpc("control-plane", "--config", config, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                  "--data-dir", data_dir, "--insecure")
    return cp, _address(cp, "control-plane")


def start_proxy(control_plane: str, node_id: str = "bench", *flags: str) -> tuple[Proc, str, str]:
    """A proxy on ports bound at 0 (more `flags` for `meshgrpc proxy`), once /ready says so."""
    proxy = meshgrpc("proxy", "--node-id", node_id, "--control-plane", control_plane,
                     "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *flags)
    listen, admin = _address(proxy, "proxy"), _address(proxy, "admin")
    poll_until(lambda: admin_get(admin, "/ready")[0] == 200, 30, "proxy never became ready")
    return proxy, listen, admin


def _address(proc: Proc, role: str) -> str:
    return proc.address(role, timeout=60)


def admin_get(admin: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{admin}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_CALLS = re.compile(r'^meshgrpc_proxy_calls_total\{(?P<labels>[^}]*)\} (?P<value>[\d.e+]+)$', re.M)


def proxy_calls_by_status(admin: str) -> dict[str, int]:
    """Calls the proxy has finished, by grpc_status label, from /metrics."""
    _, text = admin_get(admin, "/metrics")
    out: dict[str, int] = {}
    for m in _CALLS.finditer(text.decode()):
        status = re.search(r'grpc_status="([^"]*)"', m["labels"])[1]
        out[status] = out.get(status, 0) + int(float(m["value"]))
    return out
