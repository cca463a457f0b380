"""`python -m bench.run [--quick]` (what `make bench` runs): the whole benchmark.

1. Data path, in interleaved rounds so machine noise hits every path alike
   (the path order rotates each round): the same unary gRPC load (h2load, one
   connection, 100-byte payloads) at 64 in flight and at 1 in flight, sequential
   calls from a real grpcio client (the latency users see: h2load's per-request
   time leaves out the client's gRPC work and sends fewer frames per call), and
   one bidirectional stream (grpc.aio), against
     direct    h2load -> grpc.aio echo backend
     meshgrpc  h2load -> meshgrpc proxy (configured by a real control plane) -> backend
     nginx     h2load -> nginx grpc_pass (keepalive >= in flight) -> backend
   Each h2load run makes an exact number of calls, so every call is accounted
   for: h2load's successes, the backend's count of calls it answered and, for the
   proxy, its /metrics count of grpc_status="0" must all agree.
   Then the proxyless path (bench/proxyless.py): the same grpcio client on
   direct, sidecar and `xds:///echo.mesh`, in interleaved rounds of its own.
   Then mTLS between proxies beside plaintext (bench/mtls.py): two chains of
   two proxies, interleaved, and what mTLS costs per call and per connection.
2. The proxy profiled with py-spy under the 64-in-flight load.
3. Control plane at scale (simulated proxies, 10,000 endpoints, one change) and
   the proxy's memory with 1,000 endpoints; the access log's cost per call
   (bench/access_log_cost.py: sample 1.0, the loop's share and the writer's).
4. The replicated control plane (bench/scale.py, also `python -m bench.scale`):
   10,000 scoped delta proxies over 3 replicas on a 3-member etcd, 100,000
   endpoints in 1,000 clusters; one endpoint change and one route change.
Results: bench/results/<timestamp>.json, bench/results/results.md, a PNG chart.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

import grpc

from bench import access_log_cost, load, mesh, mtls, procstat, profile, proxyless, report, scale
from bench.nginx import Nginx, available as nginx_binary
from tests.support.procs import Proc

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (about a minute) to check the harness")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 2)")
    ap.add_argument("--seconds", type=float, help="per path per round at 64 in flight (default 5; --quick 1.5)")
    ap.add_argument("--latency-seconds", type=float, help="per path per round at 1 in flight (default 3; --quick 1)")
    ap.add_argument("--stream-seconds", type=float, help="bidi stream per path per round (default 2; --quick 1)")
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--streams", type=int, help="simulated proxies (default 1000; --quick 200)")
    ap.add_argument("--endpoints", type=int, help="endpoints in all, 100 per cluster (default 10000; --quick 2000)")
    ap.add_argument("--scale-processes", type=int, default=2, help="processes holding the simulated proxies")
    ap.add_argument("--profile-seconds", type=float, help="py-spy recording (default 8; --quick 3)")
    ap.add_argument("--proxyless-seconds", type=float, help="grpcio load per path per round (default 2; --quick 1)")
    ap.add_argument("--proxyless-rounds", type=int,
                    help="interleaved rounds of the proxyless comparison (default 9; --quick 2): its client-bound "
                         "runs are short, and more of them keep a busy machine's bursts out of the median")
    ap.add_argument("--replicated-proxies", type=int,
                    help="scoped delta proxies over 3 replicas on etcd (default 10000; --quick 1000)")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["nginx", "scale", "profile", "proxyless", "replicated", "mtls"])
    ap.add_argument("--out", default=RESULTS)
    a = ap.parse_args(argv)
    quick = {"rounds": 2, "seconds": 1.5, "latency_seconds": 1, "stream_seconds": 1, "streams": 200,
             "endpoints": 2000, "profile_seconds": 3, "proxyless_seconds": 1,
             "proxyless_rounds": 2, "replicated_proxies": 1000}
    full = {"rounds": 5, "seconds": 5, "latency_seconds": 3, "stream_seconds": 2, "streams": 1000,
            "endpoints": 10000, "profile_seconds": 8, "proxyless_seconds": 2,
            "proxyless_rounds": 9, "replicated_proxies": 10000}
    for key, value in (quick if a.quick else full).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    return a


class Paths:
    """The processes under test and how to read their CPU."""

    def __init__(self, workdir: str, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.procs: list = []
        self.skipped: dict[str, str] = {}
        self.backend_proc = self._own(Proc([sys.executable, "-m", "bench.echo_backend"]))
        self.backend = self.backend_proc.address("backend")
        config = mesh.write_config(proxyless.with_listener(mesh.echo_mesh(self.backend)),
                                   os.path.join(workdir, "mesh.json"))
        self.cp, cp_address = mesh.start_control_plane(config, os.path.join(workdir, "data"))
        self.cp_address = cp_address
        self._own(self.cp)
        self.proxy, proxy_address, self.admin = mesh.start_proxy(cp_address)
        self._own(self.proxy)
        self.targets = {"direct": self.backend, "meshgrpc": proxy_address}
        self.cpu = {"meshgrpc": lambda: procstat.cpu_seconds(self.proxy.pid)}
        self._start_nginx(args)

    def _own(self, proc):
        self.procs.append(proc)
        return proc

    def _start_nginx(self, args) -> None:
        binary = nginx_binary()
        if "nginx" in args.skip:
            self.skipped["nginx"] = "--skip nginx"
        elif binary is None:
            self.skipped["nginx"] = "nginx is not installed (apt-get install nginx)"
        else:
            nginx = self._own(Nginx(binary, os.path.join(self.workdir, "nginx"), self.backend,
                                    keepalive=max(256, 2 * args.in_flight)))
            nginx.wait_ready()
            self.targets["nginx"] = nginx.address
            self.cpu["nginx"] = lambda: procstat.tree_cpu_seconds(nginx.pid)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # front to back: proxies before what they call
            proc.stop()


class Checks:
    """Accounts for every call: what the load generator, the backend and the proxy counted."""

    def __init__(self) -> None:
        self.calls = 0
        self.problems: list[str] = []

    def account(self, label: str, expected: int, result: load.H2loadResult, backend_delta: int,
                proxy_delta: dict[str, int] | None) -> None:
        self.calls += expected
        if (result.succeeded, result.failed, result.errored) != (expected, 0, 0):
            self.problems.append(f"{label}: h2load {result.succeeded} succeeded, {result.failed} failed, "
                                 f"{result.errored} errored of {expected}")
        if backend_delta != expected:
            self.problems.append(f"{label}: the backend answered {backend_delta} calls, expected {expected}")
        if proxy_delta is not None and proxy_delta != {"0": expected}:
            self.problems.append(f"{label}: the proxy's grpc_status counts {proxy_delta}, expected {{'0': {expected}}}")

    def sample(self, label: str, statuses: dict[str, int]) -> None:
        if set(statuses) != {"OK"}:
            self.problems.append(f"{label}: grpc client sample ended with {statuses}")

    def summary(self, samples: int) -> dict:
        text = (f"{self.calls} h2load calls: h2load's successes, the backend's answered-call count and the proxy's "
                f"/metrics grpc_status=\"0\" count agree for every run; plus a grpc.aio client sample of "
                f"{samples} calls per path, checked for status OK and the echoed payload.")
        # nginx is a yardstick, not the product: its failures are reported but do not fail the run.
        ours = [p for p in self.problems if "nginx" not in p]
        if ours:
            text = f"{len(ours)} problem(s) on direct or meshgrpc (below)"
        elif self.problems:
            text += f" The nginx comparison had {len(self.problems)} problem(s) of its own (below)."
        return {"ok": not ours, "calls": self.calls, "problems": self.problems, "summary": text}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)}


def _unary(paths: Paths, checks: Checks, name: str, in_flight: int, calls: int, label: str,
           keep_latencies: bool = False) -> tuple[load.H2loadResult, float | None, float]:
    """One exact-count h2load run; returns the result, proxy CPU/call (µs) and backend CPU/call (µs)."""
    target = paths.targets[name]
    backend_before, backend_cpu = load.backend_count(paths.backend), procstat.cpu_seconds(paths.backend_proc.pid)
    proxy_before = mesh.proxy_calls_by_status(paths.admin) if name == "meshgrpc" else None
    cpu = paths.cpu.get(name)
    cpu_before = cpu() if cpu else None
    result = load.h2load(target, in_flight, calls=calls, keep_latencies=keep_latencies, workdir=paths.workdir)
    cpu_us = (cpu() - cpu_before) / max(1, result.succeeded) * 1e6 if cpu else None
    backend_us = (procstat.cpu_seconds(paths.backend_proc.pid) - backend_cpu) / max(1, result.succeeded) * 1e6
    proxy_delta = _delta(mesh.proxy_calls_by_status(paths.admin), proxy_before) if proxy_before is not None else None
    checks.account(f"{label} {name}", calls, result, load.backend_count(paths.backend) - backend_before, proxy_delta)
    return result, cpu_us, backend_us


def _percentiles_ms(latencies_us: list[int]) -> dict[str, float]:
    return {str(q): scale.percentile(latencies_us, q / 100) / 1000 for q in report.PERCENTILES}


def data_path(paths: Paths, args: argparse.Namespace, checks: Checks) -> dict:
    names = list(paths.targets)
    rate64, rate1 = {}, {}
    for name in names:  # warm-up, which also sizes each run's call count
        rate64[name] = load.h2load(paths.targets[name], args.in_flight, seconds=1, workdir=paths.workdir).rate
        rate1[name] = load.h2load(paths.targets[name], 1, seconds=1, workdir=paths.workdir).rate
    clients = {name: load.GrpcLatency(paths.targets[name]) for name in names}
    try:
        rounds = []
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            print(f"round {r + 1}/{args.rounds}: {' '.join(order)}", flush=True)
            rounds.append({name: _one_path(paths, args, checks, name, rate64, rate1, clients[name], f"round {r + 1}")
                           for name in order})
    finally:
        for client in clients.values():
            client.close()
    return _summarise(rounds, names)


def _grpc_latency(client: load.GrpcLatency, seconds: float) -> dict:
    """p50/p99 (ms) of sequential grpcio calls, about `seconds` worth."""
    lat = client.latencies_us(max(200, int(client.rate * seconds)))
    client.rate = len(lat) / (sum(lat) / 1e6)
    return {"grpc_p50_ms": statistics.median(lat) / 1000, "grpc_p99_ms": scale.percentile(lat, 0.99) / 1000}


def _one_path(paths, args, checks, name, rate64, rate1, client, label) -> dict:
    calls = max(100, int(rate64[name] * args.seconds))
    tput, cpu_us, backend_us = _unary(paths, checks, name, args.in_flight, calls, f"{label} @{args.in_flight}")
    rate64[name] = tput.rate
    calls1 = max(50, int(rate1[name] * args.latency_seconds))
    lat, _, _ = _unary(paths, checks, name, 1, calls1, f"{label} @1", keep_latencies=True)
    rate1[name] = lat.rate
    grpc_lat = _grpc_latency(client, args.latency_seconds)
    stream = _stream(paths.targets[name], args.stream_seconds, checks, f"{label} stream {name}")
    out = {"calls_per_s": tput.rate, "calls": calls, "cpu_us_per_call": cpu_us, "backend_cpu_us_per_call": backend_us,
           "p50_ms": statistics.median(lat.latencies_us) / 1000, "p99_ms": scale.percentile(lat.latencies_us, 0.99) / 1000,
           "latencies_us": lat.latencies_us, "stream_msgs_per_s": stream, **grpc_lat}
    print(f"  {name:9s} {tput.rate:8.0f} calls/s  p50 {out['p50_ms']:.3f} ms  p99 {out['p99_ms']:.3f} ms  "
          f"grpc p50 {out['grpc_p50_ms']:.3f} ms  "
          f"cpu {'' if cpu_us is None else f'{cpu_us:.0f} µs/call'}  stream {stream or 0:.0f} msgs/s", flush=True)
    return out


def _stream(target: str, seconds: float, checks: Checks, label: str) -> float | None:
    """Messages/s through one bidi stream; a stream that fails is retried once and reported."""
    for attempt in (1, 2):
        try:
            return load.stream_rate(target, seconds)
        except grpc.aio.AioRpcError as e:
            checks.problems.append(f"{label} (attempt {attempt}): {e.code().name}: {e.details()}")
    return None


def _summarise(rounds: list[dict], names: list[str]) -> dict:
    med = lambda name, key: statistics.median(r[name][key] for r in rounds)  # noqa: E731
    out = {}
    for name in names:
        pooled = [x for r in rounds for x in r[name]["latencies_us"]]
        p = {"calls_per_s": med(name, "calls_per_s"), "p50_ms": med(name, "p50_ms"), "p99_ms": med(name, "p99_ms"),
             "grpc_p50_ms": med(name, "grpc_p50_ms"), "grpc_p99_ms": med(name, "grpc_p99_ms"),
             "stream_msgs_per_s": statistics.median([r[name]["stream_msgs_per_s"] or 0.0 for r in rounds]),
             "backend_cpu_us_per_call": med(name, "backend_cpu_us_per_call"),
             "cpu_us_per_call": med(name, "cpu_us_per_call") if rounds[0][name]["cpu_us_per_call"] is not None else None,
             "percentiles_ms": _percentiles_ms(pooled),
             "rounds": [{k: v for k, v in r[name].items() if k != "latencies_us"} for r in rounds]}
        if name != "direct":
            p["ratio"] = statistics.median(r[name]["calls_per_s"] / r["direct"]["calls_per_s"] for r in rounds)
            p["added_p50_ms"] = statistics.median(r[name]["p50_ms"] - r["direct"]["p50_ms"] for r in rounds)
            p["added_p99_ms"] = statistics.median(r[name]["p99_ms"] - r["direct"]["p99_ms"] for r in rounds)
            p["grpc_added_p50_ms"] = statistics.median(r[name]["grpc_p50_ms"] - r["direct"]["grpc_p50_ms"]
                                                       for r in rounds)
        else:
            p["ratio"] = 1.0
        out[name] = p
    return out


def profile_proxy(paths: Paths, args: argparse.Namespace) -> dict:
    if "profile" in args.skip:
        return {"error": "--skip profile"}
    if profile.py_spy() is None:
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    raw = os.path.join(paths.workdir, "proxy.pyspy.txt")
    recorder = profile.start_recording(paths.proxy.pid, args.profile_seconds, raw)
    load.h2load(paths.targets["meshgrpc"], args.in_flight, seconds=args.profile_seconds + 1, workdir=paths.workdir)
    output = recorder.communicate(timeout=60)[0]
    if recorder.returncode != 0 or not os.path.exists(raw):
        return {"error": f"py-spy failed: {output.strip()[-300:]}"}
    return {"seconds": args.profile_seconds, **profile.top_frames(raw)}


def environment() -> dict:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or \
                subprocess.run(cmd, capture_output=True, text=True, timeout=10).stderr.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    binary = nginx_binary()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "h2load": run(["h2load", "--version"]), "nginx": run([binary, "-v"]) if binary else None,
            "commit": run(["git", "-C", os.path.dirname(RESULTS), "rev-parse", "--short", "HEAD"])}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if shutil.which("h2load") is None:
        print("bench: h2load is missing: apt-get install nghttp2-client (make bench does it as root)", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = {"timestamp": stamp, "environment": environment(),
              "config": {"rounds": args.rounds, "seconds": args.seconds, "latency_seconds": args.latency_seconds,
                         "stream_seconds": args.stream_seconds, "in_flight": args.in_flight,
                         "payload": len(load.PAYLOAD), "quick": args.quick}}
    with tempfile.TemporaryDirectory(prefix="meshgrpc-bench-") as workdir:
        checks = Checks()
        paths = Paths(workdir, args)
        try:
            result["skipped"] = paths.skipped
            for why in paths.skipped.values():
                print(f"nginx comparison skipped: {why}", flush=True)
            result["paths"] = data_path(paths, args, checks)
            for name, target in paths.targets.items():
                checks.sample(f"sample {name}", load.sample_statuses(target, 200))
            result["checks"] = checks.summary(200)
            if "proxyless" not in args.skip:
                result["proxyless"] = proxyless.compare(
                    {"direct": paths.backend, "sidecar": paths.targets["meshgrpc"]}, paths.cp_address, workdir,
                    args.proxyless_rounds, args.in_flight, args.proxyless_seconds,
                    latency_calls=500 if args.quick else 2000)
            if "mtls" not in args.skip:
                print("mTLS between proxies beside plaintext", flush=True)
                result["mtls"] = mtls.compare(workdir, args.rounds, args.seconds, args.latency_seconds,
                                              args.in_flight)
            print("profiling the proxy with py-spy", flush=True)
            result["profile"] = profile_proxy(paths, args)
            result["proxy_rss_idle_kib"] = procstat.memory_kib(paths.proxy.pid)["VmRSS"]
        finally:
            paths.stop()
        print("access log cost per call", flush=True)
        result["access_log"] = access_log_cost.measure(20_000 if args.quick else 100_000)
        if "scale" not in args.skip:
            print(f"control plane: {args.streams} streams, {args.endpoints} endpoints", flush=True)
            result["proxy_memory"] = scale.proxy_memory(workdir)
            result["control_plane"] = scale.control_plane_scale(
                workdir, args.streams, max(1, args.endpoints // 100), min(100, args.endpoints),
                args.scale_processes)
        if "replicated" not in args.skip:
            print(f"replicated control plane: {args.replicated_proxies} scoped delta proxies", flush=True)
            result["control_plane_replicated"] = scale.replicated_scale(workdir, args.replicated_proxies)
    written = report.write(result, args.out)
    print(open(written["markdown"]).read())
    print(f"written: {written['json']}, {written['markdown']}, {written['chart']}")
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
