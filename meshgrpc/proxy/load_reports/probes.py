"""PREQUAL's probes (balancer/prequal.py) sent and answered: the I/O half of the
policy, owned by the proxy.

A probe is the first report of an `OpenRcaService/StreamCoreMetrics` stream (a
server sends its first report at once; gRPC's own ORCA services do too), read and
then cancelled: any ORCA backend answers it, meshgrpc.orca's reports carry the
`rif` and `latency_ms` metrics PREQUAL selects on. The answer is recorded on the
endpoint (EndpointState.on_load_report) and handed to the picker that asked
(`reply_to.on_probe(index, report)`).

Bounds: `probe()` never awaits; it puts the probe on a queue of `queue_limit`
(a probe that does not fit is dropped and counted) for `workers` worker tasks, so
at most that many probes are in flight; each waits at most the picker's
`probe_timeout` (its max_probe_age: a later answer would be too old to use). The
per-cluster rate bound is the picker's (max_probes_per_second). An endpoint that
answers UNIMPLEMENTED is not probed again: `probe()` then returns False at once and
the picker uses its own view of it. Counts per cluster are in `counts(cluster)`.

Lifecycle: `start()` in the running loop starts the workers; `await stop()`
cancels them (and the probes they run) and waits.
"""

from __future__ import annotations

import asyncio
import logging

from meshgrpc import orca_wire
from meshgrpc.proxy.load_reports.oob import request_for
from meshgrpc.proxy.load_reports.report import parse
from meshgrpc.proxy.load_reports.streams import UNIMPLEMENTED, RpcFailed, StreamOpener
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
    def __init__(self, streams: StreamOpener, *, workers: int = 32, queue_limit: int = 1024) -> None:
        self._streams = streams
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=queue_limit)
        self._workers = [OwnedTask(f"prober-{i}", self._work) for i in range(workers)]
        self._unimplemented: set[str] = set()  # addresses
        self._counts: dict[str, ProbeCounts] = {}

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    async def stop(self) -> None:
        for worker in self._workers:
            await worker.stop()

    # -- the picker's side (prequal.ProbeSink) ------------------------------------------

    def probe(self, endpoint, reply_to, index: int) -> bool:
        if endpoint.address in self._unimplemented:
            return False
        try:
            self._queue.put_nowait((endpoint, reply_to, index))
        except asyncio.QueueFull:
            self._count(endpoint.cluster).dropped += 1
        return True

    def counts(self, cluster: str) -> dict:
        return self._count(cluster).describe()

    def _count(self, cluster: str) -> ProbeCounts:
        counts = self._counts.get(cluster)
        if counts is None:
            counts = self._counts[cluster] = ProbeCounts()
        return counts

    # -- the workers --------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            endpoint, reply_to, index = await self._queue.get()
            await self._probe(endpoint, reply_to, index)

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
        return (f"<Prober queued={self._queue.qsize()} workers={len(self._workers)} "
                f"unimplemented={len(self._unimplemented)}>")
