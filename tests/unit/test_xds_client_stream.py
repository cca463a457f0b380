"""The discovery clients' protocol logic through a fake stream (no network):
first requests, ACK and NACK with the error, a failed stream reported and
redialled on the next replica with backoff that restarts once a stream came up,
resuming with held versions, a stream never accepted given up on in time, and
the delta client's make-before-break and scoping on the wire."""

from __future__ import annotations

import asyncio
import random

from meshapi.v1 import discovery_pb2
from meshgrpc.backoff import Backoff
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, pack
from meshgrpc.errors import ConfigError
from meshgrpc.grpcwire import RpcError
from meshgrpc.grpcwire import status as st
from meshgrpc.xds.client import DiscoveryClient
from meshgrpc.xds.delta_client import DeltaClient
from tests.support.fake_stream import FakeOpener
from tests.unit.xds_builders import delta_response, mesh, route_config

# The types these clients subscribe to (a sidecar adds authorization policies: test_xds_ordering.py).
STREAMED = (CLUSTER, ENDPOINTS, ROUTES)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 20))


class Sleeps:
    """The client's sleep: records each backoff delay, lets the loop go on at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def sotw_response(type_url: str, version: str, resources, nonce: str) -> discovery_pb2.DiscoveryResponse:
    return discovery_pb2.DiscoveryResponse(type_url=type_url, version_info=version, nonce=nonce,
                                           resources=[pack(x) for x in resources])


def sotw_client(opener, on_update, targets="cp-a:1,cp-b:2", sleep=None):
    return DiscoveryClient(targets, discovery_pb2.Node(id="p1"), {t: [] for t in STREAMED}, on_update,
                           rng=random.Random(3), dialer=opener, sleep=sleep or Sleeps())


def test_the_first_requests_subscribe_each_type_and_name_the_node_once():
    async def main():
        opener = FakeOpener()
        client = sotw_client(opener, lambda *a: None)
        client.start()
        stream = await opener.next_stream()
        first = await stream.requests(3)
        assert stream.method == "/meshapi.v1.Discovery/StreamResources" and stream.target == "cp-a:1"
        assert [r.type_url for r in first] == list(STREAMED) and first[0].node.id == "p1"
        assert not first[1].HasField("node") and all(r.version_info == "" for r in first)
        assert client.connected and client.connects == 1
        await client.stop()
        assert stream.closed and not client.connected
    run(main())


def test_a_response_is_acked_and_one_the_proxy_rejects_is_nacked_with_its_error():
    async def main():
        opener, applied = FakeOpener(), []

        def on_update(type_url, version, resources):
            if version == "2":
                raise ConfigError(["clusters[0].name: bad"])
            applied.append((type_url, version, [c.name for c in resources]))

        client = sotw_client(opener, on_update)
        client.start()
        stream = await opener.next_stream()
        await stream.requests(3)
        stream.respond(sotw_response(CLUSTER, "1", mesh(["a"]).clusters, "n1"))
        ack = await stream.request()
        assert (ack.type_url, ack.version_info, ack.response_nonce) == (CLUSTER, "1", "n1")
        assert not ack.HasField("error_detail") and applied == [(CLUSTER, "1", ["a"])]
        stream.respond(sotw_response(CLUSTER, "2", mesh(["a", "b"]).clusters, "n2"))
        nack = await stream.request()
        assert (nack.version_info, nack.response_nonce) == ("1", "n2")     # still on its last good version
        assert nack.error_detail.code == st.INVALID_ARGUMENT and "clusters[0].name: bad" in nack.error_detail.message
        assert client.versions == {CLUSTER: "1"}
        stream.respond(discovery_pb2.DiscoveryResponse(type_url="type.googleapis.com/x.Y", nonce="n3"))
        assert "unsubscribed type" in (await stream.request()).error_detail.message
        await client.stop()
    run(main())


def test_a_failed_stream_is_reported_and_the_next_replica_resumes_with_the_held_versions():
    async def main():
        opener, sleeps = FakeOpener(), Sleeps()
        client = sotw_client(opener, lambda *a: None, sleep=sleeps)
        client.start()
        stream = await opener.next_stream()
        await stream.requests(3)
        stream.respond(sotw_response(CLUSTER, "7", mesh(["a"]).clusters, "n1"))
        await stream.request()
        stream.end(RpcError(st.UNAVAILABLE, "cp-a:1: connection lost"))
        again = await opener.next_stream()
        assert again.target == "cp-b:2" and stream.closed
        assert client.last_error == "UNAVAILABLE: cp-a:1: connection lost"
        resumed = await again.requests(3)
        assert [(r.type_url, r.version_info) for r in resumed] == [(CLUSTER, "7"), (ENDPOINTS, ""), (ROUTES, "")]
        assert client.connects == 2 and len(sleeps.delays) == 1
        await client.stop()
    run(main())


def test_backoff_grows_over_refused_connects_and_starts_over_once_a_stream_came_up():
    async def main():
        unavailable = [RpcError(st.UNAVAILABLE, f"refused {i}") for i in range(3)]
        opener, sleeps = FakeOpener(refuse=unavailable), Sleeps()
        client = sotw_client(opener, lambda *a: None, sleep=sleeps)
        client.start()
        stream = await opener.next_stream()          # the fourth connect succeeds
        await stream.requests(3)
        stream.end(RpcError(st.UNAVAILABLE, "then lost"))
        await opener.next_stream()
        expected = Backoff(random.Random(3), 0.1, 5.0)
        grown = [expected.failed() for _ in range(3)]
        expected.succeeded()
        assert sleeps.delays == grown + [expected.failed()]
        assert opener.targets == ["cp-a:1", "cp-b:2", "cp-a:1", "cp-b:2", "cp-a:1"]
        await client.stop()
    run(main())


def test_a_stream_the_control_plane_never_accepts_is_given_up_on():
    async def main():
        opener = FakeOpener(accept=False)
        client = DiscoveryClient("cp:1", discovery_pb2.Node(id="p"), {CLUSTER: []}, lambda *a: None,
                                 dialer=opener, sleep=Sleeps(), open_timeout=0.05)
        client.start()
        await opener.next_stream()
        await opener.next_stream()                   # gave up on the first, dialled again
        assert client.last_error == "DEADLINE_EXCEEDED: the control plane did not accept the stream within 0.05s"
        assert client.connects == 0
        await client.stop()
    run(main())


def test_the_delta_client_applies_a_route_only_after_the_clusters_it_reaches_and_resumes_what_it_holds():
    async def main():
        opener, applied = FakeOpener(), []
        client = DeltaClient("cp:1", discovery_pb2.Node(id="p"), {CLUSTER: [], ENDPOINTS: [], ROUTES: ["default"]},
                             lambda t, v, items: applied.append((t, len(items))), dialer=opener, sleep=Sleeps())
        client.start()
        stream = await opener.next_stream()
        assert stream.method == "/meshapi.v1.Discovery/DeltaResources"
        first = await stream.requests(3)
        assert [list(r.resource_names_subscribe) for r in first] == [[], [], ["default"]]
        stream.respond(delta_response(ROUTES, "1", [("default", route_config("default", ["a"]))], nonce="r1"))
        widen = await stream.requests(2)             # parked: subscribe to what it reaches, no ACK yet
        assert [(r.type_url, list(r.resource_names_subscribe), r.response_nonce) for r in widen] == [
            (CLUSTER, ["a"], ""), (ENDPOINTS, ["a"], "")]
        m = mesh(["a"])
        stream.respond(delta_response(CLUSTER, "1", [("a", m.clusters[0])], nonce="c1"))
        assert (await stream.request()).response_nonce == "c1"
        assert applied == [(CLUSTER, 1)]
        stream.respond(delta_response(ENDPOINTS, "1", [("a", m.endpoints[0])], nonce="e1"))
        assert [r.response_nonce for r in await stream.requests(2)] == ["e1", "r1"]   # then the route's ACK
        assert applied == [(CLUSTER, 1), (ENDPOINTS, 1), (ROUTES, 1)]
        stream.end(RpcError(st.UNAVAILABLE, "gone"))
        again = await opener.next_stream()
        resumed = await again.requests(3)
        assert [dict(r.initial_resource_versions) for r in resumed] == [{"a": "a@1"}, {"a": "a@1"},
                                                                       {"default": "default@1"}]
        await client.stop()
    run(main())
