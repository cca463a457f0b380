"""h2 as the oracle: random valid and invalid frame sequences from a client go to
meshgrpc.codec and to h2 configured as the relay configures it
(tests/support/h2_oracle.py), one frame per receive call, in the server role
(frames from a client) and in the client role (frames from a server answering
requests both sent alike); after every frame both
must report the same events (requests, data, trailers, ends, resets, window
updates, settings, PING ACKs, GOAWAY), queue the same RST_STREAMs and PING
ACKs, and fail on the same frame with the same GOAWAY code.

Where RFC 9113 lets the two differ, or h2 departs from it, the generator avoids
the case and test_documented_differences_from_h2 pins both behaviours:
- frames after RST_STREAM (either side's): the codec ignores them, h2 answers
  DATA and HEADERS with RST_STREAM STREAM_CLOSED;
- WINDOW_UPDATE of 0 on a stream, trailers without END_STREAM, a stream that
  depends on itself: a stream error for the codec (RFC 9113 §6.9, §8.1.1,
  §5.3.1), a connection error for h2;
- SETTINGS ACK with a payload: FRAME_SIZE_ERROR (§6.5), h2 says PROTOCOL_ERROR;
- in the client role, DATA before the response HEADERS and a 1xx response with
  END_STREAM are malformed (§8.1): a stream error for the codec, a connection
  error for h2;
- h2 applies a SETTINGS_INITIAL_WINDOW_SIZE change to streams already reset
  as well, and can call FLOW_CONTROL_ERROR on a window the codec has dropped;
- HEADERS on an id below the highest opened: the stream is closed (§5.1.1) and
  the codec ignores it; h2 calls it a PROTOCOL_ERROR;
- limits h2 does not have (empty frames, rates, field counts) are raised out of
  reach here and tested in test_codec_limits.py; malformed requests (h2's
  validation is off in the relay) in test_codec_malformed.py.
HYPOTHESIS_EXAMPLES sets the example count (default 2,000).
"""

from __future__ import annotations

import os

import hpack
import pytest
from h2 import events as h2e
from h2.exceptions import ProtocolError
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgrpc.codec import Connection, ConnectionFailed, Limits
from meshgrpc.codec.errors import FRAME_SIZE_ERROR, PROTOCOL_ERROR, STREAM_CLOSED
from tests.support.h2_oracle import Tuning, new_connection
from tests.support import codec_peer as P

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "2000"))
# Small windows so that random DATA reaches them; the rest as the relay has it.
TUNING = Tuning(max_concurrent_streams=1000, stream_window=4096, connection_window=65535 * 2,
                max_header_list_size=1 << 16)
LIMITS = Limits(max_concurrent_streams=1000, stream_window=4096, connection_window=65535 * 2,
                max_header_list_size=1 << 16, max_consecutive_empty_frames=10**6,
                max_pings_per_second=10**6, max_settings_per_second=10**6,
                window_updates_per_data_frame=10**6, max_queued_control_frames=10**6)


class _Ours(P.Recorder):
    """Our callbacks in the oracle's vocabulary (END_STREAM as its own event)."""

    def on_request(self, sid, headers, end_stream):
        self._add("request", sid, tuple(headers))
        if end_stream:
            self._add("end", sid)

    def on_response(self, sid, headers, end_stream):
        self._add("response", sid, tuple(headers))
        if end_stream:
            self._add("end", sid)

    def on_trailers(self, sid, headers):
        self._add("trailers", sid, tuple(headers))
        self._add("end", sid)

    def on_data(self, sid, data, flow_len, end_stream):
        self._add("data", sid, data, flow_len)
        if end_stream:
            self._add("end", sid)


