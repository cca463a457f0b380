"""The out-of-band subscriber and PREQUAL's prober against a fake stream (the
StreamOpener seam): reports reach the endpoints, a backend answering
UNIMPLEMENTED is not asked again, failed streams are reopened, config changes
start and stop streams, and probes are answered, abandoned or refused."""

from __future__ import annotations

import asyncio
import random

from google.protobuf.duration_pb2 import Duration
from xds.data.orca.v3.orca_load_report_pb2 import OrcaLoadReport
from xds.service.orca.v3.orca_pb2 import OrcaLoadReportRequest

from meshgrpc import orca_wire
from meshgrpc.config import specs
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.orca.oob import OobSubscriber
from meshgrpc.proxy.orca.probes import Prober
from meshgrpc.proxy.orca.streams import UNAVAILABLE, UNIMPLEMENTED, RpcFailed
from tests.support.procs import poll_until

END = object()


class FakeStream:
    def __init__(self, script: asyncio.Queue) -> None:
        self._script = script
        self.cancelled = False

    async def read(self) -> bytes | None:
        item = await self._script.get()
        if isinstance(item, RpcFailed):
            raise item
        return None if item is END else item

    def cancel(self) -> None:
        self.cancelled = True


class FakeStreams:
    """Each address has a script: what each stream opened to it reads, in order."""

    def __init__(self) -> None:
        self.scripts: dict[str, asyncio.Queue] = {}
        self.opened: list[tuple[str, str, bytes]] = []
        self.streams: list[FakeStream] = []

    def script(self, address: str) -> asyncio.Queue:
        return self.scripts.setdefault(address, asyncio.Queue())

    def open(self, address: str, method: str, request: bytes) -> FakeStream:
        self.opened.append((address, method, request))
        stream = FakeStream(self.script(address))
        self.streams.append(stream)
        return stream

    def sync(self, addresses) -> None:
        pass

    async def close(self) -> None:
        pass


def report(rif: float, qps: float = 10.0) -> bytes:
    return OrcaLoadReport(rps_fractional=qps, application_utilization=0.5,
                          named_metrics={orca_wire.RIF: rif}).SerializeToString()


def cluster_set(addresses, oob: dict | None = None, interval: float = 1.0) -> ClusterSet:
    oob_spec = specs.OutOfBandLoadReportsSpec(interval) if oob is not False else None
    spec = specs.ClusterSpec(name="api", out_of_band_load_reports=oob_spec)
    eps = tuple(specs.EndpointSpec(a, a.split(":")[0], int(a.split(":")[1])) for a in addresses)
    return ClusterSet.build({"api": spec}, {"api": eps})


