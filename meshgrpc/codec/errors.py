"""HTTP/2 error codes (RFC 9113 §7) and the exceptions the codec raises, each
carrying the code that goes on the wire."""

from __future__ import annotations

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xA
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD


class CodecError(Exception):
    """Base of everything the codec raises."""


class ConnectionFailed(CodecError):
    """The connection is unusable: a GOAWAY with `code` is queued (take it with
    data_to_send(), write it, then close the transport). Raised by receive() on a
    connection error (RFC 9113 §5.4.1), and by every call after it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class HpackError(CodecError):
    """A header block that cannot be decoded (RFC 7541): a connection error of
    type COMPRESSION_ERROR, or ENHANCE_YOUR_CALM when the decoded list is larger
    than allowed."""

    def __init__(self, message: str, code: int = COMPRESSION_ERROR) -> None:
        super().__init__(message)
        self.code = code


class CannotOpenStream(CodecError):
    """send_headers() on a new stream that this connection cannot open now; the
    caller should use (or open) another connection."""


class TooManyStreams(CannotOpenStream):
    """Opening the stream would exceed the peer's SETTINGS_MAX_CONCURRENT_STREAMS."""


class GoingAway(CannotOpenStream):
    """The connection sent or received GOAWAY: it opens no new streams."""


class StreamClosed(CodecError):
    """A send on a stream that is closed (or half-closed locally) or unknown."""

    def __init__(self, stream_id: int, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class FlowControlBlocked(CodecError):
    """send_data() with more bytes than send_window(stream_id) allows."""
