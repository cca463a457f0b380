"""Side-by-side A/B of two versions of the proxy (not a test, not part of `make bench`).

    git worktree add /tmp/baseline HEAD
    .venv/bin/python -m bench.relay_ab --a /tmp/baseline [--b .] [--rounds 5]

Starts one grpc.aio echo backend and one control plane (both from this tree), then
a real `meshgrpc proxy` from each tree (PYTHONPATH and cwd set to the tree), all
driven by the same config. Each round runs, in a rotating order, the same h2load
loads against direct, A and B:
  - throughput: `-c C -m M`, a fixed number of calls (so every call completes);
  - latency: 1 in flight, a fixed number of calls, p50/p99 from h2load's log.
Per path it reports medians over rounds of calls/s, the ratio to direct (ratios
are taken per round, then the median), CPU per call of the proxy, the backend and
h2load itself, and p50 at 1 in flight with the p50 added to direct's.

`--pin` runs h2load with `taskset -c 0` and the servers on CPU 1 (to see what the
load generator's CPU costs the others); `--py-spy SECONDS` records B's proxy
under the throughput load afterwards and prints its top frames.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from bench import load, mesh, procstat
from tests.support.procs import Proc

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _h2load(target: str, conns: int, in_flight: int, calls: int, pin: bool, log_file: str | None):
    body = os.path.join(tempfile.gettempdir(), "relay_ab.grpc")
    with open(body, "wb") as f:
        f.write(load.grpc_frame(load.PAYLOAD))
    args = ["h2load", f"http://{target}{load.UNARY}", "-c", str(conns), "-m", str(in_flight),
            "-n", str(calls), "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if log_file:
        args += ["--log-file", log_file]
    if pin:
        args = ["taskset", "-c", "0"] + args
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = load._parse(out, load._latencies(log_file) if log_file else [])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if res.failed or res.errored or res.succeeded != calls:
        raise RuntimeError(f"h2load against {target}: {out}")
    return res, cpu


def _pct(values, q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _start_proxy(tree: str, cp: str, node: str, pin: bool, extra_env=()) -> tuple[Proc, str]:
    env = {"PYTHONPATH": tree, **dict(kv.split("=", 1) for kv in extra_env)}
    cmd = [sys.executable, "-m", "meshgrpc.cli", "proxy", "--node-id", node, "--control-plane", cp,
           "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    with open(os.path.join(tree, "meshgrpc", "cli.py")) as f:
        if "--insecure" in f.read():   # the control plane here is plaintext; trees from before TLS need no flag
            cmd.append("--insecure")
    if pin:
        cmd = ["taskset", "-c", "1"] + cmd
    proc = Proc(cmd, env=env, cwd=tree)
    listen, admin = proc.address("proxy", timeout=60), proc.address("admin", timeout=60)
    deadline = time.monotonic() + 30
    while mesh.admin_get(admin, "/ready")[0] != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"proxy from {tree} never became ready")
        time.sleep(0.1)
    return proc, listen


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.relay_ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="tree of version A (e.g. a git worktree of HEAD)")
    ap.add_argument("--b", default=HERE, help="tree of version B (default: this one)")
    ap.add_argument("--a-env", action="append", default=[], metavar="K=V", help="environment of A's proxy")
    ap.add_argument("--b-env", action="append", default=[], metavar="K=V", help="environment of B's proxy")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20000, help="calls per throughput run")
    ap.add_argument("--latency-calls", type=int, default=3000)
    ap.add_argument("--conns", type=int, default=1, help="h2load connections (-c)")
    ap.add_argument("--in-flight", type=int, default=64, help="streams per connection (-m)")
    ap.add_argument("--pin", action="store_true", help="h2load on CPU 0, servers on CPU 1")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--py-spy", type=float, default=0, metavar="SECONDS")
    return ap.parse_args()


def main() -> None:
    a = _args()
    work = tempfile.mkdtemp(prefix="relay_ab-")
    procs = []
    pin = ["taskset", "-c", "1"] if a.pin else []
    try:
        backend = Proc(pin + [sys.executable, "-m", "bench.echo_backend"])
        procs.append(backend)
        direct = backend.address("backend")
        config = mesh.write_config(mesh.echo_mesh(direct), os.path.join(work, "mesh.json"))
        cp, cp_address = mesh.start_control_plane(config, os.path.join(work, "data"))
        procs.append(cp)
        pa, ta = _start_proxy(os.path.abspath(a.a), cp_address, "ab-a", a.pin, a.a_env)
        procs.append(pa)
        pb, tb = _start_proxy(os.path.abspath(a.b), cp_address, "ab-b", a.pin, a.b_env)
        procs.append(pb)
        paths = {"direct": (direct, None), "A": (ta, pa.pid), "B": (tb, pb.pid)}
        for target, _ in paths.values():  # warm up connections, caches, the JIT-less interpreter
            _h2load(target, a.conns, a.in_flight, 2000, a.pin, None)
        rows = {name: {"rate": [], "ratio": [], "proxy": [], "backend": [], "h2load": [], "p50": [],
                       "p99": [], "added": []} for name in paths}
        order = list(paths)
        for r in range(a.rounds):
            rot = order[r % 3:] + order[:r % 3]
            direct_rate = direct_p50 = None
            results = {}
            for name in rot:
                target, pid = paths[name]
                b0 = procstat.cpu_seconds(backend.pid)
                p0 = procstat.cpu_seconds(pid) if pid else 0
                try:
                    res, h2cpu = _h2load(target, a.conns, a.in_flight, a.calls, a.pin, None)
                except RuntimeError as e:
                    raise RuntimeError(f"round {r + 1}, path {name}: {e}") from None
                n = res.succeeded
                row = {"rate": res.rate, "backend": (procstat.cpu_seconds(backend.pid) - b0) / n * 1e6,
                       "proxy": ((procstat.cpu_seconds(pid) - p0) / n * 1e6) if pid else 0.0,
                       "h2load": h2cpu / n * 1e6}
                if not a.no_latency:
                    lres, _ = _h2load(target, 1, 1, a.latency_calls, a.pin, os.path.join(work, "lat.log"))
                    lat = [x / 1000 for x in lres.latencies_us]
                    row["p50"], row["p99"] = _pct(lat, 0.5), _pct(lat, 0.99)
                results[name] = row
            for name, row in results.items():
                for k, v in row.items():
                    rows[name][k].append(v)
                rows[name]["ratio"].append(row["rate"] / results["direct"]["rate"])
                if "p50" in row:
                    rows[name]["added"].append(row["p50"] - results["direct"]["p50"])
            print(f"round {r + 1}: " + "  ".join(f"{n} {results[n]['rate']:.0f}/s" for n in order), flush=True)
        _report(a, rows)
        if a.py_spy:
            _profile(pb.pid, tb, a)
    finally:
        for p in reversed(procs):
            p.stop()


def _report(a, rows) -> None:
    med = statistics.median
    print(f"\nh2load -c {a.conns} -m {a.in_flight}, {a.calls} calls/run, {a.rounds} interleaved rounds, "
          f"medians{' (pinned: h2load cpu0, servers cpu1)' if a.pin else ''}")
    print(f"{'path':7} {'calls/s':>8} {'vs direct':>9} {'proxy µs':>9} {'backend µs':>10} {'h2load µs':>9} "
          f"{'p50@1 ms':>9} {'added ms':>9} {'p99@1 ms':>9}")
    for name, r in rows.items():
        lat = (f"{med(r['p50']):9.3f} {med(r['added']):9.3f} {med(r['p99']):9.3f}" if r["p50"] else "")
        print(f"{name:7} {med(r['rate']):8.0f} {med(r['ratio']):8.2f}x {med(r['proxy']):9.0f} "
              f"{med(r['backend']):10.0f} {med(r['h2load']):9.1f} {lat}")
    ab = [b / x for b, x in zip(rows["B"]["rate"], rows["A"]["rate"])]
    print(f"B/A calls/s per round: {[round(x, 2) for x in ab]} median {med(ab):.2f}")


def _profile(pid: int, target: str, a) -> None:
    out = os.path.join(tempfile.gettempdir(), "relay_ab.pyspy.txt")
    spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "-r", "500",
                            "-d", str(int(a.py_spy)), "-f", "raw", "-o", out, "-p", str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + a.py_spy
    while time.monotonic() < deadline:
        _h2load(target, a.conns, a.in_flight, a.calls // 4, a.pin, None)
    spy.wait(60)
    print(f"py-spy raw stacks: {out}")


if __name__ == "__main__":
    main()
