"""Config changes under steady load through a real `meshgrpc proxy`: a route
change applied with `meshgrpc apply`, the control plane SIGKILLed and restarted,
and an update the proxy rejects. In each, four client threads call without pause
(client retries off) and not one call may fail."""

from __future__ import annotations

import asyncio
import threading

import grpc

from meshapi.v1 import management_pb2
from meshgrpc.config.loader import parse_document
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.server import DiscoveryServer
from meshgrpc.xds.snapshot import Snapshot
from tests.support.mesh import Load, Mesh, interop_unary, mesh_config, route
from tests.support.procs import poll_until

UNARY_PATH = "/grpc.testing.TestService/UnaryCall"


def test_route_changes_under_load_lose_no_call(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b, c = (mesh.start_backend(n) for n in "abc")
        endpoints = {"blue": [a], "green": [b], "canary": [c]}
        mesh.start_control_plane(mesh_config(endpoints, [route("/", "blue", name="main")]))
        proxy = mesh.start_proxy("route-proxy")
        with Load(proxy.address, interop_unary, threads=4) as load:
            load.wait_calls(50)
            assert set(load.labels()) == {"a"}

            # Weighted clusters: half the calls to green.
            mesh.apply(mesh_config(endpoints, [route("/", weighted={"blue": 50, "green": 50}, name="main")]))
            changed = load.wait_label("b")
            load.wait_calls(200, after=changed)
            split = load.labels(after=changed)
            assert set(split) == {"a", "b"} and min(split.values()) > len(list(split.elements())) // 5, split

            # A new, more specific route ahead of the old one takes the unary calls.
            mesh.apply(mesh_config(endpoints, [route(UNARY_PATH, "canary"),
                                               route("/", weighted={"blue": 50, "green": 50}, name="main")]))
            changed = load.wait_label("c")
            load.wait_calls(100, after=changed)
            assert set(load.labels(after=changed)) == {"c"}
        assert load.failures == []
        assert proxy.metric("meshgrpc_proxy_calls_total", grpc_status="0") == load.ok


def test_control_plane_killed_under_load_then_restarted_and_resynced(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        address = mesh.start_control_plane(mesh_config({"svc": [a]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("static-proxy")
        first = proxy.versions()
        with Load(proxy.address, interop_unary, threads=4) as load:
            load.wait_calls(50)
            mesh.kill_control_plane()
            proxy.wait_config(lambda d: not d["control_plane"]["connected"], what="the stream is down")
            lost = load.ok
            load.wait_calls(lost + 100)  # static stability: the last config keeps serving
            assert proxy.ready() and proxy.versions() == first

            # Same port (the proxy reconnects to the address it was given), same data dir,
            # no --config: it serves what it had committed.
            assert mesh.start_control_plane(listen=address, attempts=5) == address
            proxy.wait_config(lambda d: d["control_plane"]["connected"], timeout=15, what="reconnected")
            assert proxy.versions() == first

            mesh.apply(mesh_config({"svc": [a, b]}, [route("/", "svc")]))
            changed = load.wait_label("b")
            load.wait_calls(100, after=changed)
            assert set(load.labels(after=changed)) == {"a", "b"}
        assert load.failures == []
        now = proxy.versions()
        assert now["EndpointSet"] != first["EndpointSet"] and now["RouteConfig"] == first["RouteConfig"]
        status = mesh.wait_synced("static-proxy")
        assert f"SYNCED {now['EndpointSet']}" in status


class DiscoveryThread:
    """An in-process discovery server (DiscoveryServer + SnapshotCache) on its own
    event loop thread: the test sets snapshots the control plane would refuse."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.address = self._run(self._start())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self) -> str:
        self.cache = SnapshotCache()
        self.discovery = DiscoveryServer(self.cache)
        self.server = grpc.aio.server()
        self.discovery.add_to(self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{port}"

    def set(self, config: dict, versions: dict[str, str]) -> None:
        snapshot = Snapshot.from_mesh(parse_document(config), versions)  # no validation: on purpose

        async def set_():
            self.cache.set(snapshot)
        self._run(set_())

    def statuses(self) -> dict[str, management_pb2.TypeStatus]:
        """The one connected proxy's status per type URL."""
        async def get():
            return self.discovery.proxy_statuses()
        proxies = self._run(get())
        return {t.type_url: t for p in proxies for t in p.types}

    def stop(self) -> None:
        self._run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_an_update_the_proxy_rejects_is_nacked_while_traffic_continues(tmp_path):
    discovery = DiscoveryThread()
    try:
        with Mesh(tmp_path) as mesh:
            a, b = mesh.start_backend("a"), mesh.start_backend("b")
            endpoints = {"one": [a], "two": [b]}
            good = mesh_config(endpoints, [route("/", "one")])
            discovery.set(good, {CLUSTER: "1", ENDPOINTS: "1", ROUTES: "1"})
            mesh.cp_address = discovery.address
            proxy = mesh.start_proxy("nack-proxy", "--insecure")   # the discovery server here is plaintext
            with Load(proxy.address, interop_unary, threads=4) as load:
                load.wait_calls(50)
                # Route config 2: a regex that does not compile, ahead of a route to "two".
                bad = mesh_config(endpoints, [route("", "two", regex="/grpc.testing.(", name="broken"),
                                              route("/", "two")])
                discovery.set(bad, {CLUSTER: "1", ENDPOINTS: "1", ROUTES: "2"})
                nacked = poll_until(lambda: (s := discovery.statuses().get(ROUTES)) and
                                    s.state == management_pb2.TypeStatus.NACKED and s, 10, "the proxy NACKs")
                assert nacked.sent_version == "2" and nacked.acked_version == "1"
                assert nacked.error.endswith(
                    "routes[0].virtual_hosts[0].routes[0].match.regex: regex '/grpc.testing.(' is not valid RE2 "
                    "syntax: missing ): /grpc.testing.("), nacked.error
                assert proxy.metric("meshgrpc_proxy_config_nacks_total") == 1
                assert proxy.versions()["RouteConfig"] == "1"
                mark = load.ok
                load.wait_calls(mark + 100)
                assert set(load.labels()) == {"a"}  # still on the last good config

                discovery.set(mesh_config(endpoints, [route("/", "two")]), {CLUSTER: "1", ENDPOINTS: "1", ROUTES: "3"})
                changed = load.wait_label("b")
                load.wait_calls(50, after=changed)
                assert set(load.labels(after=changed)) == {"b"}
            assert load.failures == []
            synced_now = discovery.statuses()[ROUTES]
            assert (synced_now.state, synced_now.acked_version) == (management_pb2.TypeStatus.SYNCED, "3")
            versions = proxy.versions()
            assert versions.pop("AuthorizationPolicy")  # (no policies: versioned by their digest)
            assert versions == {"Cluster": "1", "EndpointSet": "1", "RouteConfig": "3"}
    finally:
        discovery.stop()
