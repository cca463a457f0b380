"""The proxy's access log and trace headers, through real processes: a line per
call with the call's status, a log whose FIFO nobody reads never holds a call
(its drops counted in /metrics), and x-request-id / traceparent carried to the
backend with this hop's span id, or generated when the client sent none."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter

import grpc

from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.support.mesh import Mesh, mesh_config, route
from tests.support.procs import poll_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@contextlib.contextmanager
def _proxy(tmp_path, *proxy_flags: str):
    """A proxy started with `proxy_flags` in front of one interop backend (cluster svc, route "logged")."""
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc", name="logged")]))
        yield mesh.start_proxy("proxy-1", *proxy_flags)


def _calls(stub, count: int, failing_every: int = 0) -> Counter:
    """`count` UnaryCalls, 64 in flight; every `failing_every`-th asks the backend for NOT_FOUND."""
    statuses: Counter = Counter()
    for start in range(0, count, 64):
        futures = []
        for i in range(start, min(count, start + 64)):
            request = messages_pb2.SimpleRequest(response_size=10)
            if failing_every and i % failing_every == 0:
                request.response_status.code = grpc.StatusCode.NOT_FOUND.value[0]
                request.response_status.message = "asked to fail"
            futures.append(stub.UnaryCall.future(request, timeout=10))
        for f in futures:
            try:
                f.result()
                statuses[0] += 1
            except grpc.RpcError as e:
                statuses[e.code().value[0]] += 1
    return statuses


def _lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_every_call_is_one_line_with_its_status(tmp_path):
    log_path = str(tmp_path / "access.log")
    with _proxy(tmp_path, "--access-log", log_path) as proxy, proxy.channel() as channel:
        statuses = _calls(test_pb2_grpc.TestServiceStub(channel), 1000, failing_every=10)
        assert statuses == {0: 900, 5: 100}
        poll_until(lambda: os.path.exists(log_path) and len(_lines(log_path)) >= 1000, 10, "1,000 lines")
        lines = _lines(log_path)
        assert len(lines) == 1000
        assert Counter(line["grpc_status"] for line in lines) == statuses
        line = lines[-1]
        assert (line["route"], line["cluster"], line["path"]) == ("logged", "svc", "/grpc.testing.TestService/UnaryCall")
        assert line["http_status"] == 200 and line["attempts"] == 1 and line["bytes_in"] > 0 < line["bytes_out"]
        assert UUID4.match(line["request_id"]) and len(line["trace_id"]) == 32
        assert proxy.metric("meshgrpc_proxy_access_log_lines_total") == 1000


def test_a_log_nobody_reads_drops_lines_and_never_holds_a_call(tmp_path):
    fifo = str(tmp_path / "access.fifo")
    os.mkfifo(fifo)
    # Open for reading and never read: the writer's pipe fills, then it can write no more.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with _proxy(tmp_path, "--access-log", fifo) as proxy, proxy.channel() as channel:
            statuses = _calls(test_pb2_grpc.TestServiceStub(channel), 10_000)
            assert statuses == {0: 10_000}
            poll_until(lambda: proxy.metric("meshgrpc_proxy_access_log_dropped_total") > 0, 10, "drops counted")
            assert proxy.metric("meshgrpc_proxy_access_log_lines_total") < 10_000
    finally:
        os.close(reader)


def _seen(call) -> dict[str, str]:
    """The trace headers the backend received (it answers them as x-seen-NAME)."""
    return {k[len("x-seen-"):]: v for k, v in call.initial_metadata() if k.startswith("x-seen-")}


def test_trace_headers_reach_the_backend_with_this_hops_span(tmp_path):
    log_path = str(tmp_path / "access.log")
    with _proxy(tmp_path, "--access-log", log_path) as proxy:
        with proxy.channel() as channel:
            unary = test_pb2_grpc.TestServiceStub(channel).UnaryCall
            request = messages_pb2.SimpleRequest(response_size=1)
            metadata = (("traceparent", f"00-{TRACE_ID}-{CLIENT_SPAN}-01"), ("tracestate", "congo=t61rcWkgMzE"),
                        ("x-request-id", "client-chosen-id"))
            _, with_ids = unary.with_call(request, metadata=metadata, timeout=5)
            _, without = unary.with_call(request, timeout=5)
        seen = _seen(with_ids)
        trace_id, span, flags = TRACEPARENT.match(seen["traceparent"]).groups()
        assert (trace_id, flags) == (TRACE_ID, "01") and span != CLIENT_SPAN
        assert seen["tracestate"] == "congo=t61rcWkgMzE" and seen["x-request-id"] == "client-chosen-id"
        generated = _seen(without)
        new_trace, new_span, new_flags = TRACEPARENT.match(generated["traceparent"]).groups()
        assert new_trace != TRACE_ID and new_flags == "00" and "tracestate" not in generated
        assert UUID4.match(generated["x-request-id"])
        poll_until(lambda: os.path.exists(log_path) and len(_lines(log_path)) >= 2, 10, "2 lines")
        first, second = _lines(log_path)
        assert (first["request_id"], first["trace_id"], first["span_id"]) == ("client-chosen-id", TRACE_ID, span)
        assert (second["request_id"], second["trace_id"], second["span_id"]) == (
            generated["x-request-id"], new_trace, new_span)


def test_trace_headers_off_passes_the_request_headers_as_they_came(tmp_path):
    with _proxy(tmp_path, "--trace-headers", "off") as proxy, proxy.channel() as channel:
        unary = test_pb2_grpc.TestServiceStub(channel).UnaryCall
        _, call = unary.with_call(messages_pb2.SimpleRequest(response_size=1),
                                  metadata=(("x-request-id", "mine"),), timeout=5)
        assert _seen(call) == {"x-request-id": "mine"}
