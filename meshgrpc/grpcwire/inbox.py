"""One end of a call's received messages, shared by the client's calls (call.py)
and the server's (server_call.py): DATA cut into messages (framing.Deframer),
the messages not yet taken, and the flow-control credit owed to the peer.
Each message counts its 5-byte prefix too, so that empty messages are bounded
like any other.

Flow control (RFC 9113 §5.2): received bytes are handed back as they are cut
into messages, so a message as large as the window allows can arrive, until
the messages received and not yet taken pass `queue_limit` bytes; then nothing
more is handed back until they are taken, and the peer's window stops it. So
one end holds at most `queue_limit` plus one message plus one stream window.
"""

from __future__ import annotations

import collections

from meshgrpc.grpcwire import framing


class Inbox:
    __slots__ = ("queue_limit", "messages", "_deframer", "_queued", "_owed")

    def __init__(self, max_message_bytes: int, queue_limit: int) -> None:
        self.queue_limit = queue_limit
        # None while empty: an idle stream holds no deque (624 bytes on CPython).
        self.messages: collections.deque[bytes] | None = None
        self._deframer = framing.Deframer(max_message_bytes)
        self._queued = 0    # bytes in messages
        self._owed = 0      # flow-controlled bytes received and not yet handed back

    def feed(self, data, flow_len: int) -> int:
        """Takes one DATA frame's payload; returns the credit to hand back now.
        Raises RpcError for a message that cannot be read (the caller hands
        `flow_len` back and ends the call)."""
        messages = self._deframer.feed(data)
        if messages:
            if self.messages is None:
                self.messages = collections.deque()
            self.messages.extend(messages)
            self._queued += sum(map(len, messages)) + framing.PREFIX * len(messages)
        if self._queued <= self.queue_limit:
            return flow_len
        self._owed += flow_len
        return 0

    def take(self) -> tuple[bytes, int]:
        """The oldest message (there must be one) and the credit to hand back now."""
        payload = self.messages.popleft()
        if not self.messages:
            self.messages = None
        self._queued -= len(payload) + framing.PREFIX
        if self._owed and self._queued <= self.queue_limit:
            owed, self._owed = self._owed, 0
            return payload, owed
        return payload, 0

    def clear(self) -> None:
        """Drops what was not taken (the call was ended by this side)."""
        self.messages = None
        self._queued = 0

    def settle(self) -> int:
        """The call ended: the credit still owed, handed back at once (the
        connection window must not leak); messages not taken stay readable."""
        owed, self._owed = self._owed, 0
        return owed

    def __len__(self) -> int:
        return 0 if self.messages is None else len(self.messages)

    @property
    def queued(self) -> int:
        """Bytes of the messages not yet taken."""
        return self._queued

    @property
    def owed(self) -> int:
        return self._owed
