"""What one HTTP/2 connection advertises and tolerates (issue 9's hardened edge),
and the counters of each limit's use that the proxy exports.

Every limit ends a hostile connection the way Envoy's do (its
`Http2ProtocolOptions`): GOAWAY ENHANCE_YOUR_CALM (FRAME_SIZE_ERROR or
PROTOCOL_ERROR where RFC 9113 names the code), then the caller closes.
"""

from __future__ import annotations

import dataclasses

from meshgrpc.codec import frames


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Settings advertised to the peer and limits enforced on it (both roles)."""

    # SETTINGS_MAX_CONCURRENT_STREAMS advertised: streams the peer may open at once;
    # one more is refused with RST_STREAM REFUSED_STREAM (h2's default of 100
    # throttles a busy sidecar). Default 1000.
    max_concurrent_streams: int = 1000
    # SETTINGS_INITIAL_WINDOW_SIZE advertised: each stream's receive window, and so
    # the most the peer may send on a stream before we acknowledge. Default 1 MiB.
    stream_window: int = 1 << 20
    # Connection receive window, grown from 65,535 by a WINDOW_UPDATE on stream 0
    # at start (SETTINGS never changes the connection window). Default 16 MiB.
    connection_window: int = 16 << 20
    # SETTINGS_MAX_FRAME_SIZE advertised; a frame declaring a longer payload is
    # refused at its 9-byte header (FRAME_SIZE_ERROR) before any of it is
    # buffered. Default 16,384 (the protocol's minimum).
    max_frame_size: int = frames.DEFAULT_MAX_FRAME_SIZE
    # SETTINGS_MAX_HEADER_LIST_SIZE advertised and enforced: a header block is
    # refused (ENHANCE_YOUR_CALM) once its encoded bytes, counted as CONTINUATION
    # frames arrive, or its decoded size (32 octets per field plus name and
    # value, RFC 9113 §6.5.2) exceed it. Default 64 KiB.
    max_header_list_size: int = 1 << 16
    # Fields in one header block; a block with more is refused on its stream
    # (RST_STREAM ENHANCE_YOUR_CALM; the connection lives). Default 100 (Envoy's).
    max_header_fields: int = 100
    # Premature resets (CVE-2023-44487, Envoy's rule): once the peer has opened
    # `premature_reset_min_streams` streams, if at least
    # `premature_reset_ratio` of them were reset by the peer within
    # `premature_reset_seconds` of opening: GOAWAY ENHANCE_YOUR_CALM. Counts
    # streams the peer opened. Defaults 500, 0.5, 1 s.
    premature_reset_min_streams: int = 500
    premature_reset_ratio: float = 0.5
    premature_reset_seconds: float = 1.0
    # PING and SETTINGS frames accepted from the peer per second (each costs us
    # an ACK) in each 1 s window; one more: GOAWAY ENHANCE_YOUR_CALM. gRPC
    # keepalive and BDP pings (at most one outstanding) stay below. Defaults 1000
    # and 100.
    max_pings_per_second: int = 1000
    max_settings_per_second: int = 100
    # gRPC's ping policy (grpc-core's ping abuse policy, a server's
    # min_ping_interval_without_data and max_ping_strikes): a PING that arrives
    # less than `min_ping_interval` seconds after the previous one is a strike,
    # and sending HEADERS or DATA forgives the strikes; one strike more than
    # `max_ping_strikes`: GOAWAY ENHANCE_YOUR_CALM with the debug data
    # "too_many_pings", which gRPC clients read as "ping less often". Default 0:
    # no such policy (max_pings_per_second still bounds a flood).
    min_ping_interval: float = 0.0
    max_ping_strikes: int = 2
    # WINDOW_UPDATE frames accepted, Envoy's ratio rule: at most
    # 5 + 2 * (streams opened + `window_updates_per_data_frame` * DATA frames
    # sent); one more: GOAWAY ENHANCE_YOUR_CALM. Default 10.
    window_updates_per_data_frame: int = 10
    # Control frames (everything but DATA and HEADERS/CONTINUATION) queued and not
    # yet taken with data_to_send(): a peer that floods frames needing an answer
    # (PING, SETTINGS, malformed streams) while we cannot hand the answers out.
    # One more: GOAWAY ENHANCE_YOUR_CALM. Default 1000 (Envoy's).
    max_queued_control_frames: int = 1000
    # Consecutive DATA/HEADERS/CONTINUATION frames with an empty payload and no
    # END_STREAM (Envoy's max_consecutive_inbound_frames_with_empty_payload);
    # one more: GOAWAY ENHANCE_YOUR_CALM. Default 1.
    max_consecutive_empty_frames: int = 1

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))


def _problems(limits: Limits) -> list[str]:
    out = []
    if not frames.DEFAULT_MAX_FRAME_SIZE <= limits.max_frame_size <= frames.MAX_FRAME_SIZE_LIMIT:
        out.append(f"max_frame_size = {limits.max_frame_size}: must be in [16384, 16777215]")
    for name in ("stream_window", "connection_window"):
        value = getattr(limits, name)
        if not 0 <= value <= frames.MAX_WINDOW:
            out.append(f"{name} = {value}: must be in [0, 2147483647]")
    if limits.connection_window < frames.DEFAULT_WINDOW:
        out.append(f"connection_window = {limits.connection_window}: must be >= 65535")
    for name in ("max_concurrent_streams", "max_header_list_size", "max_header_fields",
                 "premature_reset_min_streams", "max_pings_per_second", "max_settings_per_second",
                 "window_updates_per_data_frame", "max_queued_control_frames",
                 "max_consecutive_empty_frames", "min_ping_interval", "max_ping_strikes"):
        if getattr(limits, name) < 0:
            out.append(f"{name} = {getattr(limits, name)}: must be >= 0")
    if not 0 < limits.premature_reset_ratio <= 1:
        out.append(f"premature_reset_ratio = {limits.premature_reset_ratio}: must be in (0, 1]")
    if limits.premature_reset_seconds <= 0:
        out.append(f"premature_reset_seconds = {limits.premature_reset_seconds}: must be > 0")
    return out


DEFAULT_LIMITS = Limits()


class Counters:
    """How often each limit (and each malformed-message rule) acted. One object
    may be shared by every connection of a listener; the proxy exports it."""

    __slots__ = ("premature_resets", "ping_flood", "too_many_pings", "settings_flood", "window_update_flood",
                 "control_queue_full", "empty_frames", "header_list_too_large",
                 "too_many_header_fields", "frame_too_large", "first_frame_not_settings",
                 "malformed_messages", "refused_streams", "protocol_errors")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        used = {k: v for k, v in self.as_dict().items() if v}
        return f"<Counters {used}>"
