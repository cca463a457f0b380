"""An etcd v3 client on grpc.aio, built on meshgrpc's own stubs of etcd's API
(protos/etcdapi): ranges, transactions, leases, and a prefix watch that resumes.

What it adds on top of the raw RPCs, because a control plane needs it:
- several endpoints: a call that finds its member unreachable, leaderless or
  timed out (UNAVAILABLE, DEADLINE_EXCEEDED) moves to the next endpoint and is
  retried with backoff until the call's deadline; every call has one;
- a watch that resumes from the revision after the last one it delivered, on
  whichever member answers, so no event is missed or delivered twice; when that
  revision has been compacted away it says so (`Compacted`) and the owner reloads;
- lease keep-alive over one long-lived LeaseKeepAlive stream.
Retrying a write is safe only when it is idempotent or guarded by a compare (a
compare-and-swap transaction): callers guard their transactions.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import grpc

from etcdapi import rpc_pb2, rpc_pb2_grpc
from meshgrpc.backoff import Backoff
from meshgrpc.errors import Unavailable
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A whole mesh applied at once is one transaction and one watch response: megabytes.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20))
Events = Callable[[int, list[rpc_pb2.Event]], None]


def prefix_end(prefix: bytes) -> bytes:
    """The range_end selecting every key that starts with `prefix` (etcd: the
    prefix with its last byte incremented)."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\0"
    end[-1] += 1
    return bytes(end)


