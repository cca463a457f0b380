"""What a running proxy process loads (issue 11, "Done when" 5): a real `meshgrpc
proxy` holding 1,000 endpoints, joined as a workload (a join token bought its
certificate over TLS, renewed over mTLS, which also carries its discovery
stream), with a health check running and a call relayed, then stopped with
SIGTERM; the list of every module it imported over its life
(tests/support/modules_at_exit.py) has neither grpcio nor h2 (nor hpack,
hyperframe). Its resident memory at that point is reported (printed, recorded as
a test property, and a ceiling asserted)."""

from __future__ import annotations

import sys

import pytest

from tests.support.mesh import Mesh, clusters, interop_unary, route, route_config
from tests.support.procs import poll_until, run_meshgrpc

ENDPOINTS, PER_CLUSTER = 1000, 100
# The proxy's RSS with 1,000 endpoints (bench.scale.proxy_memory, medians of 5
# interleaved runs, a proxy with a token and no certificate): 56.8 MiB with
# grpcio's discovery client, 42.5 MiB without. A workload (--service, as here)
# also loads `cryptography` for its key and CSR (identity/ca.py): about 10 MiB
# more, 8 of them the library's clean file-backed pages, which proxies on one
# host share; 57 MiB in this test. The goal is 30 MiB; the ceiling
# catches grpcio (about 14 MiB) or the like coming back, not the goal.
RSS_CEILING_MIB = 64
SERVICE = "lean"
GRPCIO = ("grpc",)
H2 = ("h2", "hpack", "hyperframe")


def _config(served: str, sick: str) -> dict:
    names = [f"svc-{i:02d}" for i in range(ENDPOINTS // PER_CLUSTER)]
    endpoints = {n: [f"127.0.{c}.{e + 1}:{20000 + e}" for e in range(PER_CLUSTER)] for c, n in enumerate(names)}
    config = clusters({**endpoints, "served": [served], "checked": [sick]})
    for cluster in config["clusters"]:
        if cluster["name"] == "checked":
            cluster["health_check"] = {"interval": "0.2s", "timeout": "0.2s", "unhealthy_threshold": 1}
    # Each cluster reached by a route: the proxy subscribes to what its routes reach.
    # A workload sees the route config named like its service, and what it reaches.
    config["routes"] = [route_config([route(f"/{n}/", n) for n in [*names, "checked"]] + [route("/", "served")],
                                     name=SERVICE)]
    return config


@pytest.fixture(scope="module")
def proxy_run(tmp_path_factory) -> dict:
    """Runs the proxy once for the module: its modules and RSS."""
    workdir = tmp_path_factory.mktemp("lean-proxy")
    out = workdir / "modules.txt"
    with Mesh(workdir) as mesh:
        served = mesh.start_backend("served")
        sick = mesh.start_backend("sick", "interop", "--not-serving")
        # Certificates renewed every 2 s: the run includes renewals.
        mesh.start_control_plane(_config(served, sick), extra=("--cert-lifetime", "4s"))
        joined = run_meshgrpc("token", "create", "--service", SERVICE, "--control-plane", mesh.cp_address)
        assert joined.returncode == 0, joined.stderr
        token_file = workdir / "join.token"
        token_file.write_text(joined.stdout.splitlines()[0] + "\n")
        proxy = mesh.start_proxy("lean", "--service", SERVICE, "--route-config", SERVICE,
                                 "--token-file", str(token_file), "--ca-file", str(workdir / "data" / "ca.pem"),
                                 command=[sys.executable, "-m", "tests.support.modules_at_exit", str(out)])
        poll_until(lambda: sum(len(e) for e in proxy.endpoints().values()) == ENDPOINTS + 2, 30,
                   "the proxy holds every endpoint")
        poll_until(lambda: f"to workload {SERVICE} (certificate)" in mesh.control_plane.output(), 15,
                   "a renewal with the certificate, over mTLS")
        poll_until(lambda: proxy.endpoints()["checked"][sick]["health_check"] == "FAILING", 10,
                   "the health check (over grpcwire) saw NOT_SERVING")
        with proxy.channel() as channel:
            assert interop_unary(channel) == "served"
        rss = proxy.rss_bytes()
        assert proxy.proc.stop() == 0, proxy.proc.output()
    return {"modules": out.read_text().split(), "rss_mib": rss / (1 << 20)}


def _loaded(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in roots]


def test_the_proxy_process_imports_no_grpcio(proxy_run):
    modules = proxy_run["modules"]
    assert "meshgrpc.grpcwire.channel" in modules and "meshgrpc.proxy.health" in modules   # the run was real
    assert _loaded(modules, GRPCIO) == []


def test_the_proxy_process_imports_no_h2(proxy_run):
    assert _loaded(proxy_run["modules"], H2) == []


def test_the_proxy_rss_with_1000_endpoints_is_reported(proxy_run, record_property):
    rss = proxy_run["rss_mib"]
    record_property("proxy_rss_mib_1000_endpoints", round(rss, 1))
    print(f"\nproxy RSS with {ENDPOINTS} endpoints: {rss:.1f} MiB")
    assert rss < RSS_CEILING_MIB, f"{rss:.1f} MiB"
