"""What the control plane shows of the mesh, through real processes: proxies'
load reports reaching /api/v1/mesh (and a stopped proxy forgotten), the control
plane's /metrics (connected proxies, pushes, NACKs, registrations, commits), and
the convergence histogram timing each apply to the last ACK."""

from __future__ import annotations

import json
import time

import grpc
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from meshapi.v1 import management_pb2, management_pb2_grpc, resources_pb2
from meshgrpc.config.resources import ROUTES
from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.integration.cp_support import EXAMPLE, DiscoveryProbe, cli, start_control_plane
from tests.support.mesh import Mesh, http_get, interop_unary, mesh_config, route, route_config
from tests.support.procs import credentials, meshgrpc, poll_until

INTERVAL = "0.5"


def mesh_json(http: str) -> dict:
    status, body = http_get(http, "/api/v1/mesh")
    assert status == 200, body
    return json.loads(body)


def metric(http: str, name: str, **labels: str) -> float:
    status, body = http_get(http, "/metrics")
    assert status == 200, body
    return sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def series_total(view: dict, cluster: str, figure: str = "calls_per_s") -> float:
    """Calls (or failures) the time series hold for `cluster` (every finished slot of the last 5 minutes)."""
    c = next(c for c in view["clusters"] if c["name"] == cluster)
    step = view["report_interval_s"]
    return sum(p[figure] * step for point in c["series"] for p in point["endpoints"].values())


def view_with_calls(http: str, cluster: str, calls: int) -> dict | None:
    view = mesh_json(http)
    return view if abs(series_total(view, cluster) - calls) < 1e-6 else None


def test_load_reports_reach_the_dashboard_json_and_a_stopped_proxy_is_forgotten(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        mesh.start_control_plane(mesh_config({"svc": [a, b]}, [route("/", "svc", name="all")]),
                                 extra=("--load-report-interval", INTERVAL))
        http = mesh.control_plane.address("dashboard")
        p1, p2 = mesh.start_proxy("p1"), mesh.start_proxy("p2")
        poll_until(lambda: metric(http, "meshgrpc_cp_load_reporting_proxies") == 2, 10, "both proxies report")
        with p1.channel() as channel:
            for _ in range(40):
                interop_unary(channel)
            failing = messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=2, message="boom"))
            try:
                test_pb2_grpc.TestServiceStub(channel).UnaryCall(failing, timeout=5)
            except grpc.RpcError:
                pass

        # Every call reported once: the series hold 41 calls however the reports fell.
        view = poll_until(lambda: view_with_calls(http, "svc", 41), 15, "41 calls in the series")
        svc = next(c for c in view["clusters"] if c["name"] == "svc")
        assert {e["address"] for e in svc["endpoints"]} == {a, b}
        assert all(e["configured"] and e["health"] == "HEALTHY" for e in svc["endpoints"])
        assert abs(series_total(view, "svc", "failures_per_s") - 1) < 1e-6   # UNKNOWN: an endpoint failure
        assert next(r for r in view["routes"] if r["name"] == "all")["splits"][0]["cluster"] == "svc"
        proxies = {p["node_id"]: p for p in view["proxies"]}
        assert set(proxies) == {"p1", "p2"} and all(p["reports_load"] and p["state"] == "SYNCED"
                                                    for p in proxies.values())

        # While calls flow, the endpoints' current figures add up to the client's rate.
        with p1.channel() as channel:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                interop_unary(channel)
        view = mesh_json(http)
        svc = next(c for c in view["clusters"] if c["name"] == "svc")
        shown = [e for e in svc["endpoints"] if e.get("reported_by") == 2]
        assert len(shown) == 2 and sum(e["share"] for e in shown) > 0.99
        assert all(e["p50_s"] is not None and e["p99_s"] >= e["p50_s"] for e in shown)

        mesh.proxies["p2"].proc.stop()
        poll_until(lambda: metric(http, "meshgrpc_cp_load_reporting_proxies") == 1, 10, "p2 forgotten")
        assert {p["node_id"] for p in mesh_json(http)["proxies"]} == {"p1"}


