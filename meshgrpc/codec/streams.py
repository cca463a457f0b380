"""Stream states of RFC 9113 §5.1 as an explicit transition table, and the
per-stream record the connection keeps (state, flow-control windows, what the
peer has sent so far).

The reserved states do not occur: the codec never enables server push
(SETTINGS_ENABLE_PUSH = 0 from a client, and PUSH_PROMISE is a connection
error either way). A stream that reaches CLOSED is dropped from the connection;
frames that still arrive for it are handled as for any closed stream.
"""

from __future__ import annotations

IDLE = 0
OPEN = 1
HALF_CLOSED_LOCAL = 2
HALF_CLOSED_REMOTE = 3
CLOSED = 4
STATE_NAMES = ("IDLE", "OPEN", "HALF_CLOSED_LOCAL", "HALF_CLOSED_REMOTE", "CLOSED")

SEND_HEADERS = 0
RECV_HEADERS = 1
SEND_DATA = 2
RECV_DATA = 3
SEND_END_STREAM = 4
RECV_END_STREAM = 5
SEND_RST = 6
RECV_RST = 7
EVENT_NAMES = ("SEND_HEADERS", "RECV_HEADERS", "SEND_DATA", "RECV_DATA",
               "SEND_END_STREAM", "RECV_END_STREAM", "SEND_RST", "RECV_RST")

# (state, event) -> next state, RFC 9113 §5.1 (Figure 2). A pair not listed is
# not allowed: a send raises StreamClosed to the caller; a receive is a stream
# error STREAM_CLOSED (§5.1 "half-closed (remote)", "closed"). END_STREAM is its
# own event, applied after the HEADERS or DATA that carried it.
_TABLE = {
    (IDLE, SEND_HEADERS): OPEN,
    (IDLE, RECV_HEADERS): OPEN,
    (OPEN, SEND_HEADERS): OPEN,
    (OPEN, RECV_HEADERS): OPEN,
    (OPEN, SEND_DATA): OPEN,
    (OPEN, RECV_DATA): OPEN,
    (OPEN, SEND_END_STREAM): HALF_CLOSED_LOCAL,
    (OPEN, RECV_END_STREAM): HALF_CLOSED_REMOTE,
    (OPEN, SEND_RST): CLOSED,
    (OPEN, RECV_RST): CLOSED,
    (HALF_CLOSED_LOCAL, RECV_HEADERS): HALF_CLOSED_LOCAL,
    (HALF_CLOSED_LOCAL, RECV_DATA): HALF_CLOSED_LOCAL,
    (HALF_CLOSED_LOCAL, RECV_END_STREAM): CLOSED,
    (HALF_CLOSED_LOCAL, SEND_RST): CLOSED,
    (HALF_CLOSED_LOCAL, RECV_RST): CLOSED,
    (HALF_CLOSED_REMOTE, SEND_HEADERS): HALF_CLOSED_REMOTE,
    (HALF_CLOSED_REMOTE, SEND_DATA): HALF_CLOSED_REMOTE,
    (HALF_CLOSED_REMOTE, SEND_END_STREAM): CLOSED,
    (HALF_CLOSED_REMOTE, SEND_RST): CLOSED,
    (HALF_CLOSED_REMOTE, RECV_RST): CLOSED,
}
NOT_ALLOWED = -1
# The same table flattened for the hot path: TRANSITIONS[state * 8 + event].
TRANSITIONS = tuple(_TABLE.get((s, e), NOT_ALLOWED) for s in range(5) for e in range(8))


def next_state(state: int, event: int) -> int:
    """The state after `event`, or NOT_ALLOWED."""
    return TRANSITIONS[state * 8 + event]


class Stream:
    """One stream's state on a connection.

    send_window: octets we may still send (the peer's window for us);
    recv_window: octets the peer may still send before we acknowledge more;
    unacked: octets the caller acknowledged and we have not yet credited in a
    WINDOW_UPDATE; blocks_in: header blocks received (the first is the request
    or the final response, later ones trailers); inbound: opened by the peer;
    opened_at: clock reading when the peer opened it (premature-reset rule)."""

    __slots__ = ("stream_id", "state", "send_window", "recv_window", "unacked", "blocks_in",
                 "inbound", "opened_at")  # uncompiled; compiled, streams.pxd declares them

    def __init__(self, stream_id: int, state: int, send_window: int, recv_window: int,
                 inbound: bool, opened_at: float) -> None:
        self.stream_id = stream_id
        self.state = state
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked = 0
        self.blocks_in = 0
        self.inbound = inbound
        self.opened_at = opened_at

    def __repr__(self) -> str:
        return (f"<Stream {self.stream_id} {STATE_NAMES[self.state]} send={self.send_window} "
                f"recv={self.recv_window}>")
