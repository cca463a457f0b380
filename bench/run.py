"""`python -m bench.run [--quick]` (what `make bench` runs): the whole benchmark.

1. Data path (bench/datapath.py), in interleaved rounds: unary gRPC calls
   (h2load, 100-byte payloads) at 64 in flight over one connection and over 8,
   and at 1 in flight; sequential calls from a real grpcio client; one
   bidirectional stream; against direct, meshgrpc, meshgrpc with 2 workers (over
   8 connections), and the C proxies users would pick instead: nghttpx, haproxy
   and nginx (bench/paths.py), each call accounted for. Then the proxyless path
   (bench/proxyless.py): the same grpcio client on direct, sidecar and
   `xds:///echo.mesh`, in interleaved rounds of its own.
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
import subprocess
import sys
import tempfile

from bench import access_log_cost, datapath, load, mtls, profile, proxyless, report, scale
from bench.paths import COMPARISONS, Paths

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (about a minute) to check the harness")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 2)")
    ap.add_argument("--seconds", type=float, help="per path per round at 64 in flight (default 5; --quick 1.5)")
    ap.add_argument("--latency-seconds", type=float, help="per path per round at 1 in flight (default 3; --quick 1)")
    ap.add_argument("--stream-seconds", type=float, help="bidi stream per path per round (default 2; --quick 1)")
    ap.add_argument("--in-flight", type=int, default=64,
                    help=f"calls in flight, over 1 connection and over {datapath.CONNECTIONS} (default 64)")
    ap.add_argument("--workers", type=int, default=2,
                    help="proxy workers compared with one, over several connections (default 2)")
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
                    choices=["nginx", "nghttpx", "haproxy", "workers", "scale", "profile", "proxyless", "replicated",
                             "mtls"])
    ap.add_argument("--out", default=RESULTS)
    a = ap.parse_args(argv)
    if a.in_flight % datapath.CONNECTIONS:
        ap.error(f"--in-flight must be a multiple of {datapath.CONNECTIONS} (it is spread over that many connections)")
    if a.workers < 2:
        ap.error("--workers must be at least 2 (one worker is the meshgrpc path itself)")
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


def profile_proxy(paths: Paths, args: argparse.Namespace) -> dict:
    if "profile" in args.skip:
        return {"error": "--skip profile"}
    if profile.py_spy() is None:
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    raw = os.path.join(paths.workdir, "proxy.pyspy.txt")
    recorder = profile.start_recording(paths.proxy.pid, args.profile_seconds, raw)
    load.h2load(paths.paths["meshgrpc"].target, args.in_flight, seconds=args.profile_seconds + 1, workdir=paths.workdir)
    output = recorder.communicate(timeout=60)[0]
    if recorder.returncode != 0 or not os.path.exists(raw):
        return {"error": f"py-spy failed: {output.strip()[-300:]}"}
    return {"seconds": args.profile_seconds, **profile.top_frames(raw)}


def environment() -> dict:
    def run(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return out.stdout.strip() or out.stderr.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    versions = {kind.name: kind.version(binary) for kind in COMPARISONS if (binary := kind.binary())}
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "h2load": run(["h2load", "--version"]), "comparisons": versions,
            "load_average": os.getloadavg(),
            "commit": run(["git", "-C", os.path.dirname(RESULTS), "rev-parse", "--short", "HEAD"])}


def _data_path(paths: Paths, args: argparse.Namespace, checks: datapath.Checks, result: dict) -> None:
    for name, why in paths.skipped.items():
        print(f"{name} comparison skipped: {why}", flush=True)
    rounds = datapath.run(paths, args, checks)
    result["paths"] = datapath.summarise(rounds)
    workers = next((name for name, p in paths.paths.items() if p.only_8_connections), None)
    if workers:
        result["workers"] = datapath.workers(rounds, workers, args.workers, os.cpu_count())
    for path in paths.paths.values():
        checks.sample(path, load.sample_statuses(path.target, 200))
        if path.memory_kib:  # after the load: what each proxy holds once it has served it
            result["paths"][path.name]["memory_kib"] = path.memory_kib()
    result["skipped"] = paths.skipped
    result["checks"] = checks.summary(200)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if shutil.which("h2load") is None:
        print("bench: h2load is missing: apt-get install nghttp2-client (make bench does it as root)", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = {"timestamp": stamp, "environment": environment(),
              "config": {"rounds": args.rounds, "seconds": args.seconds, "latency_seconds": args.latency_seconds,
                         "stream_seconds": args.stream_seconds, "in_flight": args.in_flight,
                         "connections": datapath.CONNECTIONS, "workers": args.workers,
                         "payload": len(load.PAYLOAD), "quick": args.quick}}
    with tempfile.TemporaryDirectory(prefix="meshgrpc-bench-") as workdir:
        checks = datapath.Checks()
        paths = Paths(workdir, args)
        try:
            _data_path(paths, args, checks, result)
            if "proxyless" not in args.skip:
                result["proxyless"] = proxyless.compare(
                    {"direct": paths.backend, "sidecar": paths.paths["meshgrpc"].target}, paths.cp_address, workdir,
                    args.proxyless_rounds, args.in_flight, args.proxyless_seconds,
                    latency_calls=500 if args.quick else 2000)
            if "mtls" not in args.skip:
                print("mTLS between proxies beside plaintext", flush=True)
                result["mtls"] = mtls.compare(workdir, args.rounds, args.seconds, args.latency_seconds,
                                              args.in_flight)
            print("profiling the proxy with py-spy", flush=True)
            result["profile"] = profile_proxy(paths, args)
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