def _h2_events(events) -> list[tuple]:
    out = []
    for ev in events:
        t = type(ev)
        if t is h2e.RequestReceived:
            out.append(("request", ev.stream_id, tuple(tuple(h) for h in ev.headers)))
        elif t is h2e.ResponseReceived:
            out.append(("response", ev.stream_id, tuple(tuple(h) for h in ev.headers)))
        elif t is h2e.DataReceived:
            out.append(("data", ev.stream_id, bytes(ev.data), ev.flow_controlled_length))
        elif t is h2e.TrailersReceived:
            out.append(("trailers", ev.stream_id, tuple(tuple(h) for h in ev.headers)))
        elif t is h2e.StreamEnded:
            out.append(("end", ev.stream_id))
        elif t is h2e.StreamReset:
            out.append(("reset", ev.stream_id, int(ev.error_code)))
        elif t is h2e.WindowUpdated:
            out.append(("window_update", ev.stream_id))
        elif t is h2e.RemoteSettingsChanged:
            out.append(("settings",))
        elif t is h2e.PingAckReceived:
            out.append(("ping_ack", ev.ping_data))
        elif t is h2e.ConnectionTerminated:
            out.append(("goaway", int(ev.error_code), ev.last_stream_id, ev.additional_data or b""))
    return out


def _answers(data: bytes) -> tuple:
    """What the peer must see alike: RST_STREAMs, PING ACKs, GOAWAY codes."""
    frames = P.parse_frames(data)
    return (P.rst_codes(data), [f[3] for f in frames if f[0] == 6 and f[1] & 1], P.goaway_codes(data))


class _Pair:
    """Both codecs in one role behind one peer, fed the same bytes."""

    def __init__(self, client: bool = False) -> None:
        self.rec = _Ours()
        self.ours = Connection(self.rec, client=client, limits=LIMITS)
        self.h2 = new_connection(client, TUNING)
        self.ours.data_to_send()
        self.h2.data_to_send()
        self.failed = False
        # Both read our SETTINGS only once acknowledged (h2 applies its own then).
        self.feed(b"" if client else P.PREFACE)
        self.feed(P.settings() + P.SETTINGS_ACK)

    def request(self, sid: int, end_stream: bool) -> None:
        """The same request from both (client role)."""
        self.ours.send_headers(sid, P.GRPC_REQUEST, end_stream)
        self.h2.send_headers(sid, P.GRPC_REQUEST, end_stream=end_stream)
        self.ours.data_to_send()
        self.h2.data_to_send()

    def feed(self, wire: bytes) -> None:
        if not wire:
            return
        ours_err = theirs_err = None
        try:
            self.ours.receive(wire)
        except ConnectionFailed as e:
            ours_err = e.code
        try:
            theirs = _h2_events(self.h2.receive_data(wire))
        except ProtocolError:
            theirs, theirs_err = [], True
        ours_events, ours_out, theirs_out = self.rec.take(), self.ours.data_to_send(), self.h2.data_to_send()
        if theirs_err or ours_err is not None:
            assert ours_err is not None and theirs_err, (ours_err, theirs_err, ours_events, theirs)
            assert P.goaway_codes(ours_out) == P.goaway_codes(theirs_out)
            self.failed = True
            return
        assert ours_events == theirs
        assert _answers(ours_out) == _answers(theirs_out)
        for ev in ours_events:  # hand every byte back, as a relay would
            if ev[0] == "data" and ev[3]:
                self.ours.acknowledge(ev[1], ev[3])
                self.h2.acknowledge_received_data(ev[3], ev[1])
        self.ours.data_to_send()
        self.h2.data_to_send()


