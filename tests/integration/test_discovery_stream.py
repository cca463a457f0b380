"""The discovery stream over real gRPC: an in-process grpc.aio server
(DiscoveryServer + SnapshotCache, bound at 127.0.0.1:0) and real client streams."""

from __future__ import annotations

import asyncio
import random

import grpc

from meshapi.v1 import discovery_pb2, management_pb2, resources_pb2 as r
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.errors import ConfigError
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.backoff import Backoff
from meshgrpc.grpcwire import Dialer
from meshgrpc.xds.client import DiscoveryClient
from meshgrpc.xds.server import DiscoveryServer
from meshgrpc.xds.snapshot import Snapshot
from tests.unit.xds_builders import mesh, snap

# What these streams subscribe to: the types make-before-break orders (a stream also
# subscribed to authorization policies gets them before routes: tests/unit/test_xds_ordering.py).
STREAMED = (CLUSTER, ENDPOINTS, ROUTES)

S = management_pb2.TypeStatus.SyncState
METHOD = "/meshapi.v1.Discovery/StreamResources"


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 20))


class Plane:
    """An in-process discovery server on 127.0.0.1 (port 0 unless given)."""

    def __init__(self, cache: SnapshotCache) -> None:
        self.cache, self.discovery = cache, DiscoveryServer(cache)
        self.server, self.port = None, 0

    async def start(self, port: int = 0) -> "Plane":
        self.server = grpc.aio.server()
        self.discovery.add_to(self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop(0)

    def status(self, node_id: str) -> management_pb2.ProxyStatus | None:
        return next((p for p in self.discovery.proxy_statuses() if p.node_id == node_id), None)


async def poll(predicate, what: str, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := predicate()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return result


class RawStream:
    """A real client stream driven by hand. A reader task drains responses into a
    bounded queue (cancelling a pending grpc.aio read would cancel the call)."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.call = self.channel.stream_stream(
            METHOD, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString)()
        self.received: asyncio.Queue = asyncio.Queue(100)
        self.reader = asyncio.create_task(self._drain())

    async def _drain(self):
        try:
            while (r := await self.call.read()) is not grpc.aio.EOF:
                await self.received.put(r)
        except grpc.aio.AioRpcError as e:
            await self.received.put(e)

    async def send(self, type_url, node="", version="", nonce="", nack=None):
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce)
        if node:
            req.node.id, req.node.zone = node, "zone-a"
        if nack:
            req.error_detail.code, req.error_detail.message = 3, nack
        await self.call.write(req)

    async def subscribe(self, node, versions=None):
        for i, t in enumerate(STREAMED):
            await self.send(t, node=node if i == 0 else "", version=(versions or {}).get(t, ""))

    async def recv(self, timeout=2.0) -> discovery_pb2.DiscoveryResponse:
        r = await asyncio.wait_for(self.received.get(), timeout)
        if isinstance(r, Exception):
            raise r
        return r

    async def ack(self, r):
        await self.send(r.type_url, version=r.version_info, nonce=r.nonce)

    async def expect_silence(self, seconds: float = 0.3):
        """Nothing arrives within `seconds` (the only way to observe "not answered")."""
        try:
            r = await asyncio.wait_for(self.received.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected response: {r}")

    async def close(self):
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.channel.close()


async def synced_stream(plane, node="p1"):
    stream = RawStream(plane.port)
    await stream.subscribe(node)
    got = []
    for _ in range(3):
        r = await stream.recv()
        got.append(r)
        await stream.ack(r)
    return stream, got


def test_sends_clusters_endpoints_routes_in_order_and_ack_syncs():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        stream, got = await synced_stream(plane)
        assert [(r.type_url, r.version_info) for r in got] == [(CLUSTER, "1"), (ENDPOINTS, "1"), (ROUTES, "1")]
        assert len({r.nonce for r in got}) == 3
        status = await poll(lambda: (s := plane.status("p1")) and all(
            t.state == S.SYNCED for t in s.types) and s, "SYNCED")
        assert status.zone == "zone-a" and status.peer.startswith("ipv4:127.0.0.1:")
        assert status.connected_since.seconds > 0
        await stream.close()
        await poll(lambda: plane.status("p1") is None, "the closed stream to leave the status")
        await plane.stop()
    run(main())


def test_nack_shows_nacked_with_the_reason_and_is_not_resent():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        stream = RawStream(plane.port)
        await stream.subscribe("p1")
        c = await stream.recv()
        await stream.send(CLUSTER, nonce=c.nonce, nack="clusters[0].lb_policy: unsupported")
        e = await stream.recv()
        assert e.type_url == ENDPOINTS  # the next type, not the rejected clusters again
        await stream.ack(e)
        r = await stream.recv()
        assert r.type_url == ROUTES
        await stream.ack(r)
        status = await poll(lambda: (s := plane.status("p1")) and s.types[0].state == S.NACKED and s, "NACKED")
        assert status.types[0].error == "clusters[0].lb_policy: unsupported"
        assert (status.types[0].sent_version, status.types[0].acked_version) == ("1", "")
        await stream.expect_silence()
        cache.set(snap("2", ["a", "b"]))  # a new version is sent
        assert (await stream.recv()).version_info == "2"
        await stream.close()
        await plane.stop()
    run(main())


def test_stale_nonce_gets_no_answer():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        stream, got = await synced_stream(plane)
        await stream.send(CLUSTER, version="0", nonce="stale-nonce")
        await stream.send(ROUTES, version="1", nonce=got[0].nonce)  # a clusters nonce on routes
        await stream.expect_silence()
        assert all(t.state == S.SYNCED for t in plane.status("p1").types)
        await stream.close()
        await plane.stop()
    run(main())


def test_reconnect_with_current_versions_gets_no_resend():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        stream = RawStream(plane.port)
        await stream.subscribe("p1", versions={CLUSTER: "1", ENDPOINTS: "1", ROUTES: "0"})
        r = await stream.recv()
        assert (r.type_url, r.version_info) == (ROUTES, "1")  # only what is out of date
        await stream.ack(r)
        await stream.expect_silence()
        await stream.close()
        await plane.stop()
    run(main())


def test_first_request_without_node_id_is_invalid_argument():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        stream = RawStream(plane.port)
        await stream.send(CLUSTER)
        try:
            await stream.recv()
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "node.id" in e.details()
        else:
            raise AssertionError("stream without node.id was served")
        await stream.close()
        await plane.stop()
    run(main())


def test_unknown_type_is_invalid_argument_naming_it():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        stream = RawStream(plane.port)
        await stream.send("type.googleapis.com/acme.Widget", node="p1")
        try:
            await stream.recv()
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "acme.Widget" in e.details()
        else:
            raise AssertionError("unknown type was served")
        await stream.close()
        await plane.stop()
    run(main())


def test_cache_change_pushes_to_every_stream_make_before_break():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["old"]))
        plane = await Plane(cache).start()
        streams = [(await synced_stream(plane, f"p{i}"))[0] for i in range(5)]
        cache.set(snap("2", ["new"]))
        for stream in streams:
            seen = []
            for _ in range(5):
                r = await stream.recv()
                seen.append((r.type_url, r.version_info, len(r.resources)))
                await stream.ack(r)
            assert seen == [(CLUSTER, "2+mbb", 2), (ENDPOINTS, "2+mbb", 2), (ROUTES, "2", 1),
                            (CLUSTER, "2", 1), (ENDPOINTS, "2", 1)]
        await poll(lambda: all(t.state == S.SYNCED for p in plane.discovery.proxy_statuses() for t in p.types)
                   and len(plane.discovery.proxy_statuses()) == 5, "all five SYNCED on version 2")
        for stream in streams:
            await stream.close()
        await plane.stop()
    run(main())


def test_client_acks_nacks_and_reconnects_after_a_server_restart():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        applied, reject = [], set()

        def on_update(type_url, version, resources):
            if version in reject:
                raise ConfigError([f"version {version} rejected"])
            applied.append((type_url, version))

        client = DiscoveryClient(f"127.0.0.1:{plane.port}", discovery_pb2.Node(id="px"),
                                 {t: [] for t in STREAMED}, on_update, rng=random.Random(1))
        client.start()
        await poll(lambda: client.versions == {t: "1" for t in STREAMED}, "client at version 1")
        assert applied == [(CLUSTER, "1"), (ENDPOINTS, "1"), (ROUTES, "1")] and client.connected
        await poll(lambda: (s := plane.status("px")) and all(t.state == S.SYNCED for t in s.types), "SYNCED")

        reject.add("2")
        cache.set(snap("2", ["a", "b"]))
        status = await poll(lambda: (s := plane.status("px")) and s.types[0].state == S.NACKED and s, "NACKED")
        assert "version 2 rejected" in status.types[0].error
        assert client.versions[CLUSTER] == "1"  # kept its last good version

        await plane.stop()
        await poll(lambda: not client.connected, "client to notice the server stopped")
        connects = client.connects
        reject.clear()
        applied.clear()
        await plane.start(port=plane.port)
        await poll(lambda: client.connects > connects, "client to reconnect")
        # Resumed with the versions it holds: only what it lacks (version 2) is sent.
        await poll(lambda: client.versions == {t: "2" for t in STREAMED}, "client at version 2")
        assert all(v == "2" for _, v in applied)
        # Restarted again: the client resumes at the current versions; nothing is resent.
        await plane.stop()
        await poll(lambda: not client.connected, "client to notice the second stop")
        connects, applied[:] = client.connects, []
        await plane.start(port=plane.port)
        await poll(lambda: client.connects > connects, "client to reconnect again")
        await poll(lambda: (s := plane.status("px")) and all(t.state == S.SYNCED for t in s.types), "SYNCED")
        assert applied == []
        await client.stop()
        assert not client.connected
        await plane.stop()
    run(main())


def test_client_backs_off_with_full_jitter_up_to_the_cap():
    async def main():
        delays, enough = [], asyncio.Event()

        async def sleep(delay):
            delays.append(delay)
            if len(delays) == 8:
                enough.set()
            await asyncio.sleep(0)

        # Port 1 on loopback refuses connections at once.
        client = DiscoveryClient("127.0.0.1:1", discovery_pb2.Node(id="x"), {CLUSTER: []},
                                 lambda *a: None, rng=random.Random(7), sleep=sleep, max_backoff=1.0)
        client.start()
        await asyncio.wait_for(enough.wait(), 10)
        await client.stop()
        expected = Backoff(random.Random(7), 0.1, 1.0)
        assert delays[:8] == [expected.failed() for _ in range(8)]
        assert all(0 <= d <= min(1.0, 0.1 * 2 ** i) for i, d in enumerate(delays))
        assert not client.connected and client.connects == 0
    run(main())


def test_client_takes_a_response_above_grpcs_default_limit_up_to_the_control_channels():
    async def main():
        blob = "v" * (64 << 10)   # 96 endpoints of 64 KiB: a 6 MiB EndpointSet
        config = mesh(["big"])
        del config.endpoints[0].endpoints[:]
        config.endpoints[0].endpoints.extend(r.Endpoint(address=f"10.0.0.{i + 1}:80", metadata={"blob": blob})
                                             for i in range(96))
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(config, {t: "1" for t in TYPE_ORDER}))
        plane = await Plane(cache).start()
        got = {}
        client = DiscoveryClient(f"127.0.0.1:{plane.port}", discovery_pb2.Node(id="big"), {ENDPOINTS: []},
                                 lambda t, v, items: got.update({t: items}), rng=random.Random(1))
        client.start()
        try:
            await poll(lambda: client.versions.get(ENDPOINTS) == "1", "the 6 MiB response applied")
            assert len(got[ENDPOINTS][0].endpoints) == 96
        finally:
            await client.stop()
        # The control channel's limit is what allows it: at gRPC's default 4 MiB it is refused.
        small = DiscoveryClient(f"127.0.0.1:{plane.port}", discovery_pb2.Node(id="small"), {ENDPOINTS: []},
                                lambda *a: None, rng=random.Random(1), dialer=Dialer(max_message_bytes=4 << 20))
        small.start()
        try:
            await poll(lambda: "RESOURCE_EXHAUSTED" in small.last_error, "the 6 MiB response refused at 4 MiB")
            assert "above the limit of 4194304" in small.last_error and small.versions == {}
        finally:
            await small.stop()
        await plane.stop()
    run(main())
