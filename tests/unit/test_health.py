"""Active health checks against a real in-process grpc.health.v1 server: an
endpoint that reports NOT_SERVING leaves rotation and returns once SERVING; a dead
address is unhealthy; sync starts and stops checks; stop closes everything."""

from __future__ import annotations

import asyncio
import random

from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from meshgrpc.config import specs
from meshgrpc.proxy.cluster import ClusterSet
from tests.support.specs import cluster_set_of
from meshgrpc.proxy.health import CheckSettings, HealthChecker, Verdict
from tests.support.interop_server import start_in_process

WAIT = 5.0  # bound on every wait below; checks run every 50 ms


def cluster_set(addresses: list[str], previous=None, **hc) -> ClusterSet:
    c = json_format.ParseDict({"name": "api", "lb_policy": "ROUND_ROBIN", "health_check": {
        "interval": "0.05s", "timeout": "0.5s", "unhealthy_threshold": 2, "healthy_threshold": 1, **hc}},
        resources_pb2.Cluster())
    s = resources_pb2.EndpointSet(cluster="api", endpoints=[resources_pb2.Endpoint(address=a) for a in addresses])
    return cluster_set_of({"api": c}, {"api": s}, previous, rng=random.Random(0))


class Recorder:
    """The on_change callback: applies to the cluster set and queues each event."""

    def __init__(self) -> None:
        self.clusters: ClusterSet | None = None
        self.events: asyncio.Queue = asyncio.Queue()

    def __call__(self, cluster: str, address: str, healthy: bool) -> None:
        self.clusters.set_health(cluster, address, healthy)
        self.events.put_nowait((address, healthy))

    async def next(self) -> tuple[str, bool]:
        return await asyncio.wait_for(self.events.get(), WAIT)


def test_not_serving_endpoint_leaves_rotation_and_returns():
    async def scenario():
        backend = await start_in_process()
        other = await start_in_process()
        recorder = Recorder()
        checker = HealthChecker(recorder, rng=random.Random(1))
        try:
            recorder.clusters = cluster_set([backend.address, other.address])
            checker.sync(recorder.clusters)
            await backend.set_serving(False)
            assert await recorder.next() == (backend.address, False)
            assert {recorder.clusters.get("api").pick().address for _ in range(10)} == {other.address}
            await backend.set_serving(True)
            assert await recorder.next() == (backend.address, True)
            assert len({recorder.clusters.get("api").pick().address for _ in range(10)}) == 2
        finally:
            await checker.stop()
            await backend.stop(None)
            await other.stop(None)
        assert recorder.events.empty()
    asyncio.run(scenario())


def test_service_name_is_checked():
    async def scenario():
        backend = await start_in_process()
        await backend.set_serving(True, "greeter")
        recorder = Recorder()
        checker = HealthChecker(recorder)
        try:
            recorder.clusters = cluster_set([backend.address], service_name="greeter")
            checker.sync(recorder.clusters)
            await backend.set_serving(False, "greeter")
            assert await recorder.next() == (backend.address, False)
        finally:
            await checker.stop()
            await backend.stop(None)
    asyncio.run(scenario())


def test_unreachable_endpoint_becomes_unhealthy():
    async def scenario():
        # A port we bound and still hold but never serve HTTP/2 on: connections hang or fail.
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        address = "127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        recorder = Recorder()
        checker = HealthChecker(recorder)
        try:
            recorder.clusters = cluster_set([address], timeout="0.2s")
            checker.sync(recorder.clusters)
            assert await recorder.next() == (address, False)
        finally:
            await checker.stop()
            server.close()
            await server.wait_closed()
    asyncio.run(scenario())


def test_sync_starts_and_stops_checks_with_config():
    async def scenario():
        checker = HealthChecker(lambda *a: None)
        first = cluster_set(["127.0.0.1:1", "127.0.0.1:2"])
        checker.sync(first)
        assert checker.checking() == {("api", "127.0.0.1:1"), ("api", "127.0.0.1:2")}
        second = cluster_set(["127.0.0.1:2", "127.0.0.1:3"], previous=first)
        checker.sync(second)
        assert checker.checking() == {("api", "127.0.0.1:2"), ("api", "127.0.0.1:3")}
        plain = ClusterSet.build({"api": specs.ClusterSpec(name="api")}, {"api": second.get("api").endpoint_specs})
        checker.sync(plain)  # health_check removed
        assert checker.checking() == set()
        await checker.stop()
        assert "checking=0 stopping=0" in repr(checker)
    asyncio.run(scenario())


def test_verdict_thresholds():
    v = Verdict(True, CheckSettings(unhealthy_threshold=3, healthy_threshold=2))
    assert [v.record(False), v.record(False), v.record(True), v.record(False)] == [False] * 4
    assert [v.record(False), v.record(False)] == [False, True] and not v.healthy
    assert [v.record(True), v.record(False), v.record(True), v.record(True)] == [False, False, False, True]


def test_settings_defaults():
    s = specs.cluster_spec(resources_pb2.Cluster(name="c", health_check=resources_pb2.HealthCheck())).health_check
    assert (s.interval, s.timeout, s.unhealthy_threshold, s.healthy_threshold, s.service_name,
            s.jitter_fraction) == (5.0, 1.0, 2, 1, "", 0.1)
