"""Load reports for meshgrpc's balancers, from a grpcio backend (ORCA, gRFC A51).

    from meshgrpc import orca

    reporter = orca.LoadReporter()
    server = grpc.aio.server(interceptors=[reporter.aio_interceptor()])   # grpc.server: reporter.interceptor()
    reporter.add_service(server)                                          # OpenRcaService/StreamCoreMetrics
    ...
    reporter.set_utilization(0.4)   # optional: the application's own figure, which WEIGHTED_ROUND_ROBIN weighs by

Every call then carries the backend's load in its `endpoint-load-metrics-bin`
trailer, and proxies can subscribe to it out of band or probe it (PREQUAL): calls
in flight (named metric `rif`), the latency a call arriving now may expect
(`latency_ms`, Prequal's estimate by calls in flight),
qps and errors per second, this process's CPU utilization (from /proc) and the
application's utilization when it sets one. See recorder.py for how each is kept.
"""

from __future__ import annotations

from meshgrpc.orca.interceptors import AioServerInterceptor, ServerInterceptor
from meshgrpc.orca.recorder import LoadRecorder
from meshgrpc.orca.service import add_service

__all__ = ["LoadReporter", "LoadRecorder", "ServerInterceptor", "AioServerInterceptor", "add_service"]


class LoadReporter(LoadRecorder):
    """A LoadRecorder with the grpcio pieces that feed and serve it."""

    def interceptor(self) -> ServerInterceptor:
        return ServerInterceptor(self)

    def aio_interceptor(self) -> AioServerInterceptor:
        return AioServerInterceptor(self)

    def add_service(self, server) -> None:
        add_service(server, self)
