"""The proxy's admin pages against a real control plane and real calls:
/ready, /config_dump, /clusters and /metrics."""

from __future__ import annotations

import grpc

from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.support.mesh import Mesh, interop_unary, mesh_config, route, route_config, short_versions
from tests.support.procs import poll_until

TYPES = {"Cluster", "EndpointSet", "RouteConfig", "AuthorizationPolicy"}


def test_admin_pages_follow_config_and_calls(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        config = mesh_config({"svc": [a, b]})  # clusters and endpoints, but no route config yet
        mesh.start_control_plane(config)
        proxy = mesh.start_proxy("admin-proxy", ready=False)

        # Not ready: every type arrived, but not the route config this proxy serves.
        dump = proxy.wait_config(lambda d: set(short_versions(d)) == TYPES, what="every type received")
        status, body = proxy.get("/ready")
        assert (status, body) == (503, "not ready: route config not found\n")
        assert dump["control_plane"] == {"target": mesh.cp_address, "connected": True, "connects": 1,
                                         "last_error": ""}
        # Scoped to what its route config reaches: without one, not even svc.
        assert dump["config"].get("clusters", []) == [] and dump["config"].get("routes", []) == []
        with proxy.channel() as channel:  # a call meanwhile is refused with the reason
            try:
                interop_unary(channel)
                raise AssertionError("a proxy without routes served a call")
            except grpc.RpcError as e:
                assert (e.code(), e.details()) == (grpc.StatusCode.UNAVAILABLE, "proxy has no route configuration yet")

        config["routes"] = [route_config([route("/grpc.testing.TestService/", "svc")])]
        mesh.apply(config)
        poll_until(proxy.ready, 10, "/ready turns 200 once the route config arrives")
        assert proxy.get("/ready") == (200, "ready\n")
        versions = proxy.versions()
        assert versions["RouteConfig"] != short_versions(dump)["RouteConfig"]
        dump = proxy.json("/config_dump")
        routes = dump["config"]["routes"]
        assert [r["name"] for r in routes] == ["default"]
        assert routes[0]["virtual_hosts"][0]["routes"][0]["route"] == {"cluster": "svc"}
        assert {e["address"] for e in dump["config"]["endpoints"][0]["endpoints"]} == {a, b}

        before = proxy.endpoints()["svc"]
        assert set(before) == {a, b} and all(e["calls"] == 0 and e["in_flight"] == 0 for e in before.values())
        with proxy.channel() as channel:
            answered = {interop_unary(channel) for _ in range(10)}
            stub = test_pb2_grpc.TestServiceStub(channel)
            failing = messages_pb2.SimpleRequest(response_status=messages_pb2.EchoStatus(code=2, message="boom"))
            try:
                stub.UnaryCall(failing, timeout=5)
                raise AssertionError("the call should have failed")
            except grpc.RpcError as e:
                assert (e.code(), e.details()) == (grpc.StatusCode.UNKNOWN, "boom")
        assert answered == {"a", "b"}

        # Counters move: 11 calls over two endpoints by round robin; the failed one (UNKNOWN
        # is an endpoint failure) counted against the endpoint that served it.
        def counted():
            endpoints = proxy.endpoints()["svc"]
            return endpoints if sum(e["calls"] for e in endpoints.values()) == 11 else None
        after = poll_until(counted, 5, "/clusters counts 11 calls")
        assert sorted(e["calls"] for e in after.values()) == [5, 6]
        assert sum(e["failures"] for e in after.values()) == 1
        assert all(e["in_flight"] == 0 and e["last_latency_s"] > 0 for e in after.values())

        labels = {"route": "to-svc", "cluster": "svc", "http_status": "200"}
        assert proxy.metric("meshgrpc_proxy_calls_total", grpc_status="0", **labels) == 10
        assert proxy.metric("meshgrpc_proxy_calls_total", grpc_status="2", **labels) == 1
        assert proxy.metric("meshgrpc_proxy_call_latency_seconds_count", **labels) == 11
        assert proxy.metric("meshgrpc_proxy_in_flight_calls", cluster="svc") == 0
        assert proxy.metric("meshgrpc_proxy_config_info", type="RouteConfig",
                            version=versions["RouteConfig"]) == 1
        assert proxy.metric("meshgrpc_proxy_config_nacks_total") == 0
        assert proxy.get("/nothing")[0] == 404


def test_the_admin_port_is_read_only_and_on_loopback_by_default(tmp_path):
    import http.client
    from meshgrpc.cli import _parser
    defaults = _parser().parse_args(["proxy", "--node-id", "x"])
    assert defaults.admin == "127.0.0.1:15000"
    with Mesh(tmp_path) as mesh:
        a = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [a]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("ro-proxy")
        before = proxy.json("/config_dump")
        host, port = proxy.admin.rsplit(":", 1)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/ready", "/config_dump", "/clusters", "/metrics", "/drain", "/quitquitquit"):
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
                conn.request(method, path, body=b"{}")
                response = conn.getresponse()
                known = path in ("/ready", "/config_dump", "/clusters", "/metrics")
                response.read()
                assert response.status == 405 if known else response.status in (404, 405), (method, path)
                conn.close()
        assert proxy.json("/config_dump")["versions"] == before["versions"] and proxy.ready()
