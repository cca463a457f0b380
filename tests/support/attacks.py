"""Hostile HTTP/2 peers for the hardened-edge tests: each attack is a function
that speaks raw frames to the proxy over a socket for a while, reconnecting when
the proxy hangs up, and reports what the proxy answered (GOAWAY codes seen,
connections closed on it). Frames come from meshgrpc's codec serializers and its
HPACK encoder, so nothing here depends on the proxy's own behaviour."""

from __future__ import annotations

import dataclasses
import socket
import struct
import time

from meshgrpc.codec import frames as F
from meshgrpc.codec.hpack import Encoder

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/grpc.testing.TestService/UnaryCall"),
           (b":authority", b"proxy"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]


@dataclasses.dataclass
class Outcome:
    connections: int = 0  # connections the attack opened
    closed_by_proxy: int = 0  # of those, closed (EOF or reset) by the proxy
    goaways: list[int] = dataclasses.field(default_factory=list)  # GOAWAY error codes received
    sent_frames: int = 0


class Attacker:
    """One raw HTTP/2 client connection."""

    def __init__(self, address: str, settings: dict[int, int] | None = None, preface: bool = True) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = Encoder()
        self.next_sid = 1
        if preface:
            self.send(F.PREFACE + F.settings(settings or {}))

    def send(self, data: bytes) -> bool:
        """False once the proxy has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def headers(self, end_stream: bool = False, headers=REQUEST, end_headers: bool = True) -> bytes:
        sid = self.next_sid
        self.next_sid += 2
        block = self.encoder.encode(headers)
        flags = (F.FLAG_END_STREAM if end_stream else 0) | (F.FLAG_END_HEADERS if end_headers else 0)
        return F.header(len(block), F.HEADERS, flags, sid) + block

    def read_goaways(self, timeout: float = 2.0) -> tuple[list[int], bool]:
        """(GOAWAY codes in what the proxy sent, whether it closed), reading until EOF or timeout."""
        self.sock.settimeout(0.2)
        data, closed, deadline = b"", False, time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
        return _goaway_codes(data), closed

    def close(self) -> None:
        self.sock.close()


def _goaway_codes(data: bytes) -> list[int]:
    codes, pos = [], 0
    while len(data) - pos >= 9:
        length, ftype, _, _ = F.parse_header(data, pos)
        if ftype == F.GOAWAY and len(data) >= pos + 9 + 8:
            codes.append(struct.unpack_from(">L", data, pos + 13)[0])
        pos += 9 + length
    return codes


def run(address: str, seconds: float, attack, **kwargs) -> Outcome:
    """Repeats `attack(attacker, deadline, outcome)` on fresh connections for `seconds`."""
    outcome = Outcome()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            attacker = Attacker(address, **kwargs)
        except OSError:
            time.sleep(0.05)  # refused (connection cap): pace the retries, not synchronisation
            continue
        outcome.connections += 1
        try:
            attack(attacker, deadline, outcome)
            codes, closed = attacker.read_goaways(timeout=1.0)
            outcome.goaways += codes
            outcome.closed_by_proxy += closed
        finally:
            attacker.close()
    return outcome


# ---------------------------------------------------------------- the attacks

def ping_flood(a: Attacker, deadline: float, out: Outcome) -> None:
    burst = F.ping(b"12345678", ack=False) * 200
    while time.monotonic() < deadline and a.send(burst):
        out.sent_frames += 200


def settings_flood(a: Attacker, deadline: float, out: Outcome) -> None:
    burst = F.settings({F.HEADER_TABLE_SIZE: 4096}) * 100
    while time.monotonic() < deadline and a.send(burst):
        out.sent_frames += 100


def empty_data_flood(a: Attacker, deadline: float, out: Outcome) -> None:
    sids = []
    for _ in range(2):
        sids.append(a.next_sid)
        a.send(a.headers())
    burst = b"".join(F.data_header(sid, 0, False) for sid in sids) * 500
    while time.monotonic() < deadline and a.send(burst):
        out.sent_frames += 1000


def rapid_reset(a: Attacker, deadline: float, out: Outcome, per_burst: int = 500) -> None:
    """HEADERS then RST_STREAM at once, as fast as the socket takes them."""
    while time.monotonic() < deadline:
        burst = []
        for _ in range(per_burst):
            sid = a.next_sid
            burst.append(a.headers())
            burst.append(F.rst_stream(sid, 0x8))
        if not a.send(b"".join(burst)):
            return
        out.sent_frames += 2 * per_burst


def continuation_held(a: Attacker, deadline: float, out: Outcome) -> None:
    """A header block that never ends: HEADERS without END_HEADERS, then 16 KiB CONTINUATIONs."""
    sid = a.next_sid
    a.send(a.headers(end_headers=False))
    filler = F.header(16384, F.CONTINUATION, 0, sid) + b"\x00" * 16384
    for _ in range(60):
        if time.monotonic() >= deadline or not a.send(filler):
            return
        out.sent_frames += 1


def huge_frame_header(a: Attacker, deadline: float, out: Outcome) -> None:
    """A frame header announcing 16 MiB, then a trickle of its payload."""
    sid = a.next_sid
    a.send(a.headers())
    if a.send(F.header((1 << 24) - 1, F.DATA, 0, sid)):
        out.sent_frames += 1
        a.send(b"\x00" * 4096)


def slowloris(address: str, seconds: float, count: int) -> tuple[int, int]:
    """`count` connections that never send a preface, held for `seconds`; returns
    (connections opened, those the proxy closed before the end)."""
    socks = []
    host, port = address.rsplit(":", 1)
    for _ in range(count):
        try:
            socks.append(socket.create_connection((host, int(port)), timeout=2))
        except OSError:
            break
    time.sleep(seconds)  # holding the connections open is the attack, not synchronisation
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            while chunk := s.recv(1 << 16):  # the proxy's SETTINGS (and GOAWAY) first, then EOF
                pass
            closed += 1
        except BlockingIOError:
            pass  # still open
        except OSError:
            closed += 1
        s.close()
    return len(socks), closed


def zero_window_reader(a: Attacker, deadline: float, out: Outcome, request: bytes = b"") -> None:
    """Asks for large responses with SETTINGS_INITIAL_WINDOW_SIZE 0 and never grows the window."""
    while time.monotonic() < deadline:
        sid = a.next_sid
        if not a.send(a.headers() + F.data_header(sid, len(request), True) + request):
            return
        out.sent_frames += 2
        time.sleep(0.01)  # a call every 10 ms: the slow reader's pace, not synchronisation


# ---------------------------------------------------------------- running one in its own process

def large_response_request(size: int = 1 << 20) -> bytes:
    """A gRPC-framed interop SimpleRequest asking for `size` bytes back."""
    from meshtest.interop import messages_pb2
    body = messages_pb2.SimpleRequest(response_size=size).SerializeToString()
    return b"\x00" + struct.pack(">L", len(body)) + body


ATTACKS = {
    "ping_flood": lambda addr, s: run(addr, s, ping_flood),
    "settings_flood": lambda addr, s: run(addr, s, settings_flood),
    "empty_data": lambda addr, s: run(addr, s, empty_data_flood),
    "rapid_reset": lambda addr, s: run(addr, s, rapid_reset),
    "reset_flood_unread": lambda addr, s: run(addr, s, lambda a, d, o: rapid_reset(a, d, o, per_burst=2000)),
    "continuation": lambda addr, s: run(addr, s, continuation_held),
    "huge_frame": lambda addr, s: run(addr, s, huge_frame_header),
    "zero_window": lambda addr, s: run(addr, s, lambda a, d, o: zero_window_reader(a, d, o, large_response_request()),
                                       settings={F.INITIAL_WINDOW_SIZE: 0}),
}


def main(argv: list[str]) -> int:
    """python -m tests.support.attacks NAME ADDRESS SECONDS [COUNT]: prints the outcome as JSON."""
    import json
    name, address, seconds = argv[0], argv[1], float(argv[2])
    if name == "slowloris":
        opened, closed = slowloris(address, seconds, int(argv[3]))
        print(json.dumps({"connections": opened, "closed_by_proxy": closed, "goaways": [], "sent_frames": 0}))
        return 0
    print(json.dumps(dataclasses.asdict(ATTACKS[name](address, seconds))))
    return 0


if __name__ == "__main__":
    import sys
    raise SystemExit(main(sys.argv[1:]))
