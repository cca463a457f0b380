"""A real `meshgrpc proxy` shutting down and scaling out: SIGTERM drains (calls in
flight finish, /ready turns 503, new connections are refused, exit 0 within
--drain-timeout), and --workers 2 (or auto: one per core) serves one port from
several processes."""

from __future__ import annotations

import os
import signal
import socket
import time

import grpc

from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.support.mesh import Mesh, interop_unary, mesh_config, route, status_rows
from tests.support.procs import poll_until


def slow_stream(channel, count: int, interval_s: float):
    """A server-streaming call: `count` responses, each after `interval_s`."""
    request = messages_pb2.StreamingOutputCallRequest(response_parameters=[
        messages_pb2.ResponseParameters(size=100, interval_us=int(interval_s * 1e6)) for _ in range(count)])
    return test_pb2_grpc.TestServiceStub(channel).StreamingOutputCall(request, timeout=20)


def new_connection_is_turned_away(address: str) -> str:
    """Opens a fresh connection to `address`: 'refused', or 'goaway'/'closed' if the proxy
    accepted it but sent GOAWAY or closed it instead of serving. Raises if it serves."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import ConnectionTerminated, ResponseReceived
    host, port = address.rsplit(":", 1)
    try:
        sock = socket.create_connection((host, int(port)), timeout=5)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                              (b":authority", address.encode())], end_stream=True)
        sock.sendall(conn.data_to_send())
        while chunk := sock.recv(65536):
            for event in conn.receive_data(chunk):
                if isinstance(event, ConnectionTerminated):
                    return "goaway"
                if isinstance(event, ResponseReceived):
                    raise AssertionError(f"a draining proxy served a new connection: {event.headers}")
        return "closed"


def test_sigterm_drains_calls_in_flight_then_exits_zero(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("drain-proxy", "--drain-timeout", "5")
        with proxy.channel() as channel:
            stream = slow_stream(channel, count=8, interval_s=0.15)
            first = next(stream)  # the call is in flight through the proxy
            assert len(first.payload.body) == 100
            t0 = time.monotonic()
            proxy.proc.signal(signal.SIGTERM)
            poll_until(lambda: proxy.get("/ready") == (503, "draining\n"), 5, "/ready turns 503 while draining")
            turned_away = new_connection_is_turned_away(proxy.address)
            assert turned_away in ("refused", "goaway", "closed")
            rest = list(stream)  # the call in flight finishes, every message intact
            assert len(rest) == 7 and stream.code() == grpc.StatusCode.OK
        code = proxy.proc.popen.wait(5 + 2)
        took = time.monotonic() - t0
        assert code == 0 and took < 5, (code, took, proxy.proc.output())
        assert "stopped (drained)" in proxy.proc.output()


def test_drain_timeout_bounds_shutdown_when_a_call_outlasts_it(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("timeout-proxy", "--drain-timeout", "0.5")
        with proxy.channel() as channel:
            stream = slow_stream(channel, count=40, interval_s=0.25)  # ~10 s
            next(stream)
            t0 = time.monotonic()
            proxy.proc.signal(signal.SIGTERM)
            code = proxy.proc.popen.wait(5)
            took = time.monotonic() - t0
            try:
                list(stream)
                raise AssertionError("a call cut off by the drain timeout ended OK")
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), e
        assert code == 0 and 0.4 < took < 3, (code, took)
        assert "stopped (drain timed out)" in proxy.proc.output()


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_two_workers_share_the_port_and_both_stop_on_sigterm(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("multi", "--workers", "2")  # returns once worker 0 is ready
        workers = children(proxy.pid)
        assert len(workers) == 2, workers

        # At once, 200 calls on 20 connections (one per channel), which the kernel spreads
        # between the workers: none may fail (a worker joins the port only once configured).
        for _ in range(20):
            with proxy.channel() as channel:
                assert all(interop_unary(channel) == "a" for _ in range(10))
        # Only worker 0 serves admin: it saw some of the 200 calls, and worker 1 the rest.
        served_by_0 = proxy.metric("meshgrpc_proxy_calls_total", grpc_status="0")
        assert 0 < served_by_0 < 200, served_by_0
        assert proxy.proc.output().count("proxy listening on 127.0.0.1:") == 2

        mesh.wait_synced("multi")
        status = mesh.wait_synced("multi/1")
        assert set(status_rows(status)) == {"multi", "multi/1"}

        proxy.proc.signal(signal.SIGTERM)
        assert proxy.proc.popen.wait(10) == 0
        for pid in workers:
            assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived the proxy"


def test_workers_auto_starts_one_worker_per_core(tmp_path):
    cores = len(os.sched_getaffinity(0))
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("auto", "--workers", "auto")
        # One core: a single process serves, as with --workers 1; otherwise one child per core.
        assert len(children(proxy.pid)) == (cores if cores > 1 else 0), (cores, children(proxy.pid))
        poll_until(lambda: proxy.proc.output().count("proxy listening on 127.0.0.1:") == cores, 30,
                   f"{cores} workers never all joined the port")
        with proxy.channel() as channel:
            assert interop_unary(channel) == "a"