class _Client:
    """The model of what the client has done, to aim its frames."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()
        self.next_sid = 1
        self.opened: list[int] = []
        self.ended: set[int] = set()  # the client sent END_STREAM
        self.dead: set[int] = set()  # reset by either side: h2 and the codec differ from here

    def pick(self, i: int) -> int | None:
        live = [s for s in self.opened if s not in self.dead]
        return live[i % len(live)] if live else None


_extra = st.lists(st.tuples(st.sampled_from([b"x-a", b"x-b", b"grpc-timeout", b"user-agent"]),
                            st.sampled_from([b"1", b"abc", b"grpc-python/1.0", b"v" * 50])), max_size=3)
_open_action = st.tuples(st.just("open"), st.booleans(), st.integers(0, 3), _extra, st.booleans())
_data_action = st.tuples(st.just("data"), st.integers(0, 50), st.sampled_from([0, 1, 100, 100, 1000, 1000, 3000, 5000]),
                         st.none() | st.integers(0, 20), st.booleans())
def _no_window_overflow(values: dict) -> dict:
    """h2 applies an INITIAL_WINDOW_SIZE change to streams already reset too,
    so it can overflow a window the codec no longer has (module doc)."""
    if values.get("initial_window_size") == (1 << 31) - 1:
        values["initial_window_size"] = 1 << 20
    return values


_rare = st.one_of(  # frames that often end the connection: drawn less often
    st.tuples(st.just("settings"), st.dictionaries(
        st.sampled_from(["header_table_size", "enable_push", "max_concurrent_streams", "initial_window_size",
                         "max_frame_size", "max_header_list_size"]),
        st.sampled_from([0, 1, 2, 100, 4096, 16384, 65535, 1 << 20, (1 << 31) - 1, 1 << 31]),
        max_size=3).map(_no_window_overflow)),
    st.tuples(st.just("invalid"), st.sampled_from(list(range(12)))),
)
_action = st.one_of(
    _open_action, _data_action, _open_action, _data_action,
    st.tuples(st.just("trailers"), st.integers(0, 50), st.integers(0, 2)),
    st.tuples(st.just("rst"), st.integers(0, 50), st.integers(0, 15)),
    st.tuples(st.just("window_update"), st.integers(-1, 50),
              st.sampled_from([1, 1000, 1000, 5000, 5000, 1 << 30, (1 << 31) - 1])),
    st.tuples(st.just("ping"), st.binary(min_size=8, max_size=8), st.booleans()),
    st.tuples(st.just("priority"), st.integers(-1, 50)),
    st.tuples(st.just("goaway"), st.integers(0, 20), st.integers(0, 13)),
    st.tuples(st.just("unknown"), st.integers(16, 255)),  # 10: ALTSVC, known to h2
)


def _open(client: _Client, end: bool, split: int, extra, huffman: bool) -> list[bytes]:
    sid = client.next_sid
    client.next_sid += 2
    client.opened.append(sid)
    if end:
        client.ended.add(sid)
    block = client.encoder.encode(P.GRPC_REQUEST + extra, huffman=huffman)
    return _block_frames(sid, block, end, split)


def _block_frames(sid: int, block: bytes, end: bool, split: int) -> list[bytes]:
    if not split:
        return [P.headers(sid, block, end)]
    size = max(1, len(block) // (split + 1))
    parts = [block[i:i + size] for i in range(0, len(block), size)]
    wires = [P.headers(sid, parts[0], end, end_headers=len(parts) == 1)]
    wires += [P.continuation(sid, p, end_headers=i == len(parts) - 2) for i, p in enumerate(parts[1:])]
    return wires


def _invalid(client: _Client, kind: int) -> bytes:
    """Frames every HTTP/2 endpoint must refuse, each with its RFC 9113 code."""
    sid = client.pick(0) or 1
    return [
        P.data(0, b"x"),  # DATA on stream 0
        P.headers(client.next_sid + 1, client.encoder.encode(P.GRPC_REQUEST)),  # an even (server) id
        P.frame(6, 0, 0, b"\0" * 7),  # PING of 7 octets
        P.frame(4, 0, 0, b"\0" * 5),  # SETTINGS not a multiple of 6
        P.frame(3, 0, sid, b"\0" * 3),  # RST_STREAM of 3 octets
        P.frame(8, 0, 0, b"\0" * 3),  # WINDOW_UPDATE of 3 octets
        P.window_update(0, 0),  # connection WINDOW_UPDATE of 0
        P.continuation(client.next_sid + 20, b""),  # CONTINUATION without HEADERS
        P.frame(5, 4, sid, b"\0\0\0\x02"),  # PUSH_PROMISE
        P.data(client.next_sid + 40, b"x"),  # DATA on an idle stream
        P.frame(7, 0, 1, b"\0" * 8),  # GOAWAY on a stream
        P.frame(0, 8, sid, b"\x09abc"),  # padding longer than the payload
    ][kind]


def _window_update_allowed(peer) -> bool:
    """Within the codec's WINDOW_UPDATE flood rule (5 + 2 per stream: we send no
    DATA here), which h2 does not have."""
    peer.window_updates = getattr(peer, "window_updates", 0) + 1
    return peer.window_updates <= 5 + 2 * len(peer.opened)


def _wires(client: _Client, action) -> list[bytes]:
    kind = action[0]
    if kind == "open":
        return _open(client, *action[1:])
    if kind == "data":
        sid = client.pick(action[1])
        if sid is None:
            return []
        _, _, size, pad, end = action
        if sid in client.ended:
            client.dead.add(sid)  # a stream error STREAM_CLOSED follows
        if end:
            client.ended.add(sid)
        return [P.data(sid, b"d" * size, end, pad)]
    if kind == "trailers":
        sid = client.pick(action[1])
        if sid is None:
            return []
        if sid in client.ended:
            client.dead.add(sid)
        client.ended.add(sid)
        return _block_frames(sid, client.encoder.encode([(b"x-t", b"1")]), True, action[2])
    if kind == "rst":
        sid = client.pick(action[1])
        if sid is None:
            return []
        client.dead.add(sid)
        return [P.rst_stream(sid, action[2])]
    if kind == "window_update":
        sid = 0 if action[1] < 0 else client.pick(action[1])
        if sid is None or not _window_update_allowed(client):
            return []
        return [P.window_update(sid, action[2])]
    if kind == "ping":
        return [P.ping(action[1], action[2])]
    if kind == "settings":
        return [P.settings(**action[1])]
    if kind == "priority":
        sid = client.next_sid + 10 if action[1] < 0 else client.pick(action[1])
        # depends on stream 0 (never on itself: see module doc)
        return [] if sid is None else [P.frame(2, 0, sid, b"\0\0\0\0\x10")]
    if kind == "goaway":
        # Not before the first stream: the oracle's GOAWAY-tolerant transitions
        # cover the open states only, and h2 closes an IDLE connection on GOAWAY.
        return [P.goaway(action[1], action[2], b"bye")] if client.opened else []
    if kind == "unknown":
        return [P.frame(action[1], 0, 0, b"abc")]
    return [_invalid(client, action[1])]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_action, min_size=5, max_size=40), st.none() | _rare)
def test_the_codec_agrees_with_h2_on_random_frame_sequences(actions, last):
    pair, client = _Pair(), _Client()
    for action in actions + ([last] if last else []):
        for wire in _wires(client, action):
            pair.feed(wire)
            if pair.failed:
                return
            # A stream the codec no longer has was reset by one side or the other.
            client.dead.update(s for s in client.opened if s not in pair.ours.streams)


# -- the client role: frames from a server ------------------------------------------------

_RESPONSES = [P.GRPC_RESPONSE, P.GRPC_RESPONSE + [(b"grpc-status", b"14"), (b"grpc-message", b"down")],
              [(b":status", b"404")]]
_server_action = st.one_of(
    st.tuples(st.just("request"), st.booleans()),
    st.tuples(st.just("response"), st.integers(0, 50), st.sampled_from([0, 1, 2]), st.booleans(),
              st.integers(0, 2), st.booleans()),
    st.tuples(st.just("data"), st.integers(0, 50), st.sampled_from([0, 1, 100, 1000, 3000, 5000]),
              st.none() | st.integers(0, 20), st.booleans()),
    st.tuples(st.just("trailers"), st.integers(0, 50), st.integers(0, 2)),
    st.tuples(st.just("rst"), st.integers(0, 50), st.integers(0, 15)),
    st.tuples(st.just("window_update"), st.integers(-1, 50), st.sampled_from([1, 1000, 5000, (1 << 31) - 1])),
    st.tuples(st.just("ping"), st.binary(min_size=8, max_size=8), st.booleans()),
    st.tuples(st.just("goaway"), st.integers(0, 20), st.integers(0, 13)),
)


class _Server:
    """The model of the server's side of each stream, to aim its frames."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()
        self.next_sid = 1
        self.opened: list[int] = []
        self.responded: set[int] = set()
        self.dead: set[int] = set()  # ended or reset: h2 and the codec differ from here

    def pick(self, i: int) -> int | None:
        live = [s for s in self.opened if s not in self.dead]
        return live[i % len(live)] if live else None


