"""Whether and when a failed attempt is tried again (gRFC A6 semantics, Envoy's
retry conditions).

An attempt fails in one of a few ways (`Failure`). Two of them mean the endpoint
never received the call: no connection could be opened, or the stream was
refused (REFUSED_STREAM, or GOAWAY above its id). Those are always safe to send
elsewhere and are retried at once, whatever the policy, up to TRANSPARENT times
per call (gRPC's transparent retries). Every other retry follows the route's
RetryPolicy: the failure must be one it names (a gRPC status, "reset",
"connect-failure", "refused-stream"; a per-try timeout always qualifies), the
call must have retries left, and the wait is exponential back-off with full
jitter, or exactly what the server's `grpc-retry-pushback-ms` says; a negative
or malformed pushback means "do not retry" (A6).

Whether the call may still be replayed, the budget and the breakers are the
call's business (call.py); this module only reads the failure and the policy.
"""

from __future__ import annotations

import dataclasses
import enum
import random as random_module

from meshgrpc.config.specs import RetrySpec
from meshgrpc.config.specs.routes import CONNECT_FAILURE, REFUSED_STREAM, RESET

TRANSPARENT = 2  # never-received retries per call, policy or not
PUSHBACK = b"grpc-retry-pushback-ms"


class Kind(enum.Enum):
    STATUS = "status"  # the endpoint answered with a gRPC status (no response headers)
    RESET = "reset"  # RST_STREAM, or the connection dropped, before response headers
    REFUSED = "refused-stream"  # REFUSED_STREAM or GOAWAY above the stream: never processed
    CONNECT = "connect-failure"  # no connection could be opened: never sent
    PER_TRY_TIMEOUT = "per-try-timeout"  # the proxy cancelled a slow attempt


_CONDITION = {Kind.RESET: RESET, Kind.REFUSED: REFUSED_STREAM, Kind.CONNECT: CONNECT_FAILURE}
NO_RETRY = -1.0  # a pushback that forbids retrying


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    message: str
    status: int | None = None  # the gRPC status of a STATUS failure
    pushback: float | None = None  # seconds asked by the server, NO_RETRY, or None

    @property
    def never_received(self) -> bool:
        return self.kind is Kind.REFUSED or self.kind is Kind.CONNECT


def pushback_of(headers) -> float | None:
    """`grpc-retry-pushback-ms` in seconds; NO_RETRY when negative or malformed; None when absent."""
    for name, value in headers:
        if name == PUSHBACK:
            text = value.strip()
            return int(text) / 1000.0 if text.isdigit() else NO_RETRY
    return None


class RetryState:
    """One call's retries so far, and the decision for its next failure."""

    __slots__ = ("policy", "transparent", "retries")

    def __init__(self, policy: RetrySpec | None) -> None:
        self.policy = policy
        self.transparent = 0
        self.retries = 0

    def decide(self, failure: Failure, rng: random_module.Random) -> tuple[float, bool] | None:
        """(seconds to wait, whether it is a transparent retry) for the next attempt,
        or None: do not retry. Counts the retry it allows."""
        if failure.pushback == NO_RETRY:
            return None
        if failure.never_received and self.transparent < TRANSPARENT:
            self.transparent += 1
            return 0.0, True
        policy = self.policy
        if policy is None or self.retries >= policy.num_retries or not self._covers(policy, failure):
            return None
        self.retries += 1
        if failure.pushback is not None:
            return failure.pushback, False
        return min(policy.max_interval, policy.base_interval * 2 ** (self.retries - 1)) * rng.random(), False

    @staticmethod
    def _covers(policy: RetrySpec, failure: Failure) -> bool:
        kind = failure.kind
        if kind is Kind.STATUS:
            return failure.status in policy.codes
        if kind is Kind.PER_TRY_TIMEOUT:
            return True
        return _CONDITION[kind] in policy.conditions

    @property
    def attempts(self) -> int:
        """Attempts made so far beyond the first."""
        return self.transparent + self.retries

    def __repr__(self) -> str:
        return f"<RetryState transparent={self.transparent} retries={self.retries}>"
