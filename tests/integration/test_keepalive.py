"""Keepalive on the discovery stream between a real proxy and a real control plane
(control_channel.py). The control plane permits the pings its clients send, so an
idle stream outlives several keepalive intervals with no GOAWAY and no reconnect.
The control, which shows the pings really are sent at that rate: a control plane
that requires pings further apart ends the stream with GOAWAY "too_many_pings".
And a control plane that goes silent without closing the connection (a host
gone, a network cut) is noticed by the unanswered ping, and the client moves on
to the next replica.
These tests ask for one load report a minute, so that stream stays quiet too."""

from __future__ import annotations

import asyncio
import random
import time

from meshapi.v1 import discovery_pb2
from meshgrpc.config.resources import TYPE_ORDER
from meshgrpc.control_channel import Keepalive
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.client import DiscoveryClient, control_plane_dialer
from tests.integration.test_discovery_stream import Plane, poll
from tests.integration.test_visibility import metric
from tests.support.mesh import Mesh, mesh_config, route
from tests.support.procs import poll_until
from tests.support.tcp_relay import TcpRelay
from tests.unit.xds_builders import snap

INTERVAL = 0.5  # the proxy's --discovery-keepalive, shortened from 20 s


def idle_proxy(mesh: Mesh, min_ping_interval: float, load_report_interval: float = 60.0):
    """A proxy on an idle discovery stream (no calls, a load report a minute)."""
    backend = mesh.start_backend("t")
    mesh.start_control_plane(mesh_config({"test": [backend]}, [route("/", "test")]),
                             extra=("--min-ping-interval", str(min_ping_interval),
                                    "--load-report-interval", str(load_report_interval)))
    return mesh.start_proxy("proxy-1", "--discovery-keepalive", str(INTERVAL))


def control_plane_link(proxy) -> dict:
    return proxy.json("/config_dump")["control_plane"]


def test_an_idle_discovery_stream_survives_many_keepalive_intervals(tmp_path):
    with Mesh(tmp_path) as mesh:
        proxy = idle_proxy(mesh, min_ping_interval=INTERVAL / 2)   # the default ratio: 10 s for 20 s
        held = time.monotonic() + 10 * INTERVAL   # the stream idles; pings are the only frames on it
        while time.monotonic() < held:
            assert control_plane_link(proxy) == {"target": mesh.cp_address, "connected": True, "connects": 1,
                                                 "last_error": ""}
            time.sleep(INTERVAL / 2)             # sampling the proxy's state while the stream idles
        output = proxy.proc.output()
        assert "too_many_pings" not in output and "GOAWAY" not in output, output
        assert "discovery stream" not in output, output             # no failure, no reconnect logged


def test_a_control_plane_that_forbids_the_pings_sends_too_many_pings(tmp_path):
    with Mesh(tmp_path) as mesh:
        proxy = idle_proxy(mesh, min_ping_interval=60.0)           # what grpc-core's 5-minute default does
        # max_ping_strikes is 2: the third ping too soon draws the GOAWAY, about 4 intervals in.
        poll_until(lambda: "too many pings" in control_plane_link(proxy)["last_error"].lower().replace("_", " "),
                   20 * INTERVAL,
                   f"the control plane's GOAWAY too_many_pings\n{proxy.proc.output()}")
        proxy.proc.wait_for_line(r"GOAWAY with error code ENHANCE_YOUR_CALM .*too_many_pings", 5)
        # As grpc-core does, the proxy doubles its interval for the connections that follow.
        proxy.proc.wait_for_line(rf"too_many_pings: pinging every {2 * INTERVAL:g}s from now on", 5)
        poll_until(lambda: control_plane_link(proxy)["connects"] >= 2, 10, "the proxy reconnected")
        http = mesh.control_plane.address("dashboard")
        assert metric(http, "meshgrpc_cp_http2_limit_events_total", limit="too_many_pings") >= 1


def test_a_control_plane_gone_silent_is_noticed_by_keepalive_and_the_next_replica_takes_over():
    async def main():
        cache = SnapshotCache()
        cache.set(snap("1", ["a"]))
        plane = await Plane(cache).start()
        relay = await TcpRelay.start(f"127.0.0.1:{plane.port}")   # the first replica, as the proxy reaches it
        keepalive = Keepalive(interval=0.2, timeout=0.5)
        client = DiscoveryClient(f"{relay.address},127.0.0.1:{plane.port}", discovery_pb2.Node(id="px"),
                                 {t: [] for t in TYPE_ORDER}, lambda *a: None, rng=random.Random(1),
                                 dialer=control_plane_dialer(keepalive))
        client.start()
        try:
            await poll(lambda: client.versions == {t: "1" for t in TYPE_ORDER}, "synced through the relay")
            idle = time.monotonic() + 4 * keepalive.interval    # pinged and answered: the stream stays
            while time.monotonic() < idle:
                assert client.connected and client.connects == 1 and client.target == relay.address
                await asyncio.sleep(keepalive.interval / 2)   # sampling the client while the stream idles
            relay.freeze()
            frozen = time.monotonic()
            await poll(lambda: not client.connected, "the silent control plane noticed",
                       keepalive.interval + keepalive.timeout + 3.0)
            assert "keepalive ping not acknowledged within 0.5s" in client.last_error
            assert time.monotonic() - frozen >= keepalive.timeout
            await poll(lambda: client.connected and client.target == f"127.0.0.1:{plane.port}", "moved on", 10)
            assert client.connects == 2
        finally:
            await client.stop()
            await relay.close()
            await plane.stop()
    asyncio.run(asyncio.wait_for(main(), 30))
