"""Services behind their sidecars on a real TLS control plane: each service's app
(an interop backend) and one proxy that is both its outbound proxy (`--listen`)
and its inbound sidecar (`--inbound`, mutual TLS, relaying to the app).

    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(two_services_config())
        front = start_service(mesh, tmp_path, "frontend")
        back = start_service(mesh, tmp_path, "backend")
        point_clusters_at_inbounds(mesh, [front, back])
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from tests.support.mesh import Mesh, ProxyHandle, START_TIMEOUT, route, route_config
from tests.support.procs import run_meshgrpc

MUTUAL_TLS = {"mode": "MUTUAL_TLS"}


@dataclasses.dataclass
class Service:
    name: str
    app: str  # the app's h2c address
    proxy: ProxyHandle
    inbound: str  # the proxy's inbound (mTLS) address


def join_token(mesh: Mesh, service: str) -> str:
    result = run_meshgrpc("token", "create", "--service", service, "--control-plane", mesh.cp_address)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


def ca_file(mesh: Mesh) -> str:
    return os.path.join(mesh.data_dir, "ca.pem")


def services_config(routes: dict[str, str], transport: dict | None = None) -> dict:
    """A MeshConfig: a cluster per service (no endpoints yet) and, per proxy's
    route config name, one catch-all route to a cluster (`routes`: name -> cluster)."""
    names = sorted(set(routes.values()))
    cluster = {"lb_policy": "ROUND_ROBIN", **({"transport": transport} if transport is not None else {})}
    return {
        "clusters": [{"name": n, **cluster} for n in names],
        "endpoints": [],
        "routes": [route_config([route("/", c)], name=n) for n, c in routes.items()],
    }


def start_service(mesh: Mesh, workdir, name: str, *extra: str, app: str | None = None,
                  ready: bool = True) -> Service:
    """Starts `name`'s app (unless `app` is given) and its sidecar with a join token."""
    app = app or mesh.start_backend(name)
    token_file = os.path.join(str(workdir), f"{name}.token")
    with open(token_file, "w") as f:
        f.write(join_token(mesh, name) + "\n")
    proxy = mesh.start_proxy(f"{name}-1", "--service", name, "--route-config", name, "--token-file", token_file,
                             "--ca-file", ca_file(mesh), "--inbound", "127.0.0.1:0", "--app", app, *extra,
                             ready=ready)
    return Service(name, app, proxy, proxy.proc.address("inbound", START_TIMEOUT))


def endpoints_of(services: Iterable[Service], extra: dict[str, list[str]] | None = None) -> dict:
    """Endpoint sets: each service's cluster holds its inbound address (and `extra`)."""
    sets: dict[str, list[str]] = {s.name: [s.inbound] for s in services}
    for cluster, addresses in (extra or {}).items():
        sets.setdefault(cluster, []).extend(addresses)
    return {"endpoints": [{"cluster": c, "endpoints": [{"address": a} for a in addrs]} for c, addrs in sets.items()]}