def test_control_plane_metrics_count_streams_pushes_nacks_registrations_and_commits(tmp_path):
    proc, address = start_control_plane(tmp_path / "data", "--config", EXAMPLE)
    http = proc.address("dashboard")
    try:
        assert metric(http, "meshgrpc_cp_store_commit_seconds_count", kind="apply") == 0   # the file at start: before
        assert cli(address, "apply", "-f", EXAMPLE.replace("mesh.yaml", "balancing.yaml")).returncode == 0
        assert metric(http, "meshgrpc_cp_store_commit_seconds_count", kind="apply") == 1
        with DiscoveryProbe(address, "nacker", nack={ROUTES: "no thanks"}):
            poll_until(lambda: metric(http, "meshgrpc_cp_nacks_total", stream="sotw", type="RouteConfig") == 1,
                       10, "the NACK counted")
            assert metric(http, "meshgrpc_cp_connected_proxies", stream="sotw") == 1
            for kind in ("Cluster", "EndpointSet", "RouteConfig"):
                assert metric(http, "meshgrpc_cp_pushes_total", stream="sotw", type=kind) == 1
                assert metric(http, "meshgrpc_cp_push_size_bytes_count", stream="sotw", type=kind) == 1
            assert metric(http, "meshgrpc_cp_push_size_bytes_sum", stream="sotw", type="Cluster") > 20
            holder = meshgrpc("register", "--cluster", "greeter", "--address", "127.0.0.1:7001",
                              "--control-plane", address)
            try:
                holder.wait_for_line(r"registered .* in cluster 'greeter'", 10)
                assert metric(http, "meshgrpc_cp_registrations_total") == 1
                assert metric(http, "meshgrpc_cp_registered_instances") == 1
                assert metric(http, "meshgrpc_cp_store_commit_seconds_count", kind="register") == 1
                poll_until(lambda: metric(http, "meshgrpc_cp_pushes_total", stream="sotw", type="EndpointSet") == 2,
                           10, "the registration pushed")
            finally:
                holder.stop()
        poll_until(lambda: metric(http, "meshgrpc_cp_connected_proxies", stream="sotw") == 0, 10, "probe gone")
    finally:
        proc.stop()


def _route_config(timeout_s: int) -> resources_pb2.MeshConfig:
    return json_format.ParseDict({"routes": [route_config([route("/", "svc", timeout=f"{timeout_s}s")])]},
                                 resources_pb2.MeshConfig())


def test_the_convergence_histogram_times_each_apply_to_the_last_ack(tmp_path):
    with Mesh(tmp_path) as mesh:
        a = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [a]}, [route("/", "svc")]))
        http = mesh.control_plane.address("dashboard")
        for node in ("p1", "p2", "p3"):
            mesh.start_proxy(node)
        with credentials(mesh.cp_address).channel(mesh.cp_address) as channel:
            stub = management_pb2_grpc.ManagementStub(channel)
            for change in range(3):
                count = metric(http, "meshgrpc_cp_convergence_seconds_count")
                total = metric(http, "meshgrpc_cp_convergence_seconds_sum")
                measured, slack = _apply_until_synced(stub, _route_config(10 + change))
                assert metric(http, "meshgrpc_cp_convergence_seconds_count") == count + 1
                observed = metric(http, "meshgrpc_cp_convergence_seconds_sum") - total
                # The histogram times commit -> last ACK; the test, from before the Apply to seeing every
                # proxy SYNCED: it can only be longer, by the Apply's own path and the last poll.
                assert 0 < observed <= measured, (observed, measured)
                assert observed >= measured - slack, (observed, measured, slack)


def _apply_until_synced(stub, config) -> tuple[float, float]:
    """Applies `config`; returns (seconds until ProxyStatus shows every proxy SYNCED on the
    new versions, the part of it that is not the mesh's: the Apply call and the last poll)."""
    started = time.monotonic()
    response = stub.Apply(management_pb2.ApplyRequest(config=config), timeout=10)
    apply_s = time.monotonic() - started
    want = dict(response.versions)
    while True:
        before = time.monotonic()
        status = stub.ProxyStatus(management_pb2.ProxyStatusRequest(), timeout=10)
        seen = time.monotonic()
        if all(t.state == management_pb2.TypeStatus.SYNCED and t.acked_version == want[t.type_url]
               for p in status.proxies for t in p.types):
            return seen - started, apply_s + (seen - before) + 0.01
        assert seen - started < 10, status
        time.sleep(0.005)