class Compacted(Exception):
    """The watch's start revision is no longer in etcd's history."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"revision {revision} has been compacted")
        self.revision = revision


class EtcdClient:
    """Calls etcd at `endpoints` ("host:port", tried in turn). `timeout` bounds
    each call, retries included."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 5.0, rng: random.Random | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._rng = rng or random.Random()
        self._channels = [grpc.aio.insecure_channel(e, options=CHANNEL_OPTIONS) for e in self.endpoints]
        self._current = 0
        self._keepalive_lock = asyncio.Lock()
        self._keepalive: grpc.aio.StreamStreamCall | None = None

    # --- unary calls, with failover ---------------------------------------------

    def _stub(self, cls, index: int):
        return cls(self._channels[index % len(self._channels)])

    async def _call(self, what: str, invoke: Callable[[int], Awaitable]):
        """Runs `invoke(endpoint index)` until it succeeds, moving to the next
        endpoint on a retryable failure, within `timeout` in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        backoff = Backoff(self._rng, 0.05, 0.5, jitter=0.5)
        while True:
            index = self._current
            left = deadline - loop.time()
            try:
                return await asyncio.wait_for(invoke(index), max(0.01, left))
            except (grpc.aio.AioRpcError, TimeoutError) as e:
                code = e.code() if isinstance(e, grpc.aio.AioRpcError) else grpc.StatusCode.DEADLINE_EXCEEDED
                if code not in RETRYABLE:
                    raise
                detail = e.details() if isinstance(e, grpc.aio.AioRpcError) else "timed out"
                if self._current == index:
                    self._current = (index + 1) % len(self._channels)
                delay = backoff.failed()
                if loop.time() + delay >= deadline:
                    raise Unavailable(f"etcd {what} failed on {', '.join(self.endpoints)} within "
                                      f"{self.timeout:g}s: {code.name}: {detail}") from None
                log.debug("etcd %s on %s: %s: %s; trying the next endpoint", what,
                          self.endpoints[index], code.name, detail)
                await asyncio.sleep(delay)

    async def range(self, key: bytes, range_end: bytes = b"", revision: int = 0, limit: int = 0) -> rpc_pb2.RangeResponse:
        request = rpc_pb2.RangeRequest(key=key, range_end=range_end, revision=revision, limit=limit)
        return await self._call("range", lambda i: self._stub(rpc_pb2_grpc.KVStub, i).Range(request))

    async def range_prefix(self, prefix: bytes, revision: int = 0, limit: int = 0) -> rpc_pb2.RangeResponse:
        return await self.range(prefix, prefix_end(prefix), revision, limit)

    async def txn(self, request: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        return await self._call("transaction", lambda i: self._stub(rpc_pb2_grpc.KVStub, i).Txn(request))

    async def compact(self, revision: int) -> None:
        """Drops etcd's history before `revision` (operators and tests; etcd can also
        compact by itself with --auto-compaction-retention)."""
        request = rpc_pb2.CompactionRequest(revision=revision, physical=True)
        await self._call("compaction", lambda i: self._stub(rpc_pb2_grpc.KVStub, i).Compact(request))

    async def grant(self, ttl: int) -> int:
        request = rpc_pb2.LeaseGrantRequest(TTL=ttl)
        response = await self._call("lease grant", lambda i: self._stub(rpc_pb2_grpc.LeaseStub, i).LeaseGrant(request))
        if response.error:
            raise Unavailable(f"etcd refused a lease: {response.error}")
        return response.ID

    async def revoke(self, lease: int) -> None:
        request = rpc_pb2.LeaseRevokeRequest(ID=lease)
        try:
            await self._call("lease revoke", lambda i: self._stub(rpc_pb2_grpc.LeaseStub, i).LeaseRevoke(request))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # already expired: nothing to revoke
                raise

    async def time_to_live(self, lease: int) -> int:
        """Seconds the lease has left; -1 when it expired or never existed."""
        request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease)
        response = await self._call("lease lookup",
                                    lambda i: self._stub(rpc_pb2_grpc.LeaseStub, i).LeaseTimeToLive(request))
        return response.TTL

    async def keep_alive(self, lease: int) -> int:
        """Renews `lease` once; returns its new TTL (<= 0: the lease is gone)."""
        return await self._call("lease keep-alive", lambda i: self._keep_alive_on(i, lease))

    async def _keep_alive_on(self, index: int, lease: int) -> int:
        # One request, one response, in order on one stream: serialised by the lock.
        async with self._keepalive_lock:
            if self._keepalive is None or self._keepalive.done():
                self._keepalive = self._stub(rpc_pb2_grpc.LeaseStub, index).LeaseKeepAlive()
            call = self._keepalive
            try:
                await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease))
                response = await call.read()
            except BaseException:
                call.cancel()
                self._keepalive = None
                raise
            if response is grpc.aio.EOF:
                self._keepalive = None
                raise Unavailable("etcd ended the lease keep-alive stream")
            return response.TTL

    # --- watch ----------------------------------------------------------------

    def watch(self, prefix: bytes, start_revision: int, on_events: Events,
              on_compacted: Callable[[Compacted], None]) -> PrefixWatch:
        return PrefixWatch(self, prefix, start_revision, on_events, on_compacted)

    def watch_stub(self) -> rpc_pb2_grpc.WatchStub:
        return self._stub(rpc_pb2_grpc.WatchStub, self._current)

    def failed_over(self) -> None:
        """Moves later calls to the next endpoint (the watch found this one dead)."""
        self._current = (self._current + 1) % len(self._channels)

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        for channel in self._channels:
            await channel.close()


class PrefixWatch:
    """Delivers every event under `prefix` from `start_revision` on, once each and
    in revision order, as `on_events(revision, events)` per revision; reconnects
    (to the next endpoint, with backoff) and resumes after the last revision
    delivered. `revision` is the last revision delivered or known reached."""

    def __init__(self, client: EtcdClient, prefix: bytes, start_revision: int, on_events: Events,
                 on_compacted: Callable[[Compacted], None]) -> None:
        self._client = client
        self.prefix = prefix
        self.revision = start_revision - 1
        self._on_events = on_events
        self._on_compacted = on_compacted
        self._task = OwnedTask(f"etcd-watch {prefix.decode(errors='replace')}", self._run)
        self.connected = asyncio.Event()

    def start(self) -> asyncio.Task:
        return self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    def __repr__(self) -> str:
        return (f"PrefixWatch({self.prefix.decode(errors='replace')!r} revision={self.revision}"
                f" connected={self.connected.is_set()})")

    async def _run(self) -> None:
        backoff = Backoff(self._client._rng, 0.05, 2.0, jitter=0.5)
        while True:
            try:
                await self._stream(backoff)
            except Compacted as e:
                self._on_compacted(e)
                return
            except grpc.aio.AioRpcError as e:
                log.warning("etcd watch stream failed (%s: %s); resuming after revision %d",
                            e.code().name, e.details(), self.revision)
            self.connected.clear()
            self._client.failed_over()
            await asyncio.sleep(backoff.failed())

    async def _stream(self, backoff: Backoff) -> None:
        call = self._client.watch_stub().Watch()
        try:
            create = rpc_pb2.WatchCreateRequest(key=self.prefix, range_end=prefix_end(self.prefix),
                                                start_revision=self.revision + 1, progress_notify=True)
            await call.write(rpc_pb2.WatchRequest(create_request=create))
            while (response := await call.read()) is not grpc.aio.EOF:
                self._receive(response)
                if response.created:
                    self.connected.set()
                    backoff.succeeded()
        finally:
            call.cancel()

    def _receive(self, response: rpc_pb2.WatchResponse) -> None:
        if response.compact_revision:
            raise Compacted(self.revision + 1)
        if response.canceled:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details=f"watch canceled: {response.cancel_reason or 'no reason given'}")
        by_revision: dict[int, list[rpc_pb2.Event]] = {}
        for event in response.events:
            by_revision.setdefault(event.kv.mod_revision, []).append(event)
        for revision in sorted(by_revision):
            if revision > self.revision:   # a resumed stream never repeats what was delivered
                self.revision = revision
                self._on_events(revision, by_revision[revision])
        # Progress notifications (no events; not the creation's answer, whose
        # revision is "now" while older events may follow) say every revision up
        # to here is seen.
        if not response.events and not response.created and response.header.revision > self.revision:
            self.revision = response.header.revision
            self._on_events(self.revision, [])
