"""Fault injection (Envoy's fault filter, gRFC A33): delay or abort a share of a
route's calls, optionally only those carrying a gate header.

`FaultInjector.decide(headers)` runs once per call and draws from the proxy's
random source (seeded in tests, so a run of calls is reproducible). Aborts answer
gRPC calls with a gRPC status and plain HTTP calls with an HTTP status; each kind
maps to the other per gRPC's HTTP-to-gRPC status mapping (grpc/grpc
doc/http-grpc-status-mapping.md) when only the other is configured.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from meshgrpc.config.specs import FaultSpec

# doc/http-grpc-status-mapping.md: HTTP status -> gRPC status.
_GRPC_FOR_HTTP = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
_UNKNOWN = 2
# The other way, for plain HTTP calls aborted with a gRPC status.
_HTTP_FOR_GRPC = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409,
                  11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}


@dataclasses.dataclass(frozen=True, slots=True)
class Abort:
    grpc_status: int
    http_status: int


class FaultInjector:
    """One route's faults. Counts what it injected (metrics)."""

    __slots__ = ("spec", "_random", "_gate", "_abort", "delays", "aborts")

    def __init__(self, spec: FaultSpec, random: Callable[[], float]) -> None:
        self.spec = spec
        self._random = random
        self._gate = spec.header_gate.encode() if spec.header_gate else None
        self._abort = _abort_of(spec)
        self.delays = self.aborts = 0

    def decide(self, headers) -> tuple[float | None, Abort | None]:
        """(delay in seconds or None, abort or None) for one call."""
        if self._gate is not None and not any(name == self._gate for name, _ in headers):
            return None, None
        spec = self.spec
        if self._abort is not None and self._random() * 100.0 < spec.abort_percent:
            self.aborts += 1
            return None, self._abort
        if spec.delay is not None and self._random() * 100.0 < spec.delay_percent:
            self.delays += 1
            return spec.delay, None
        return None, None

    def __repr__(self) -> str:
        return f"<FaultInjector delays={self.delays} aborts={self.aborts}>"


def _abort_of(spec: FaultSpec) -> Abort | None:
    if spec.abort_grpc_status is not None:
        return Abort(spec.abort_grpc_status, _HTTP_FOR_GRPC.get(spec.abort_grpc_status, 500))
    if spec.abort_http_status is not None:
        return Abort(_GRPC_FOR_HTTP.get(spec.abort_http_status, _UNKNOWN), spec.abort_http_status)
    return None
