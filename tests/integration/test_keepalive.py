"""Keepalive on the discovery stream between a real proxy and a real control plane
(control_channel.py). The control plane permits the pings its clients send, so an
idle stream outlives several keepalive intervals with no GOAWAY and no reconnect.
The control, which shows the pings really are sent at that rate: a control plane
that requires pings further apart ends the stream with GOAWAY "too_many_pings".
Idle means no load reports either: they share the connection, and with them
flowing the pings are not needed (grpc-core sends a keepalive ping only after
`interval` without activity), so these tests ask for one report a minute."""

from __future__ import annotations

import time

from tests.support.mesh import Mesh, mesh_config, route
from tests.support.procs import poll_until

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
        poll_until(lambda: "too many pings" in control_plane_link(proxy)["last_error"].lower(), 20 * INTERVAL,
                   f"the control plane's GOAWAY too_many_pings\n{proxy.proc.output()}")
        proxy.proc.wait_for_line(r"GOAWAY with error code ENHANCE_YOUR_CALM .*too_many_pings", 5)
        poll_until(lambda: control_plane_link(proxy)["connects"] >= 2, 10, "the proxy reconnected")

