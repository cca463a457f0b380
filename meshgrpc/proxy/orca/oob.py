"""Out-of-band load reports (gRFC A51): a `StreamCoreMetrics` stream to every
endpoint of every cluster with `out_of_band_load_reports`, each report handed to
`on_report(cluster, address, report)` (in the proxy, the current ClusterSet's
`record_load`).

`OobSubscriber` owns one task per (cluster, address). `sync(cluster_set)` after
every config swap starts streams for new endpoints, restarts those whose interval
changed and stops those gone; `await stop()` cancels every task and waits. A
stream that fails or ends is opened again after a back-off (meshgrpc/backoff.py,
0.1 s doubling to 5 s, reset by a report); an endpoint that answers UNIMPLEMENTED
does not serve ORCA and is not asked again while it stays in the cluster (it is
asked again if it leaves and comes back). Reports that do not parse are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Callable

from google.protobuf.duration_pb2 import Duration
from xds.service.orca.v3.orca_pb2 import OrcaLoadReportRequest

from meshgrpc import orca_wire
from meshgrpc.backoff import Backoff
from meshgrpc.proxy.orca.report import LoadReport, parse
from meshgrpc.proxy.orca.streams import UNIMPLEMENTED, RpcFailed, StreamOpener
from meshgrpc.tasks import KeyedTasks

if TYPE_CHECKING:
    from meshgrpc.proxy.cluster import ClusterSet

log = logging.getLogger(__name__)

OnReport = Callable[[str, str, LoadReport], None]
STOP_TIMEOUT = 5.0


def request_for(interval: float) -> bytes:
    whole = int(interval)
    duration = Duration(seconds=whole, nanos=round((interval - whole) * 1e9))
    return OrcaLoadReportRequest(report_interval=duration).SerializeToString()


class OobSubscriber:
    """Owns the out-of-band load-report streams of one proxy. Event loop only."""

    def __init__(self, streams: StreamOpener, on_report: OnReport, *, rng: random.Random | None = None) -> None:
        self._streams = streams
        self._on_report = on_report
        self._rng = rng or random.Random()
        self._tasks = KeyedTasks("orca-oob", STOP_TIMEOUT)
        self._unimplemented: set[tuple[str, str]] = set()
        self.reports = 0

    def sync(self, clusters: ClusterSet) -> None:
        """Makes the running streams match `clusters` (call after each swap)."""
        wanted: dict[tuple[str, str], float] = {}
        for state in clusters:
            oob = state.spec.out_of_band_load_reports
            if oob is not None:
                for e in state.endpoints:
                    wanted[(state.name, e.address)] = oob.interval
        self._unimplemented &= set(wanted)
        self._tasks.sync({k: v for k, v in wanted.items() if k not in self._unimplemented}, self._run)

    def subscribed(self) -> set[tuple[str, str]]:
        """(cluster, address) of every stream kept open (or being reopened)."""
        return self._tasks.keys()

    def unimplemented(self) -> set[tuple[str, str]]:
        """(cluster, address) of the endpoints that answered UNIMPLEMENTED."""
        return set(self._unimplemented)

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _run(self, key: tuple[str, str], interval: float) -> None:
        cluster, address = key
        backoff = Backoff(self._rng, base=0.1, cap=5.0)
        request = request_for(interval)
        while True:
            try:
                await self._follow(cluster, address, request, backoff)
            except RpcFailed as e:
                if e.code == UNIMPLEMENTED:
                    log.info("cluster %s: %s does not serve ORCA load reports; not asking again", cluster, address)
                    self._unimplemented.add(key)
                    self._tasks.forget(key)
                    return
                log.debug("load-report stream to %s failed: %s", address, e)
            await asyncio.sleep(backoff.failed())

    async def _follow(self, cluster: str, address: str, request: bytes, backoff: Backoff) -> None:
        """Reads one stream until it ends (returns) or fails (raises RpcFailed)."""
        stream = self._streams.open(address, orca_wire.STREAM_METHOD, request)
        try:
            while (message := await stream.read()) is not None:
                report = parse(message)
                if report is not None:
                    backoff.succeeded()
                    self.reports += 1
                    self._on_report(cluster, address, report)
        finally:
            stream.cancel()

    def __repr__(self) -> str:
        return (f"<OobSubscriber streams={len(self._tasks)} unimplemented={len(self._unimplemented)} "
                f"reports={self.reports}>")