def _server_wires(server: _Server, pair: _Pair, action) -> list[bytes]:
    kind = action[0]
    if kind == "request":
        sid = server.next_sid
        server.next_sid += 2
        server.opened.append(sid)
        pair.request(sid, action[1])
        return []
    if kind == "window_update" and not _window_update_allowed(server):
        return []
    sid = server.pick(action[1]) if kind not in ("ping", "goaway") else 0
    if sid is None or (kind == "window_update" and action[1] < 0):
        return [P.window_update(0, action[2])] if kind == "window_update" else []
    if kind == "response":
        _, _, which, end, split, informational = action
        if sid in server.responded:
            return []
        block = server.encoder.encode([(b":status", b"100")]) if informational else None
        wires = _block_frames(sid, block, False, 0) if block else []
        server.responded.add(sid)
        if end:
            server.dead.add(sid)
        return wires + _block_frames(sid, server.encoder.encode(_RESPONSES[which]), end, split)
    if kind == "data":
        if sid not in server.responded:
            return []  # DATA before the response: see the module doc
        _, _, size, pad, end = action
        if end:
            server.dead.add(sid)
        return [P.data(sid, b"d" * size, end, pad)]
    if kind == "trailers":
        if sid not in server.responded:
            return []
        server.dead.add(sid)
        return _block_frames(sid, server.encoder.encode([(b"grpc-status", b"0")]), True, action[2])
    if kind == "rst":
        server.dead.add(sid)
        return [P.rst_stream(sid, action[2])]
    if kind == "window_update":
        return [P.window_update(sid, action[2])]
    if kind == "ping":
        return [P.ping(action[1], action[2])]
    return [P.goaway(action[1], action[2], b"bye")] if server.opened else []


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(_server_action, min_size=5, max_size=40), st.none() | _rare)
def test_the_client_role_agrees_with_h2_on_random_responses(actions, last):
    pair, server = _Pair(client=True), _Server()
    for action in actions:
        if action[0] == "request" and (pair.ours.goaway_received is not None
                                       or pair.ours.open_outbound >= pair.ours.peer_max_concurrent_streams):
            continue
        for wire in _server_wires(server, pair, action):
            pair.feed(wire)
            if pair.failed:
                return
            server.dead.update(s for s in server.opened if s not in pair.ours.streams)
    if last is not None and last[0] == "settings":
        pair.feed(P.settings(**last[1]))


