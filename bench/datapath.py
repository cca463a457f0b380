"""The data-path comparison, in interleaved rounds so machine noise hits every
path alike (the path order rotates each round). Per path and round:

  - unary calls at 64 in flight over one connection and over 8 (h2load `-c 8 -m 8`),
    each an exact number of calls, with the proxy's CPU per call (its process tree),
    the backend's, and how busy the machine's cores were;
  - 1 in flight: h2load's per-call time, and sequential calls from a real grpcio
    client (the latency users see: h2load's per-request time leaves out the
    client's gRPC work and sends fewer frames per call);
  - one bidirectional stream (grpc.aio), messages/s.

A `meshgrpc-Nw` path runs only the 8-connection load (one connection reaches one
worker). Every call is accounted for: h2load's successes, the backend's count of
calls it answered and, for the single-process proxy, its /metrics count of
grpc_status="0" must all agree.
"""

from __future__ import annotations

import statistics
import subprocess

import grpc

from bench import load, mesh, procstat, report, scale
from bench.paths import Path, Paths

CONNECTIONS = 8  # the several-connection run: h2load -c 8 -m in_flight/8
# What a failing comparison proxy may raise in a round: h2load exiting non-zero or
# past its timeout, output that does not parse, a gRPC call failing.
YARDSTICK_FAILURES = (subprocess.SubprocessError, RuntimeError, grpc.RpcError, OSError)


class Unserved(RuntimeError):
    """A run in which the path answered no call at all."""


class Checks:
    """Accounts for every call: what the load generator, the backend and the proxy counted.
    Problems on our paths fail the run; a comparison proxy's are reported beside them."""

    def __init__(self) -> None:
        self.calls = 0
        self.problems: list[str] = []
        self.yardstick_problems: list[str] = []

    def account(self, path: Path, label: str, expected: int, result: load.H2loadResult, backend_delta: int,
                proxy_delta: dict[str, int] | None) -> None:
        self.calls += expected
        found = self.problems if path.ours else self.yardstick_problems
        if (result.succeeded, result.failed, result.errored) != (expected, 0, 0):
            found.append(f"{label}: h2load {result.succeeded} succeeded, {result.failed} failed, "
                         f"{result.errored} errored of {expected}")
        if backend_delta != expected:
            found.append(f"{label}: the backend answered {backend_delta} calls, expected {expected}")
        if proxy_delta is not None and proxy_delta != {"0": expected}:
            found.append(f"{label}: the proxy's grpc_status counts {proxy_delta}, expected {{'0': {expected}}}")

    def sample(self, path: Path, statuses: dict[str, int]) -> None:
        if set(statuses) != {"OK"}:
            (self.problems if path.ours else self.yardstick_problems).append(
                f"sample {path.name}: grpc client sample ended with {statuses}")

    def summary(self, samples: int) -> dict:
        text = (f"{self.calls} h2load calls: h2load's successes, the backend's answered-call count and the "
                f"single-process proxy's /metrics grpc_status=\"0\" count agree for every run; plus a grpc.aio "
                f"client sample of {samples} calls per path, checked for status OK and the echoed payload.")
        if self.problems:
            text = f"{len(self.problems)} problem(s) on meshgrpc or direct (below)"
        elif self.yardstick_problems:
            text += f" The comparison proxies had {len(self.yardstick_problems)} problem(s) of their own (below)."
        return {"ok": not self.problems, "calls": self.calls, "summary": text,
                "problems": self.problems + self.yardstick_problems}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


def _unary(paths: Paths, checks: Checks, path: Path, in_flight: int, calls: int, label: str,
           connections: int = 1, keep_latencies: bool = False) -> tuple[load.H2loadResult, dict]:
    """One exact-count h2load run: the result, and per call the proxy's and the backend's
    CPU (µs), with the cores the backend used and the share of the machine that was busy."""
    backend_pid = paths.backend_proc.pid
    backend_before, backend_cpu = load.backend_count(paths.backend), procstat.cpu_seconds(backend_pid)
    proxy_before = mesh.proxy_calls_by_status(path.admin) if path.admin else None
    cpu_before = path.cpu_seconds() if path.cpu_seconds else None
    busy_before, ticks_before = procstat.busy_and_total_ticks()
    result = load.h2load(path.target, in_flight, calls=calls, keep_latencies=keep_latencies,
                         workdir=paths.workdir, connections=connections)
    busy, ticks = procstat.busy_and_total_ticks()
    backend_s = procstat.cpu_seconds(backend_pid) - backend_cpu
    per_call = 1e6 / max(1, result.succeeded)
    cost = {"cpu_us_per_call": (path.cpu_seconds() - cpu_before) * per_call if cpu_before is not None else None,
            "backend_cpu_us_per_call": backend_s * per_call,
            "backend_cores": backend_s / result.seconds,
            "machine_busy": (busy - busy_before) / max(1, ticks - ticks_before)}
    proxy_delta = _delta(mesh.proxy_calls_by_status(path.admin), proxy_before) if path.admin else None
    checks.account(path, f"{label} {path.name}", calls, result, load.backend_count(paths.backend) - backend_before,
                   proxy_delta)
    if result.succeeded == 0:
        raise Unserved(f"{label}: {path.name} answered none of {calls} calls")
    return result, cost


