"""Server pushback through a real `meshgrpc proxy` (issue 14, "Done when" 3): an
endpoint that answers with `grpc-retry-pushback-ms: 500` receives no calls for
500 ms ± 100, and then calls again.

Backend `a` fails every call with UNAVAILABLE and that pushback; `b` answers. A
client calls every 10 ms, one at a time, for 3 s; the calls that reached `a` are
the ones that failed with its message, and the gaps between them are the
pushback (plus the time until a power-of-two draw takes `a` again: at 10 ms a
call, a few tens of milliseconds at most)."""

from __future__ import annotations

import time

import grpc

from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.integration.test_balancing import one_cluster
from tests.support.mesh import CHANNEL_OPTIONS, Mesh

PUSHBACK_S = 0.5
RUN_S = 3.0


def calls_reaching(address: str, backend: str) -> tuple[list[float], int]:
    """Start times of the calls `backend` failed, and how many calls the others answered."""
    reached, answered = [], 0
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = test_pb2_grpc.TestServiceStub(channel)
        end = time.monotonic() + RUN_S
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                stub.UnaryCall(messages_pb2.SimpleRequest(response_size=1), timeout=5)
                answered += 1
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE and f"backend {backend}" in e.details(), e
                reached.append(started)
            time.sleep(max(0.0, started + 0.01 - time.monotonic()))  # the client's pace
    return reached, answered


def test_an_endpoint_that_pushes_back_500ms_gets_no_calls_for_500ms(tmp_path):
    with Mesh(tmp_path) as mesh:
        a = mesh.start_backend("a", "interop", "--fail-code", "14", "--pushback-ms", "500")
        b = mesh.start_backend("b")
        # No failure penalty: what keeps `a` out is the pushback alone.
        mesh.start_control_plane(one_cluster({a: 1, b: 1}, "LEAST_REQUEST", failure_penalty={"penalty": "0s"}))
        proxy = mesh.start_proxy("pushback-proxy")
        reached, answered = calls_reaching(proxy.address, "a")
    gaps = [later - earlier for earlier, later in zip(reached, reached[1:])]
    assert len(gaps) >= 3 and answered > 100, (reached, answered)
    assert all(PUSHBACK_S - 0.1 <= gap <= PUSHBACK_S + 0.1 for gap in gaps), [round(g, 3) for g in gaps]
