"""The typed seams between the relay's parts: what each side of a call may ask of
the others, and nothing more. The call path is built from these three roles:

- `StreamSide`: one HTTP/2 connection as the streams on it see it (h2side.H2Side
  and its subclasses, DownstreamConnection and UpstreamConnection);
- `CallHooks`: what an upstream Attempt tells the Call it serves (call.Call);
- `RelayServices`: what a Call and its attempts take from the relay they run in
  (relay.Relay): the clock, timers, the random source, replay memory, pools.

Modules type their neighbours through these Protocols instead of importing each
other, so attempt.py, call.py and relay.py form a line, not a circle, and each can
be driven by a fake in tests.
"""

from __future__ import annotations

import random
from typing import Callable, Protocol


class StreamSide(Protocol):
    """One HTTP/2 connection of the relay (h2side.py). `h2` is the codec's
    Connection: send_headers, send_data, send_window, reset_stream, next_stream_id."""

    h2: object
    calls: dict  # stream id -> the relay's stream object on it
    blocked: set  # senders waiting for this connection's send window (their pump())
    closed: bool

    def touch(self) -> None:
        """Output is queued: write it at the end of this turn."""

    def ack(self, stream_id: int, n: int) -> None:
        """Give `n` received bytes back to the peer (stream and connection windows)."""

    def ack_stream(self, stream_id: int, n: int) -> None: ...

    def ack_connection(self, n: int) -> None: ...

    def reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM, unless the stream is already closed."""


class CallHooks(Protocol):
    """What an Attempt reports to its call (each at most once per attempt, but
    `attempt_ended`, which always comes)."""

    relay: RelayServices
    body: object  # the request bytes every attempt sends (attempt.RequestBody)

    def attempt_headers(self, attempt) -> list: ...

    def attempt_responded(self, attempt, headers, ended: bool) -> None: ...

    def attempt_failed(self, attempt, failure, reset_code) -> None: ...

    def attempt_ended(self, attempt) -> None: ...

    def response_trailers(self, attempt, headers) -> None: ...

    def committed_reset(self, attempt, code: int) -> None: ...

    def committed_lost(self, attempt, why: str) -> None: ...

    def fail(self, status: int, message: str) -> None: ...


class RelayServices(Protocol):
    """What calls share, from the relay they run in."""

    rng: random.Random

    def clock(self) -> float:
        """Monotonic seconds."""

    def later(self, delay: float, fn: Callable[[], None]):
        """A timer (returns a handle with cancel()); its output is written after `fn`."""

    def flush(self) -> None: ...

    def emit(self, event: str, name: str, detail: str) -> None:
        """A resilience event for the observer (metrics)."""

    def attach(self, attempt) -> None:
        """Queue `attempt` on its endpoint's connection pool."""

    def hash_key(self, call) -> bytes | None: ...

    def maybe_mirror(self, call) -> None: ...

    def start(self, call) -> None: ...

    def reserve_replay(self, new_size: int, limit: int, n: int) -> bool: ...

    def release_replay(self, n: int) -> None: ...

    def call_ended(self, call, grpc_status, latency: float) -> None: ...
