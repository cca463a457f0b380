"""Mutual TLS between proxies beside plaintext, side by side in one run
(`python -m bench.mtls [--rounds 5] [--seconds 5]`; `make bench` runs it too).

Two chains of two proxies each, the same processes and the same hop count, on a
TLS control plane that issues the workload certificates:

    plaintext  h2load -> proxy P (cluster echo-plain)  -> server proxy's outbound listener (h2c) -> echo backend
    mtls       h2load -> proxy M (cluster echo, MUTUAL_TLS) -> server proxy's inbound listener (mTLS,
                                                              authorization judged per call) -> echo backend

h2load makes an exact number of unary calls at 64 in flight (throughput and CPU)
and at 1 in flight (latency), paths interleaved each round, order rotating. CPU
per call is the two proxies' together (/proc), so the difference between the
chains is what mTLS (and the inbound's per-call authorization) costs per call.
Handshakes are counted from the proxies' own one-line-per-connection logs: the
calls multiplex on the few connections the client proxy opens, so the handshake
is paid per connection, and what is left per call is the record encryption of
its bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

from bench import load, mesh, procstat
from tests.support.procs import Proc, meshgrpc, poll_until, run_meshgrpc

PATHS = ("plaintext", "mtls")


def _config(backend: str) -> dict:
    def routes(name: str, cluster: str) -> dict:
        return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"name": cluster, "match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]}
    return {
        "clusters": [{"name": "echo", "lb_policy": "ROUND_ROBIN", "transport": {"mode": "MUTUAL_TLS"}},
                     {"name": "echo-plain", "lb_policy": "ROUND_ROBIN"},
                     {"name": "echo-app", "lb_policy": "ROUND_ROBIN"}],
        "endpoints": [{"cluster": "echo-app", "endpoints": [{"address": backend}]}],
        "routes": [routes("echo", "echo-app"), routes("bench-plain", "echo-plain"), routes("bench-mtls", "echo")],
    }


class Chains:
    """The backend, the control plane and the three proxies (started in that order)."""

    def __init__(self, workdir: str) -> None:
        self.workdir, self.procs = workdir, []
        try:
            self._start()
        except BaseException:
            self.stop()  # what started before the failure
            raise

    def _start(self) -> None:
        workdir = self.workdir
        self.backend_proc = self._own(Proc([sys.executable, "-m", "bench.echo_backend"]))
        self.backend = self.backend_proc.address("backend")
        config = mesh.write_config(_config(self.backend), os.path.join(workdir, "mtls-mesh.json"))
        data = os.path.join(workdir, "mtls-data")
        self.ca_file = os.path.join(data, "ca.pem")
        self.cp = self._own(meshgrpc("control-plane", "--config", config, "--listen", "127.0.0.1:0",
                                     "--listen-mtls", "127.0.0.1:0", "--data-dir", data))
        self.cp_address = self.cp.address("control-plane", 60)
        self.server, _ = self._proxy("echo", "--inbound", "127.0.0.1:0", "--app", self.backend)
        server_outbound = self.server.address("proxy", 60)
        self.inbound = self.server.address("inbound", 60)
        result = run_meshgrpc("apply", "-f", mesh.write_config(
            {"endpoints": [{"cluster": "echo-plain", "endpoints": [{"address": server_outbound}]}]},
            os.path.join(workdir, "mtls-plain.json")), "--control-plane", self.cp_address)
        assert result.returncode == 0, result.stderr
        plain, plain_admin = self._proxy("bench-plain")
        secure, secure_admin = self._proxy("bench-mtls")
        for admin, endpoint in ((plain_admin, server_outbound), (secure_admin, self.inbound)):
            poll_until(lambda: endpoint.encode() in mesh.admin_get(admin, "/config_dump")[1], 30,
                       f"the client proxy has the endpoint {endpoint}")
        self.clients = {"plaintext": plain, "mtls": secure}
        self.targets = {"plaintext": plain.address("proxy", 60), "mtls": secure.address("proxy", 60)}

    def _own(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def _proxy(self, service: str, *extra: str) -> tuple[Proc, str]:
        token = run_meshgrpc("token", "create", "--service", service, "--control-plane", self.cp_address)
        assert token.returncode == 0, token.stderr
        token_file = os.path.join(self.workdir, f"{service}.token")
        with open(token_file, "w") as f:
            f.write(token.stdout.splitlines()[0] + "\n")
        proc = self._own(meshgrpc("proxy", "--node-id", service, "--service", service, "--route-config", service,
                                  "--token-file", token_file, "--ca-file", self.ca_file,
                                  "--control-plane", self.cp_address,
                                  "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", *extra))
        admin = proc.address("admin", 60)
        poll_until(lambda: mesh.admin_get(admin, "/ready")[0] == 200, 30, f"proxy {service} never became ready")
        return proc, admin

    def cpu(self, path: str) -> float:
        return procstat.cpu_seconds(self.clients[path].pid) + procstat.cpu_seconds(self.server.pid)

    def handshakes(self) -> int:
        """TLS connections the server's inbound accepted (one log line each)."""
        return self.server.output().count("inbound connection from")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def _run(chains: Chains, path: str, in_flight: int, calls: int, workdir: str) -> dict:
    before_cpu, before_calls = chains.cpu(path), load.backend_count(chains.backend)
    result = load.h2load(chains.targets[path], in_flight, calls=calls, keep_latencies=in_flight == 1,
                         workdir=workdir)
    answered = load.backend_count(chains.backend) - before_calls
    problems = [] if (result.succeeded, result.failed, result.errored, answered) == (calls, 0, 0, calls) else [
        f"{path} @{in_flight}: h2load {result.succeeded}/{result.failed}/{result.errored} of {calls}, "
        f"backend answered {answered}"]
    out = {"calls_per_s": result.rate, "cpu_us_per_call": (chains.cpu(path) - before_cpu) / max(1, calls) * 1e6,
           "problems": problems}
    if result.latencies_us:
        out["p50_ms"] = statistics.median(result.latencies_us) / 1000
    return out


