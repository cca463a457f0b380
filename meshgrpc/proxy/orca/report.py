"""A backend's load report as the proxy acts on it, parsed once at the edge.

A report arrives as the bytes of an `xds.data.orca.v3.OrcaLoadReport`: an OOB stream
message, a probe answer, or the `endpoint-load-metrics-bin` trailer of a call (base64
on the wire, gRPC binary metadata: padded or not). It becomes a frozen `LoadReport`
holding what the balancers read; protobuf stays here.

`take_load_report` is the relay's one call for per-call reports: given a response's
trailers and the endpoint that sent them, it records the report on the endpoint and
returns the trailers to forward, without the report unless the route keeps it
(RouteAction.keep_load_reports). It costs one pass over the trailers when there is
no report.
"""

from __future__ import annotations

import binascii
import dataclasses
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from xds.data.orca.v3.orca_load_report_pb2 import OrcaLoadReport

from meshgrpc import orca_wire

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState

TRAILER = orca_wire.TRAILER.encode()


@dataclasses.dataclass(frozen=True, slots=True)
class LoadReport:
    """What one report says. Utilizations are fractions (1.0 = fully used; may exceed
    1); rates per second; `rif` and `latency_s` are meshgrpc's named metrics, None when
    the backend does not send them."""

    cpu_utilization: float = 0.0
    application_utilization: float = 0.0
    qps: float = 0.0
    eps: float = 0.0
    rif: float | None = None
    latency_s: float | None = None

    @property
    def utilization(self) -> float:
        """application_utilization when the backend sets it, else cpu_utilization
        (gRFC A58 as amended with A51's application_utilization)."""
        return self.application_utilization if self.application_utilization > 0 else self.cpu_utilization

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def from_message(m: OrcaLoadReport) -> LoadReport:
    named = m.named_metrics
    latency_ms = named.get(orca_wire.LATENCY_MS)
    return LoadReport(
        cpu_utilization=_finite(m.cpu_utilization), application_utilization=_finite(m.application_utilization),
        qps=_finite(m.rps_fractional) or float(m.rps), eps=_finite(m.eps),
        rif=_finite(named[orca_wire.RIF]) if orca_wire.RIF in named else None,
        latency_s=_finite(latency_ms) / 1000.0 if latency_ms is not None else None)


def parse(data: bytes) -> LoadReport | None:
    """The report in serialized OrcaLoadReport `data`, or None when it does not parse."""
    try:
        return from_message(OrcaLoadReport.FromString(data))
    except DecodeError:
        return None


def decode_trailer(value: bytes) -> LoadReport | None:
    """The report in an `endpoint-load-metrics-bin` value (base64, padding optional)."""
    try:
        return parse(binascii.a2b_base64(value + b"=" * (-len(value) % 4), strict_mode=True))
    except binascii.Error:
        return None


def take_load_report(trailers: list, endpoint: EndpointState, keep: bool) -> list:
    """Records the report in `trailers` (a sequence of (name, value) byte pairs) on
    `endpoint`; returns the trailers to send downstream: `trailers` itself when it
    holds no report or `keep` is set, otherwise a copy without the report."""
    for i, (name, value) in enumerate(trailers):
        if name == TRAILER:
            report = decode_trailer(value)
            if report is not None:
                endpoint.on_load_report(report)
            return trailers if keep else [*trailers[:i], *(h for h in trailers[i + 1:] if h[0] != TRAILER)]
    return trailers


def _finite(x: float) -> float:
    """A report's number, with NaN, infinities and negatives (which no load is) as 0."""
    return x if 0.0 <= x < float("inf") else 0.0
