"""PREQUAL's probes (balancer/prequal.py) sent and answered: the I/O half of the
policy, owned by the proxy.

A probe is the first report of an `OpenRcaService/StreamCoreMetrics` stream (a
server sends its first report at once; gRPC's own ORCA services do too), read and
then cancelled: any ORCA backend answers it, meshgrpc.orca's reports carry the
`rif` and `latency_ms` metrics PREQUAL selects on. The answer is recorded on the
endpoint (EndpointState.on_load_report) and handed to the picker that asked
(`reply_to.on_probe(index, report)`).

Bounds: `probe()` never awaits and costs a deque append: the probe waits in a
queue of `queue_limit` (one that does not fit is dropped and counted) for the
dispatcher task, woken once per batch, which starts at most `max_in_flight` probes
at a time; each waits at most the picker's `probe_timeout` (its max_probe_age: a
later answer would be too old to use). The per-cluster rate bound is the picker's
(max_probes_per_second). An endpoint that answers UNIMPLEMENTED is not probed
again: `probe()` then returns False at once and the picker uses its own view of
it. Counts per cluster are in `counts(cluster)`.

Lifecycle: `start()` in the running loop starts the dispatcher; `await stop()`
cancels it and the probes in flight, and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from meshgrpc import orca_wire
from meshgrpc.proxy.orca.oob import request_for
from meshgrpc.proxy.orca.report import parse
from meshgrpc.proxy.orca.streams import UNIMPLEMENTED, RpcFailed, StreamOpener
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

# The interval asked for is moot (the stream is cancelled after its first report);
# one second keeps a server that ignores the cancel from sending much.
PROBE_REQUEST = request_for(1.0)


class ProbeCounts:
    __slots__ = ("sent", "answered", "failed", "timed_out", "dropped", "unimplemented")

    def __init__(self) -> None:
        self.sent = self.answered = self.failed = self.timed_out = self.dropped = self.unimplemented = 0

    def describe(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class Prober:
    def __init__(self, streams: StreamOpener, *, max_in_flight: int = 32, queue_limit: int = 1024) -> None:
        self._streams = streams
        self._queue: deque = deque()
        self._queue_limit = queue_limit
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task] = set()
        self._wake: asyncio.Event | None = None  # made in the running loop, by start()
        self._dispatcher = OwnedTask("prober", self._dispatch)
        self._unimplemented: set[str] = set()  # addresses
        self._counts: dict[str, ProbeCounts] = {}

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._dispatcher.start()

    async def stop(self) -> None:
        await self._dispatcher.stop()
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    # -- the picker's side (prequal.ProbeSink) ------------------------------------------

    def probe(self, endpoint, reply_to, index: int) -> bool:
        if endpoint.address in self._unimplemented:
            return False
        if len(self._queue) >= self._queue_limit:
            self._count(endpoint.cluster).dropped += 1
            return True
        self._queue.append((endpoint, reply_to, index))
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()
        return True

    def counts(self, cluster: str) -> dict:
        return self._count(cluster).describe()

    def _count(self, cluster: str) -> ProbeCounts:
        counts = self._counts.get(cluster)
        if counts is None:
            counts = self._counts[cluster] = ProbeCounts()
        return counts

    # -- the workers --------------------------------------------------------------------

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and len(self._in_flight) < self._max_in_flight:
                task = loop.create_task(self._probe(*self._queue.popleft()))
                self._in_flight.add(task)
                task.add_done_callback(self._probe_done)

    def _probe_done(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        if self._queue and self._wake is not None:
            self._wake.set()  # room for the next one
        if not task.cancelled() and task.exception() is not None:
            log.error("a load probe failed", exc_info=task.exception())

    async def _probe(self, endpoint, reply_to, index: int) -> None:
        counts = self._count(endpoint.cluster)
        counts.sent += 1
        stream = self._streams.open(endpoint.address, orca_wire.STREAM_METHOD, PROBE_REQUEST)
        try:
            async with asyncio.timeout(reply_to.probe_timeout):
                message = await stream.read()
        except TimeoutError:
            counts.timed_out += 1
            return
        except RpcFailed as e:
            if e.code != UNIMPLEMENTED:
                counts.failed += 1
                return
            log.info("cluster %s: %s does not answer load probes; PREQUAL uses the proxy's own view of it",
                     endpoint.cluster, endpoint.address)
            counts.unimplemented += 1
            self._unimplemented.add(endpoint.address)
            reply_to.on_probe(index, None)
            return
        finally:
            stream.cancel()
        report = parse(message) if message is not None else None
        if report is None:
            counts.failed += 1
            return
        counts.answered += 1
        endpoint.on_load_report(report)
        reply_to.on_probe(index, report)

    def __repr__(self) -> str:
        return (f"<Prober queued={len(self._queue)} in_flight={len(self._in_flight)} "
                f"unimplemented={len(self._unimplemented)}>")
