"""Control-plane scale: N simulated proxies subscribed, clusters holding E
endpoints in all; one change applied through the management API; how long until
every stream ACKed it, and what the control plane spent (CPU, peak memory).
Also the proxy's memory with 1,000 endpoints configured."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import grpc

from bench import mesh, procstat
from meshapi.v1 import management_pb2, management_pb2_grpc
from meshgrpc.config import resources
from meshgrpc.config.loader import parse_document
from tests.support.procs import poll_until


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class SimulatedFleet:
    """Client processes holding `streams` discovery streams between them."""

    def __init__(self, target: str, streams: int, processes: int) -> None:
        shares = [streams // processes + (i < streams % processes) for i in range(processes)]
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.xds_load", "--target", target, "--streams", str(n), "--prefix", f"sim{i}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i, n in enumerate(shares) if n]

    def wait_ready(self) -> int:
        return sum(json.loads(p.stdout.readline())["ready"] for p in self.procs)

    def ack_times(self, type_url: str, version: str) -> tuple[list[float], int]:
        for p in self.procs:
            p.stdin.write(f"wait {type_url} {version}\n")
            p.stdin.flush()
        acks, missing = [], 0
        for p in self.procs:
            answer = json.loads(p.stdout.readline())
            acks += answer["acks"]
            missing += answer["missing"]
        return acks, missing

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _apply(stub, doc: dict) -> tuple[float, management_pb2.ApplyResponse]:
    request = management_pb2.ApplyRequest(config=parse_document(doc))
    start = time.monotonic()
    return start, stub.Apply(request, timeout=30)


def control_plane_scale(workdir: str, streams: int, clusters: int, per_cluster: int, processes: int) -> dict:
    doc = mesh.many_endpoints_mesh(clusters, per_cluster)
    cp, address = mesh.start_control_plane(mesh.write_config(doc, os.path.join(workdir, "scale.json")),
                                           os.path.join(workdir, "scale-data"))
    fleet = SimulatedFleet(address, streams, processes)
    try:
        t0 = time.monotonic()
        ready = fleet.wait_ready()
        result = {"streams": streams, "endpoints": clusters * per_cluster, "clusters": clusters,
                  "client_processes": processes, "streams_ready": ready,
                  "initial_sync_s": round(time.monotonic() - t0, 3)}
        with grpc.insecure_channel(address) as channel:
            stub = management_pb2_grpc.ManagementStub(channel)
            changed = {"cluster": "svc-000", "endpoints": doc["endpoints"][0]["endpoints"] + [{"address": "127.0.9.9:9999"}]}
            result["endpoint_change"] = _measure(cp.pid, fleet, stub, {"endpoints": [changed]}, resources.ENDPOINTS)
            route = json.loads(json.dumps(doc["routes"][0]))
            route["virtual_hosts"][0]["routes"][0]["route"]["timeout"] = "3s"
            result["route_change"] = _measure(cp.pid, fleet, stub, {"routes": [route]}, resources.ROUTES)
        result["control_plane_memory_kib"] = procstat.memory_kib(cp.pid)
        return result
    finally:
        fleet.stop()
        cp.stop()


def _measure(cp_pid: int, fleet: SimulatedFleet, stub, doc: dict, type_url: str) -> dict:
    cpu = procstat.cpu_seconds(cp_pid)
    start, response = _apply(stub, doc)
    acks, missing = fleet.ack_times(type_url, response.versions[type_url])
    delays = [t - start for t in acks]
    out = {"version": response.versions[type_url], "acked": len(acks), "missing": missing,
           "control_plane_cpu_s": round(procstat.cpu_seconds(cp_pid) - cpu, 3)}
    if delays:
        out.update(p50_s=round(statistics.median(delays), 4), p99_s=round(percentile(delays, 0.99), 4),
                   max_s=round(max(delays), 4))
    return out


def proxy_memory(workdir: str, clusters: int = 10, per_cluster: int = 100) -> dict:
    """RSS of a proxy holding `clusters` x `per_cluster` endpoints."""
    doc = mesh.many_endpoints_mesh(clusters, per_cluster)
    cp, address = mesh.start_control_plane(mesh.write_config(doc, os.path.join(workdir, "mem.json")),
                                           os.path.join(workdir, "mem-data"))
    try:
        proxy, _, admin = mesh.start_proxy(address, node_id="bench-memory")
        try:
            def endpoints() -> int:
                data = json.loads(mesh.admin_get(admin, "/clusters")[1])
                return sum(len(c["endpoints"]) for c in data["clusters"])
            poll_until(lambda: endpoints() == clusters * per_cluster, 30, "proxy never held every endpoint")
            return {"endpoints": clusters * per_cluster, **procstat.memory_kib(proxy.pid)}
        finally:
            proxy.stop()
    finally:
        cp.stop()
