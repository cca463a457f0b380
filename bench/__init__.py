"""meshgrpc's benchmark harness: `python -m bench.run` (what `make bench` runs).

Compares direct calls, the meshgrpc proxy and nginx grpc_pass under the same
load, measures the control plane at scale and the proxy's memory, and writes
bench/results/<timestamp>.json, results.md and a latency chart.
"""