def _stream(target: str, seconds: float, checks: Checks, path: Path, label: str) -> float | None:
    """Messages/s through one bidi stream; a stream that fails is retried once and reported."""
    for attempt in (1, 2):
        try:
            return load.stream_rate(target, seconds)
        except grpc.aio.AioRpcError as e:
            (checks.problems if path.ours else checks.yardstick_problems).append(
                f"{label} (attempt {attempt}): {e.code().name}: {e.details()}")
    return None


class Rounds:
    """Runs the rounds; remembers each path's last rates to size its next runs (about
    `seconds` each) and holds each path's grpcio client."""

    def __init__(self, paths: Paths, args, checks: Checks) -> None:
        self.paths, self.args, self.checks = paths, args, checks
        self.rates: dict[tuple[str, str], float] = {}
        self.clients: dict[str, load.GrpcLatency] = {}

    def warm_up(self, path: Path) -> None:
        """Connects, and sizes each run from a one-second run."""
        a, target, wd = self.args, path.target, self.paths.workdir
        self.rates[path.name, "8c"] = load.h2load(target, a.in_flight, seconds=1, workdir=wd,
                                                   connections=CONNECTIONS).rate
        if path.only_8_connections:
            return
        self.rates[path.name, "1c"] = load.h2load(target, a.in_flight, seconds=1, workdir=wd).rate
        self.rates[path.name, "1"] = load.h2load(target, 1, seconds=1, workdir=wd).rate
        self.clients[path.name] = load.GrpcLatency(target)

    def _calls(self, name: str, kind: str, seconds: float, least: int) -> int:
        return max(least, int(self.rates[name, kind] * seconds))

    def one_path(self, path: Path, label: str) -> dict:
        a = self.args
        tput8, cost8 = _unary(self.paths, self.checks, path, a.in_flight,
                              self._calls(path.name, "8c", a.seconds, 100), f"{label} @{a.in_flight}x{CONNECTIONS}",
                              connections=CONNECTIONS)
        self.rates[path.name, "8c"] = tput8.rate
        out = {"calls_per_s_8c": tput8.rate, **{f"{k}_8c": v for k, v in cost8.items()}}
        if not path.only_8_connections:
            out.update(self._one_connection(path, label))
        _print_row(path.name, out)
        return out

    def _one_connection(self, path: Path, label: str) -> dict:
        a = self.args
        tput, cost = _unary(self.paths, self.checks, path, a.in_flight,
                            self._calls(path.name, "1c", a.seconds, 100), f"{label} @{a.in_flight}")
        self.rates[path.name, "1c"] = tput.rate
        lat, _ = _unary(self.paths, self.checks, path, 1, self._calls(path.name, "1", a.latency_seconds, 50),
                        f"{label} @1", keep_latencies=True)
        self.rates[path.name, "1"] = lat.rate
        return {"calls_per_s": tput.rate, **cost,
                "p50_ms": statistics.median(lat.latencies_us) / 1000,
                "p99_ms": scale.percentile(lat.latencies_us, 0.99) / 1000, "latencies_us": lat.latencies_us,
                **_grpc_latency(self.clients[path.name], a.latency_seconds),
                "stream_msgs_per_s": _stream(path.target, a.stream_seconds, self.checks, path,
                                             f"{label} stream {path.name}")}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _grpc_latency(client: load.GrpcLatency, seconds: float) -> dict:
    """p50/p99 (ms) of sequential grpcio calls, about `seconds` worth."""
    lat = client.latencies_us(max(200, int(client.rate * seconds)))
    client.rate = len(lat) / (sum(lat) / 1e6)
    return {"grpc_p50_ms": statistics.median(lat) / 1000, "grpc_p99_ms": scale.percentile(lat, 0.99) / 1000}


def _print_row(name: str, out: dict) -> None:
    cpu = lambda key: "" if out.get(key) is None else f"{out[key]:.0f} µs/call"  # noqa: E731
    line = f"  {name:12s} x{CONNECTIONS} {out['calls_per_s_8c']:6.0f} calls/s {cpu('cpu_us_per_call_8c'):>12s}"
    if "calls_per_s" in out:
        line += (f" | x1 {out['calls_per_s']:6.0f} calls/s {cpu('cpu_us_per_call'):>12s} | p50 {out['p50_ms']:.3f} "
                 f"grpc p50 {out['grpc_p50_ms']:.3f} ms | stream {out['stream_msgs_per_s'] or 0:.0f} msgs/s")
    print(line, flush=True)


