"""The ORCA names meshgrpc's two sides agree on: the backend helper (meshgrpc.orca)
writes them, the proxy (meshgrpc.proxy.load_reports) reads them. No grpc import, so
the proxy can use it whatever carries its gRPC calls.

ORCA is xDS's Open Request Cost Aggregation (gRFC A51): a backend reports its load as
an `xds.data.orca.v3.OrcaLoadReport`, per call in the `endpoint-load-metrics-bin`
trailer (binary metadata: base64 on the HTTP/2 wire) and out of band on the
`OpenRcaService/StreamCoreMetrics` stream. gRFC A51 leaves named metrics to the
application; meshgrpc's helper reports two that PREQUAL reads.
"""

TRAILER = "endpoint-load-metrics-bin"
STREAM_METHOD = "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics"
SERVICE = "xds.service.orca.v3.OpenRcaService"

RIF = "rif"  # named metric: calls in flight at the backend when the report was made
LATENCY_MS = "latency_ms"  # named metric: the latency a call arriving now may expect, ms (Prequal's estimate)
