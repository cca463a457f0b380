"""Local rate limits: a token bucket per route, or one per value of a request
header (Envoy's local rate limit filter, with a bounded key space).

A bucket holds up to `burst` tokens and gains `requests_per_second` per second;
each call takes one. A call that finds the bucket empty is refused with the time
until the next token, which the relay sends as `grpc-retry-pushback-ms` so a
well-behaved client knows when to come back. With a key header, at most
`max_keys` buckets are kept; the least recently used is forgotten first (a new
key starts with a full bucket, so forgetting is generous, never stricter).
"""

from __future__ import annotations

import collections
from typing import Callable

from meshgrpc.config.specs import RateLimitSpec


# A token counts as whole a hair below 1.0: refill is computed in floating point,
# and 0.1 s at 10/s must give the token it promised.
_WHOLE = 1.0 - 1e-9


class TokenBucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at

    def take(self, now: float, rate: float, burst: float) -> float:
        """0.0 if a token was taken, else seconds until one is due."""
        tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if tokens >= _WHOLE:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / rate


class RateLimiter:
    """The buckets of one route. `admit(headers)` per call, on the event loop thread."""

    __slots__ = ("spec", "_clock", "_key", "_buckets", "_shared", "refused")

    def __init__(self, spec: RateLimitSpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self._clock = clock
        self._key = spec.key_header.encode() if spec.key_header else None
        self._buckets: collections.OrderedDict[bytes, TokenBucket] = collections.OrderedDict()
        self._shared = TokenBucket(float(spec.burst), clock())
        self.refused = 0  # calls refused so far (metrics)

    def admit(self, headers) -> float:
        """0.0 if the call may go on, else seconds until the caller's bucket has a token."""
        now = self._clock()
        bucket = self._bucket(headers, now)
        wait = bucket.take(now, self.spec.requests_per_second, self.spec.burst)
        if wait:
            self.refused += 1
        return wait

    def _bucket(self, headers, now: float) -> TokenBucket:
        if self._key is None:
            return self._shared
        value = None
        for name, v in headers:
            if name == self._key:
                value = v
                break
        if value is None:
            return self._shared  # calls without the header share one bucket
        buckets = self._buckets
        bucket = buckets.get(value)
        if bucket is None:
            if len(buckets) >= self.spec.max_keys:
                buckets.popitem(last=False)
            bucket = buckets[value] = TokenBucket(float(self.spec.burst), now)
        else:
            buckets.move_to_end(value)
        return bucket

    def __repr__(self) -> str:
        return f"<RateLimiter {self.spec.requests_per_second:g}/s burst={self.spec.burst} keys={len(self._buckets)}>"
