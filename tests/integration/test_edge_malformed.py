"""Malformed requests through a real proxy (issue "A hardened edge", "Done when" 3):
for every rule of RFC 9113 §8.1.1 and §8.2 (the table of the codec's own test),
the proxy answers RST_STREAM PROTOCOL_ERROR on that stream only, and the same
connection then carries a valid call to the backend."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from meshgrpc.codec import frames as F
from meshtest.interop import messages_pb2
from tests.support.attacks import REQUEST, Attacker
from tests.support.mesh import Mesh, mesh_config, route
from tests.unit.test_codec_malformed import MALFORMED_REQUESTS

PROTOCOL_ERROR = 0x1
GRPC_BODY = messages_pb2.SimpleRequest(response_size=3).SerializeToString()
GRPC_MESSAGE = b"\x00" + struct.pack(">L", len(GRPC_BODY)) + GRPC_BODY


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    with Mesh(tmp_path_factory.mktemp("malformed")) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        yield mesh.start_proxy()


def frames_until(sock: socket.socket, wanted, timeout: float = 5.0) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of what the proxy sends, until `wanted(frames)` holds."""
    data, frames, deadline = b"", [], time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline and not wanted(frames):
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            continue
        assert chunk, f"the proxy closed the connection; frames so far: {frames}"
        data += chunk
        while len(data) >= 9:
            length, ftype, flags, sid = F.parse_header(data, 0)
            if len(data) < 9 + length:
                break
            frames.append((ftype, flags, sid, data[9:9 + length]))
            data = data[9 + length:]
    assert wanted(frames), f"did not see what was wanted within {timeout}s: {frames}"
    return frames


def rst_code(frames, sid: int) -> int | None:
    return next((struct.unpack(">L", p)[0] for t, _, s, p in frames if t == F.RST_STREAM and s == sid), None)


def ended(frames, sid: int) -> bool:
    return any(s == sid and f & F.FLAG_END_STREAM for t, f, s, _ in frames if t in (F.HEADERS, F.DATA))


@pytest.mark.parametrize("rule,headers,reason", MALFORMED_REQUESTS, ids=[r[0] for r in MALFORMED_REQUESTS])
def test_malformed_request_is_reset_and_the_connection_carries_a_call_after_it(proxy, rule, headers, reason):
    peer = Attacker(proxy.address)
    try:
        bad = peer.next_sid
        peer.send(peer.headers(end_stream=True, headers=headers))
        frames = frames_until(peer.sock, lambda fs: rst_code(fs, bad) is not None)
        assert rst_code(frames, bad) == PROTOCOL_ERROR
        good = peer.next_sid
        peer.send(peer.headers(headers=REQUEST) + F.data_header(good, len(GRPC_MESSAGE), True) + GRPC_MESSAGE)
        frames += frames_until(peer.sock, lambda fs: ended(fs, good))
        assert not any(t == F.GOAWAY for t, *_ in frames)
    finally:
        peer.close()
