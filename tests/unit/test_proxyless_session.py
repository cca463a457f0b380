"""An ADS stream as gRPC clients use it (meshgrpc.xds.session with the Envoy
protocol) through a fake stream: resources by name, an empty list meaning none,
every new stream answered, ACK/NACK per type with the client's error kept, and
make-before-break when a cluster goes away."""

from __future__ import annotations

import asyncio

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2 as ed

from meshapi.v1 import resources_pb2 as r
from meshgrpc.proxyless.envoy_types import CDS, EDS, LDS, RDS
from meshgrpc.proxyless.server import ENVOY, AdsServer
from meshgrpc.proxyless.snapshot import TranslatedCache
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.session import Session
from meshgrpc.xds.snapshot import Snapshot


class FakeStream:
    """StreamIO over two bounded queues, decoding Envoy responses."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue = asyncio.Queue(100)
        self.responses: asyncio.Queue = asyncio.Queue(100)

    async def read(self):
        return await self.requests.get()

    async def write(self, data: bytes) -> None:
        await self.responses.put(ed.DiscoveryResponse.FromString(data))

    async def next(self, timeout: float = 1.0) -> ed.DiscoveryResponse:
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def quiet(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        assert self.responses.empty(), self.responses.get_nowait()


def mesh(clusters: list[str], route_to: list[str], lb_policy=r.Cluster.ROUND_ROBIN) -> r.MeshConfig:
    action = r.RouteAction(weighted_clusters=[r.ClusterWeight(name=c, weight=1) for c in route_to])
    return r.MeshConfig(
        clusters=[r.Cluster(name=c, lb_policy=lb_policy) for c in clusters],
        routes=[r.RouteConfig(name="default", virtual_hosts=[r.VirtualHost(
            name="all", domains=["*"], routes=[r.Route(match=r.RouteMatch(prefix="/"), route=action)])])],
        listeners=[r.Listener(name="greeter.mesh", route_config="default")])


def request(type_url: str, names=(), nonce: str = "", version: str = "", node: str = "", nack: str = ""):
    req = ed.DiscoveryRequest(type_url=type_url, resource_names=list(names), response_nonce=nonce,
                              version_info=version)
    if node:
        req.node.id, req.node.user_agent_name, req.node.user_agent_version = node, "gRPC Python", "1.85.3"
    if nack:
        req.error_detail.code, req.error_detail.message = 3, nack
    return req


async def start(cache: SnapshotCache):
    stream = FakeStream()
    session = Session(stream, TranslatedCache(cache), wire.BodyCache(), idle_timeout=5, io_timeout=5, protocol=ENVOY)
    return stream, session, asyncio.create_task(session.run())


async def answer(stream: FakeStream, response, names=(), nack: str = "") -> None:
    await stream.requests.put(request(response.type_url, names, response.nonce,
                                      "" if nack else response.version_info, nack=nack))


async def follow_client(stream: FakeStream) -> dict[str, ed.DiscoveryResponse]:
    """Plays gRPC's resolution chain LDS -> RDS -> CDS -> EDS, ACKing each."""
    await stream.requests.put(request(LDS, ["greeter.mesh"], node="app-1"))
    got = {}
    for type_url, names in ((LDS, ["greeter.mesh"]), (RDS, ["default"]), (CDS, ["a"]), (EDS, ["a"])):
        response = await stream.next()
        assert response.type_url == type_url
        got[type_url] = response
        await answer(stream, response, names)
        following = {LDS: (RDS, ["default"]), RDS: (CDS, ["a"]), CDS: (EDS, ["a"])}.get(type_url)
        if following:
            await stream.requests.put(request(following[0], following[1]))
    return got


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


def test_new_stream_is_sent_current_state_by_name_through_the_chain():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a", "b"], ["a"])))
        stream, session, task = await start(cache)
        got = await follow_client(stream)
        assert [len(got[t].resources) for t in (LDS, RDS, CDS, EDS)] == [1, 1, 1, 1]  # only what was named
        cluster = cluster_pb2.Cluster()
        got[CDS].resources[0].Unpack(cluster)
        assert cluster.name == "a"
        await stream.quiet()
        status = session.status()
        assert status.client == "gRPC Python 1.85.3" and {t.state for t in status.types} == {1}  # SYNCED
        task.cancel()
    run(main())


def test_empty_resource_names_subscribe_to_nothing():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a"], ["a"])))
        stream, session, task = await start(cache)
        await stream.requests.put(request(CDS, [], node="app-1"))
        response = await stream.next()
        assert response.type_url == CDS and len(response.resources) == 0
        task.cancel()
    run(main())


def test_reconnect_with_the_current_version_is_still_answered():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a"], ["a"]), {}))
        current = TranslatedCache(cache).current.versions()
        stream, session, task = await start(cache)
        await stream.requests.put(request(LDS, ["greeter.mesh"], version=current[LDS], node="app-1"))
        response = await stream.next()
        assert (response.type_url, response.version_info) == (LDS, current[LDS])
        task.cancel()
    run(main())


def test_nack_keeps_the_clients_reason_and_is_not_resent():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a"], ["a"])))
        stream, session, task = await start(cache)
        await stream.requests.put(request(CDS, ["a"], node="app-1"))
        response = await stream.next()
        await answer(stream, response, ["a"], nack="errors validating Cluster resource: lb_policy")
        await stream.quiet()
        cds = next(t for t in session.status().types if t.type_url == CDS)
        assert cds.state == 3 and cds.error == "errors validating Cluster resource: lb_policy"  # NACKED
        task.cancel()
    run(main())


def test_dropped_cluster_stays_until_the_routes_that_used_it_are_answered():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a", "b"], ["a", "b"]), {}))
        stream, session, task = await start(cache)
        await stream.requests.put(request(RDS, ["default"], node="app-1"))
        await answer(stream, await stream.next(), ["default"])
        await stream.requests.put(request(CDS, ["a", "b"]))
        await answer(stream, await stream.next(), ["a", "b"])
        cache.set(Snapshot.from_mesh(mesh(["a"], ["a"]), {}))
        interim = await stream.next()
        assert interim.type_url == CDS and interim.version_info.endswith("+mbb") and len(interim.resources) == 2
        await answer(stream, interim, ["a", "b"])
        routes = await stream.next()
        assert routes.type_url == RDS
        await answer(stream, routes, ["default"])
        final = await stream.next()
        assert final.type_url == CDS and len(final.resources) == 1  # removal last
        task.cancel()
    run(main())


def test_status_lists_the_gaps_of_the_subscribed_resources_only():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a", "b"], ["a"], lb_policy=r.Cluster.PEAK_EWMA)))
        server = AdsServer(cache)
        stream = FakeStream()
        session = Session(stream, server.cache, wire.BodyCache(), protocol=ENVOY, on_sent=server.on_sent)
        server._sessions.add(session)
        task = asyncio.create_task(session.run())
        await stream.requests.put(request(CDS, ["a"], node="app-1"))
        await stream.next()
        [status] = server.proxy_statuses()
        assert list(status.unsupported) == [
            "cluster a: lb_policy: PEAK_EWMA is served as round_robin (gRPC has no peak-EWMA balancer)"]
        task.cancel()
    run(main())