def run(paths: Paths, args, checks: Checks) -> list[dict]:
    """Every round's numbers per path; a comparison proxy that fails is dropped."""
    rounds_run = Rounds(paths, args, checks)
    try:
        for path in list(paths.paths.values()):
            _guarded(paths, path, "warm-up", lambda p=path: rounds_run.warm_up(p))
        rounds: list[dict] = []
        for r in range(args.rounds):
            names = list(paths.paths)
            order = names[r % len(names):] + names[:r % len(names)]
            print(f"round {r + 1}/{args.rounds}: {' '.join(order)}", flush=True)
            row = {}
            for name in order:
                path = paths.paths[name]
                got = _guarded(paths, path, f"round {r + 1}", lambda p=path: rounds_run.one_path(p, f"round {r + 1}"))
                if got is not None:
                    row[name] = got
            rounds.append(row)
        return [{name: row[name] for name in paths.paths} for row in rounds]
    finally:
        rounds_run.close()


def _guarded(paths: Paths, path: Path, label: str, step):
    """Runs `step`; a comparison proxy that fails in it is dropped (ours fail the run)."""
    if path.ours:
        return step()
    try:
        return step()
    except YARDSTICK_FAILURES as e:
        paths.drop(path.name, f"failed in the {label}: {type(e).__name__}: {str(e)[:300]}")
        print(f"  {path.name} dropped: {paths.skipped[path.name]}", flush=True)
        return None


# --- summary over rounds -------------------------------------------------------------

# ratio key -> the measure it divides by direct's, round by round
RATIOS = {"ratio": "calls_per_s", "ratio_8c": "calls_per_s_8c", "stream_ratio": "stream_msgs_per_s"}
# added key -> the latency it subtracts direct's from, round by round
ADDED = {"added_p50_ms": "p50_ms", "added_p99_ms": "p99_ms", "grpc_added_p50_ms": "grpc_p50_ms"}


def summarise(rounds: list[dict]) -> dict:
    """Per path: the median over rounds of each measure, and of each per-round ratio
    to direct and latency added to direct's."""
    out = {}
    for name in rounds[0]:
        per_round = [r[name] for r in rounds]
        keys = [k for k, v in per_round[0].items() if k != "latencies_us" and (v is None or isinstance(v, float | int))]
        p = {k: _median([r[k] for r in per_round]) for k in keys}
        for key, measure in RATIOS.items():
            if measure in per_round[0]:
                p[key] = _median([_ratio(r[name][measure], r["direct"][measure]) for r in rounds])
        if name != "direct":
            for key, measure in ADDED.items():
                if measure in per_round[0]:
                    p[key] = _median([r[name][measure] - r["direct"][measure] for r in rounds])
        if "latencies_us" in per_round[0]:
            pooled = [x for r in per_round for x in r["latencies_us"]]
            p["percentiles_ms"] = {str(q): scale.percentile(pooled, q / 100) / 1000 for q in report.PERCENTILES}
        p["rounds"] = [{k: v for k, v in r.items() if k != "latencies_us"} for r in per_round]
        out[name] = p
    return out


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(value: float | None, direct: float | None) -> float | None:
    return None if value is None or not direct else value / direct


# --- workers -----------------------------------------------------------------------

BACKEND_BOUND = 0.9  # of direct's throughput, or of one core: the backend is the limit
CORES_BOUND = 0.9    # of every core busy: the machine is the limit


def workers(rounds: list[dict], name: str, count: int, cpus: int) -> dict:
    """1 vs `count` workers over 8 connections, and what limited the `count`-worker runs."""
    def runs(path: str) -> dict:
        return {key: _median([r[path][f"{key}_8c"] for r in rounds])
                for key in ("calls_per_s", "cpu_us_per_call", "backend_cores", "machine_busy")}
    one, many = runs("meshgrpc"), runs(name)
    scaling = _median([_ratio(r[name]["calls_per_s_8c"], r["meshgrpc"]["calls_per_s_8c"]) for r in rounds])
    of_direct = _median([_ratio(r[name]["calls_per_s_8c"], r["direct"]["calls_per_s_8c"]) for r in rounds])
    return {"workers": count, "path": name, "scaling": scaling, "of_direct": of_direct,
            "runs": {"1": one, str(count): many, "direct": runs("direct")},
            "limit": limit(count, of_direct, many["backend_cores"], many["machine_busy"], cpus)}


def limit(count: int, of_direct: float, backend_cores: float, busy: float, cpus: int) -> str:
    """What bounds the throughput of `count` workers, said from the numbers."""
    if of_direct >= BACKEND_BOUND:
        return (f"the backend: {count} workers pass {of_direct:.2f}x what the backend serves h2load directly, "
                "so more proxy workers cannot add throughput")
    if backend_cores >= BACKEND_BOUND:
        return (f"the backend: its one grpc.aio process used {backend_cores:.2f} cores (its Python work runs on "
                "one thread at a time)")
    if busy >= CORES_BOUND:
        return (f"the machine's cores: {busy:.0%} of all {cpus} were busy (h2load, the backend and the workers "
                f"share them; the backend used {backend_cores:.2f} cores)")
    return (f"the proxy: the backend used {backend_cores:.2f} cores and the machine was {busy:.0%} busy, so both "
            "had room left")
