"""How long an answer asks the proxy not to send the endpoint calls: pure parsing
for the relay, which passes the result to `EndpointState.pushed_back(seconds)`.

- gRPC: `grpc-retry-pushback-ms` (gRFC A6), in trailers or a trailers-only answer.
  A negative or malformed value means "do not retry" to the retry logic, and
  says nothing about when the endpoint may be called again: no pushback here.
- Plain HTTP/2: `Retry-After` (RFC 9110 §10.2.3) on the response headers, as
  delay-seconds or an HTTP-date (`now_wall` is the wall clock it is read against).
"""

from __future__ import annotations

import email.utils
import time

from meshgrpc.proxy.resilience.retry import pushback_of

RETRY_AFTER = b"retry-after"


def pushback_seconds(headers, grpc: bool, now_wall: float | None = None) -> float | None:
    """Seconds the answer in `headers` ((name, value) byte pairs) pushes back, or None."""
    if grpc:
        seconds = pushback_of(headers)
        return seconds if seconds is not None and seconds >= 0 else None
    for name, value in headers:
        if name == RETRY_AFTER:
            return retry_after(value, time.time() if now_wall is None else now_wall)
    return None


def retry_after(value: bytes, now_wall: float) -> float | None:
    """A Retry-After value in seconds from `now_wall`, or None when it parses as neither form."""
    text = value.strip().decode("latin-1")
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110: an HTTP-date is always GMT; one without a zone is not one
    return max(0.0, when.timestamp() - now_wall)
