"""A discovery stream's loops (meshgrpc.xds.session) through a fake stream."""

import asyncio

import grpc
import pytest

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES
from meshgrpc.xds import wire
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.session import Session, StreamError
from tests.unit.xds_builders import ORDERED, snap


class FakeStream:
    """StreamIO over two bounded queues; `None` in `requests` half-closes."""

    def __init__(self):
        self.requests: asyncio.Queue = asyncio.Queue(100)
        self.responses: asyncio.Queue = asyncio.Queue(100)
        self.raw: list[bytes] = []

    async def read(self):
        return await self.requests.get()

    async def write(self, data):
        self.raw.append(data)
        await self.responses.put(discovery_pb2.DiscoveryResponse.FromString(data))

    async def next(self, timeout=1.0):
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def quiet(self):
        """Asserts nothing is sent: lets the loops run, then checks the queue."""
        for _ in range(20):
            await asyncio.sleep(0)
        assert self.responses.empty(), self.responses.get_nowait()


def request(type_url, node="p1", version="", nonce="", nack=None):
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce)
    if node:
        req.node.id = node
    if nack:
        req.error_detail.code, req.error_detail.message = 3, nack
    return req


async def started(cache, bodies=None, versions=None):
    stream = FakeStream()
    session = Session(stream, cache, bodies or wire.BodyCache(), idle_timeout=5, io_timeout=5)
    for t in ORDERED:
        await stream.requests.put(request(t, version=(versions or {}).get(t, "")))
    return stream, session, asyncio.create_task(session.run())


async def finish(stream, task):
    await stream.requests.put(None)
    await asyncio.wait_for(task, 1)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 10))


def test_first_request_without_node_id_ends_the_stream():
    async def main():
        stream = FakeStream()
        await stream.requests.put(request(CLUSTER, node=""))
        with pytest.raises(StreamError) as e:
            await Session(stream, SnapshotCache(), wire.BodyCache()).run()
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "node.id" in e.value.message
    run(main())


def test_unknown_type_ends_the_stream_naming_it():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        stream, session, task = await started(cache)
        await stream.requests.put(request("type.googleapis.com/nope.Thing"))
        with pytest.raises(StreamError, match="nope.Thing") as e:
            await asyncio.wait_for(task, 1)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    run(main())


def test_sends_in_order_acks_and_pushes_changes():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        stream, session, task = await started(cache)
        got = []
        for _ in range(3):
            r = await stream.next()
            got.append(r.type_url)
            await stream.requests.put(request(r.type_url, node="", version=r.version_info, nonce=r.nonce))
        assert got == [CLUSTER, ENDPOINTS, ROUTES]
        await stream.quiet()
        cache.set(snap("2", ["a", "b"]))
        r = await stream.next()
        assert (r.type_url, r.version_info) == (CLUSTER, "2")
        await finish(stream, task)
    run(main())


def test_stale_nonce_gets_no_answer_and_nack_no_resend():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        stream, session, task = await started(cache)
        c = await stream.next()
        await stream.requests.put(request(CLUSTER, node="", version="1", nonce="not-a-nonce"))
        e = await stream.next()
        await stream.requests.put(request(ENDPOINTS, node="", nonce=e.nonce, nack="bad endpoints"))
        await stream.quiet()  # clusters unanswered, endpoints NACKed: nothing to send
        await stream.requests.put(request(CLUSTER, node="", version="1", nonce=c.nonce))
        r = await stream.next()
        assert r.type_url == ROUTES
        await stream.quiet()
        assert session.status().types[1].error == "bad endpoints"
        await finish(stream, task)
    run(main())


def test_resume_with_current_versions_sends_nothing():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        stream, session, task = await started(cache, versions={t: "1" for t in ORDERED})
        await stream.quiet()
        await finish(stream, task)
    run(main())


def test_streams_share_one_serialization_per_version():
    async def main():
        cache, bodies = SnapshotCache(), wire.BodyCache()
        cache.set(snap("1", ["a"]))
        streams = [await started(cache, bodies) for _ in range(3)]
        for s, _, _ in streams:
            assert [(await s.next()).type_url for _ in range(2)] == [CLUSTER, ENDPOINTS]
        bodies = [cache.current[CLUSTER].body, cache.current[ENDPOINTS].body]
        # Each response is the snapshot's one body plus a few bytes of nonce.
        assert all(s.raw[i].startswith(bodies[i]) and len(s.raw[i]) - len(bodies[i]) < 8
                   for s, _, _ in streams for i in range(2))
        for s, _, task in streams:
            await finish(s, task)
    run(main())


def test_reader_task_is_cancelled_when_the_transport_fails():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        stream, session, task = await started(cache)
        c = await stream.next()
        await stream.requests.put(request(CLUSTER, node="", version="1", nonce=c.nonce))
        await stream.next()  # endpoints

        async def broken(_):
            raise ConnectionError("gone")
        stream.write = broken
        cache.set(snap("2", ["a", "b"]))  # wakes the sender, whose write fails
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(task, 1)
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("xds-reader")] == []
    run(main())