async def wait_for(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------- out of band

def test_reports_reach_the_endpoint_and_the_interval_is_asked_for():
    async def scenario():
        streams = FakeStreams()
        clusters = cluster_set(["10.0.0.1:80"], interval=0.25)
        oob = OobSubscriber(streams, lambda c, a, r: clusters.record_load(c, a, r), rng=random.Random(0))
        oob.sync(clusters)
        streams.script("10.0.0.1:80").put_nowait(report(rif=3))
        ep = clusters.get("api").endpoint("10.0.0.1:80")
        await wait_for(lambda: ep.stats.load.report is not None, "a report")
        assert ep.stats.load.report.rif == 3.0
        address, method, request = streams.opened[0]
        assert method == orca_wire.STREAM_METHOD
        assert OrcaLoadReportRequest.FromString(request).report_interval == Duration(nanos=250_000_000)
        await oob.stop()
        assert streams.streams[0].cancelled
    asyncio.run(scenario())


def test_a_backend_answering_unimplemented_is_not_asked_again():
    async def scenario():
        streams = FakeStreams()
        clusters = cluster_set(["10.0.0.1:80"])
        oob = OobSubscriber(streams, lambda c, a, r: None, rng=random.Random(0))
        oob.sync(clusters)
        streams.script("10.0.0.1:80").put_nowait(RpcFailed(UNIMPLEMENTED, "unknown service"))
        await wait_for(lambda: oob.unimplemented() == {("api", "10.0.0.1:80")}, "the refusal")
        oob.sync(clusters)  # the next config push: still not asked
        await asyncio.sleep(0.05)
        assert len(streams.opened) == 1 and oob.subscribed() == set()
        oob.sync(cluster_set([]))  # it leaves the cluster ...
        oob.sync(clusters)  # ... and comes back: asked again
        assert oob.subscribed() == {("api", "10.0.0.1:80")}
        await oob.stop()
    asyncio.run(scenario())


def test_a_stream_that_fails_or_ends_is_reopened_after_a_back_off():
    async def scenario():
        streams = FakeStreams()
        clusters = cluster_set(["10.0.0.1:80"])
        got = []
        oob = OobSubscriber(streams, lambda c, a, r: got.append(r.rif), rng=random.Random(0))
        oob.sync(clusters)
        script = streams.script("10.0.0.1:80")
        script.put_nowait(report(rif=1))
        script.put_nowait(RpcFailed(UNAVAILABLE, "connection refused"))
        script.put_nowait(report(rif=2))
        script.put_nowait(END)
        script.put_nowait(report(rif=3))
        await wait_for(lambda: got == [1.0, 2.0, 3.0], "three reports over three streams")
        assert len(streams.opened) == 3
        await oob.stop()
    asyncio.run(scenario())


def test_sync_follows_config_streams_start_stop_and_restart_on_a_new_interval():
    async def scenario():
        streams = FakeStreams()
        oob = OobSubscriber(streams, lambda c, a, r: None, rng=random.Random(0))
        oob.sync(cluster_set(["10.0.0.1:80", "10.0.0.2:80"]))
        assert oob.subscribed() == {("api", "10.0.0.1:80"), ("api", "10.0.0.2:80")}
        await wait_for(lambda: len(streams.opened) == 2, "both streams open")
        oob.sync(cluster_set(["10.0.0.2:80"], interval=2.0))
        await wait_for(lambda: len(streams.opened) == 3, "the restarted stream")
        assert oob.subscribed() == {("api", "10.0.0.2:80")}
        oob.sync(cluster_set(["10.0.0.2:80"], oob=False))  # the cluster no longer asks for reports
        assert oob.subscribed() == set()
        await oob.stop()
    asyncio.run(scenario())


# ---------------------------------------------------------------- probes

class ReplyTo:
    probe_timeout = 0.2

    def __init__(self) -> None:
        self.answers: list = []

    def on_probe(self, index: int, report) -> None:
        self.answers.append((index, report))


def endpoint_of(address: str):
    return cluster_set([address], oob=False).get("api").endpoint(address)


def test_a_probe_reads_the_first_report_records_it_and_answers_the_picker():
    async def scenario():
        streams = FakeStreams()
        prober = Prober(streams, max_in_flight=2)
        prober.start()
        ep, reply = endpoint_of("10.0.0.1:80"), ReplyTo()
        streams.script(ep.address).put_nowait(report(rif=4))
        assert prober.probe(ep, reply, 7)
        await wait_for(lambda: reply.answers, "the answer")
        assert reply.answers[0][0] == 7 and reply.answers[0][1].rif == 4.0
        assert ep.stats.load.report.rif == 4.0 and streams.streams[0].cancelled
        assert prober.counts("api")["answered"] == 1
        await prober.stop()
    asyncio.run(scenario())


def test_a_probe_not_answered_within_the_timeout_is_abandoned():
    async def scenario():
        streams = FakeStreams()
        prober = Prober(streams, max_in_flight=1)
        prober.start()
        ep, reply = endpoint_of("10.0.0.1:80"), ReplyTo()
        prober.probe(ep, reply, 0)  # the fake never answers
        await wait_for(lambda: prober.counts("api")["timed_out"] == 1, "the timeout")
        assert reply.answers == [] and streams.streams[0].cancelled
        await prober.stop()
    asyncio.run(scenario())


def test_an_endpoint_answering_unimplemented_is_not_probed_again():
    async def scenario():
        streams = FakeStreams()
        prober = Prober(streams, max_in_flight=1)
        prober.start()
        ep, reply = endpoint_of("10.0.0.1:80"), ReplyTo()
        streams.script(ep.address).put_nowait(RpcFailed(UNIMPLEMENTED, "unknown service"))
        assert prober.probe(ep, reply, 3)
        await wait_for(lambda: reply.answers == [(3, None)], "the own-view answer")
        assert not prober.probe(ep, reply, 3)  # the picker uses its own view at once
        assert len(streams.opened) == 1 and prober.counts("api")["unimplemented"] == 1
        await prober.stop()
    asyncio.run(scenario())


def test_probes_beyond_the_queue_are_dropped_and_counted():
    async def scenario():
        streams = FakeStreams()
        prober = Prober(streams, queue_limit=2)  # not started: nothing leaves the queue
        ep, reply = endpoint_of("10.0.0.1:80"), ReplyTo()
        for _ in range(5):
            prober.probe(ep, reply, 0)
        assert prober.counts("api")["dropped"] == 3
    asyncio.run(scenario())


def test_at_most_max_in_flight_probes_run_at_once():
    async def scenario():
        streams = FakeStreams()
        prober = Prober(streams, max_in_flight=2)
        prober.start()
        ep, reply = endpoint_of("10.0.0.1:80"), ReplyTo()
        for i in range(5):
            prober.probe(ep, reply, i)  # the fake never answers: each waits out its timeout
        await wait_for(lambda: len(streams.opened) == 2, "two probes started")
        await asyncio.sleep(0.05)
        assert len(streams.opened) == 2
        await wait_for(lambda: prober.counts("api")["timed_out"] == 5, "every probe timed out in turn")
        await prober.stop()
    asyncio.run(scenario())