def compare(workdir: str, rounds: int = 5, seconds: float = 5.0, latency_seconds: float = 3.0,
            in_flight: int = 64) -> dict:
    """Interleaved rounds of both chains; medians, and mTLS's cost per call."""
    chains = Chains(workdir)
    try:
        rate64 = {p: load.h2load(chains.targets[p], in_flight, seconds=1, workdir=workdir).rate for p in PATHS}
        rate1 = {p: load.h2load(chains.targets[p], 1, seconds=1, workdir=workdir).rate for p in PATHS}
        handshakes_before, calls = chains.handshakes(), 0
        per_round = []
        for r in range(rounds):
            order = PATHS[r % 2:] + PATHS[:r % 2]
            row = {}
            for path in order:
                n64, n1 = max(200, int(rate64[path] * seconds)), max(50, int(rate1[path] * latency_seconds))
                row[path] = {**_run(chains, path, in_flight, n64, workdir),
                             "p50_ms": _run(chains, path, 1, n1, workdir)["p50_ms"]}
                calls += n64 + n1 if path == "mtls" else 0
                print(f"  mtls bench round {r + 1} {path:9s} {row[path]['calls_per_s']:8.0f} calls/s  "
                      f"p50 {row[path]['p50_ms']:.3f} ms  cpu {row[path]['cpu_us_per_call']:.0f} µs/call "
                      f"(both proxies)", flush=True)
            per_round.append(row)
        handshakes = chains.handshakes() - handshakes_before
    finally:
        chains.stop()
    return _summary(per_round, handshakes, calls, in_flight)


def _summary(per_round: list[dict], handshakes: int, mtls_calls: int, in_flight: int) -> dict:
    med = lambda path, key: statistics.median(r[path][key] for r in per_round)  # noqa: E731
    out = {p: {"calls_per_s": med(p, "calls_per_s"), "p50_ms": med(p, "p50_ms"),
               "cpu_us_per_call": med(p, "cpu_us_per_call")} for p in PATHS}
    out["mtls_cpu_us_per_call"] = statistics.median(r["mtls"]["cpu_us_per_call"] - r["plaintext"]["cpu_us_per_call"]
                                                    for r in per_round)
    out["mtls_throughput_ratio"] = statistics.median(r["mtls"]["calls_per_s"] / r["plaintext"]["calls_per_s"]
                                                     for r in per_round)
    out["mtls_added_p50_ms"] = statistics.median(r["mtls"]["p50_ms"] - r["plaintext"]["p50_ms"] for r in per_round)
    out["handshakes_during_run"] = handshakes
    out["mtls_calls"] = mtls_calls
    out["in_flight"] = in_flight
    out["rounds"] = len(per_round)
    out["problems"] = [p for r in per_round for path in PATHS for p in r[path]["problems"]]
    return out


def markdown(result: dict | None) -> list[str]:
    if not result:
        return []
    if "error" in result:
        return ["", f"mTLS between proxies: {result['error']}"]
    p, m = result["plaintext"], result["mtls"]
    return [
        "", f"mTLS between proxies (bench/mtls.py): two proxies per chain, h2load {result['in_flight']} in flight, "
            f"medians of {result['rounds']} interleaved rounds; CPU is both proxies'.",
        "", "| chain | calls/s | p50 at 1 in flight | proxies' CPU per call |", "|---|---|---|---|",
        f"| plaintext | {p['calls_per_s']:.0f} | {p['p50_ms']:.3f} ms | {p['cpu_us_per_call']:.0f} µs |",
        f"| mtls | {m['calls_per_s']:.0f} | {m['p50_ms']:.3f} ms | {m['cpu_us_per_call']:.0f} µs |",
        "", f"mTLS costs {result['mtls_cpu_us_per_call']:.0f} µs of CPU per call "
            f"({result['mtls_throughput_ratio']:.2f}× the plaintext throughput, "
            f"{result['mtls_added_p50_ms']:+.3f} ms at p50); {result['handshakes_during_run']} TLS handshake(s) "
            f"for {result['mtls_calls']} mTLS calls (the calls multiplex on the client proxy's connections)."
            + (f" Problems: {result['problems']}" if result["problems"] else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mtls", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0, help="per chain per round at 64 in flight")
    ap.add_argument("--latency-seconds", type=float, default=3.0, help="per chain per round at 1 in flight")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshgrpc-bench-mtls-") as workdir:
        result = compare(workdir, a.rounds, a.seconds, a.latency_seconds)
    print(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))
    return 0 if not result["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
