"""The gRPC connections to the control plane, both ends in one place so they cannot
drift apart: what its server permits, and what its clients ask for: the CLI's
calls and registration stream (grpcio, with `client_options()`), and the proxy's
discovery stream (meshgrpc.grpcwire, which takes `Keepalive` and
`MAX_MESSAGE_BYTES` as they are; meshgrpc/xds/client.py control_plane_dialer).

Keepalive (grpc doc/keepalive.md; grpc-core chttp2 ping_abuse_policy.cc and
ping_rate_policy.cc). A client pings after `interval` without data and drops the
connection when no ack comes within `timeout`, so a control plane that vanished
without closing the connection is noticed and redialled. Two client settings make
that hold on an idle stream: `keepalive_permit_without_calls`, and
`http2.max_pings_without_data` 0 (its default 2 stops pinging, or throttles it to
once a minute, after two pings with no data sent). The server counts a ping that
arrives sooner than `grpc.http2.min_ping_interval_without_data_ms` after the
previous one (default 5 minutes) as a strike, and past `grpc.http2.max_ping_strikes`
strikes (default 2) sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings". Nothing resets
the strikes on an idle discovery stream (only data the server sends does), so the
server must permit the clients' interval: by default it permits pings twice as
often as proxies send them, as timers drift and a client told "too_many_pings"
doubles its interval anyway (grpcwire's Dialer does the same).

Message sizes. A config file may be 16 MiB (config/bounds.py); as a protobuf
message it is usually smaller, but lists of one-letter strings grow 1.5x, and `get`
adds registered endpoints, so both ends allow twice that instead of gRPC's default
4 MiB receive limit.
"""

from __future__ import annotations

import dataclasses

from meshgrpc.config.bounds import MAX_FILE_BYTES

MAX_MESSAGE_BYTES = 2 * MAX_FILE_BYTES
CLIENT_INTERVAL = 20.0        # seconds without data before a client pings
CLIENT_TIMEOUT = 10.0         # seconds a client waits for the ping's ack
SERVER_MIN_INTERVAL = 10.0    # seconds the server requires between pings without data
SERVER_MAX_STRIKES = 2        # pings sooner than that the server forgives (grpc-core's default)

_MESSAGE_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES))


@dataclasses.dataclass(frozen=True)
class Keepalive:
    """A client's keepalive: ping after `interval` seconds without data, give up `timeout` later."""

    interval: float = CLIENT_INTERVAL
    timeout: float = CLIENT_TIMEOUT

    def options(self) -> tuple[tuple[str, int], ...]:
        return (("grpc.keepalive_time_ms", _ms(self.interval)), ("grpc.keepalive_timeout_ms", _ms(self.timeout)),
                ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0))


def client_options(keepalive: Keepalive | None = None) -> tuple[tuple[str, int], ...]:
    """Channel options for a client of the control plane; `keepalive` for long-lived streams."""
    return _MESSAGE_OPTIONS + (keepalive.options() if keepalive is not None else ())


def server_options(min_ping_interval: float = SERVER_MIN_INTERVAL) -> tuple[tuple[str, int], ...]:
    """The control plane's server options: permit pings `min_ping_interval` apart, with or without calls."""
    return _MESSAGE_OPTIONS + (("grpc.http2.min_ping_interval_without_data_ms", _ms(min_ping_interval)),
                               ("grpc.keepalive_permit_without_calls", 1),
                               ("grpc.http2.max_ping_strikes", SERVER_MAX_STRIKES))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