# -- where the two differ by design ------------------------------------------------------

def _one(frames_after_open: list[bytes], end: bool = False):
    """(our events, our RSTs, our GOAWAY codes, h2's RSTs, h2's GOAWAY codes)."""
    pair = _Pair()
    enc = hpack.Encoder()
    pair.feed(P.headers(1, enc.encode(P.GRPC_REQUEST), end))
    ours_err, theirs_err = None, False
    for wire in frames_after_open:
        try:
            pair.ours.receive(wire)
        except ConnectionFailed as e:
            ours_err = e.code
        try:
            pair.h2.receive_data(wire)
        except ProtocolError:
            theirs_err = True
    ours, theirs = pair.ours.data_to_send(), pair.h2.data_to_send()
    return ours_err, P.rst_codes(ours), P.goaway_codes(theirs) if theirs_err else P.rst_codes(theirs)


@pytest.mark.parametrize("case,frames,ours,h2", [
    ("DATA after the peer's RST_STREAM", [P.rst_stream(1, 8), P.data(1, b"x")], (None, {}), {1: STREAM_CLOSED}),
    ("WINDOW_UPDATE of 0 on a stream", [P.window_update(1, 0)], (None, {1: PROTOCOL_ERROR}), [PROTOCOL_ERROR]),
    ("trailers without END_STREAM", [P.headers(1, b"\x40\x03x-t\x011")], (None, {1: PROTOCOL_ERROR}),
     [PROTOCOL_ERROR]),
    ("a stream depending on itself", [P.frame(2, 0, 1, b"\0\0\0\x01\x10")], (None, {1: PROTOCOL_ERROR}),
     [PROTOCOL_ERROR]),
    ("SETTINGS ACK with a payload", [P.frame(4, 1, 0, b"\0" * 6)], (FRAME_SIZE_ERROR, {}), [PROTOCOL_ERROR]),
])
def test_documented_differences_from_h2(case, frames, ours, h2):
    ours_err, ours_rst, theirs = _one(frames)
    assert (ours_err, ours_rst) == ours, case
    assert theirs == h2, case

