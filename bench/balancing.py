"""`python -m bench.balancing` (part of `make bench`): which balancing policy wins
the tail, side by side in one run (issue 14).

A fleet of backends (bench/fleet_backend.py: exponential service times, a
concurrency limit each, so queues form) behind several real `meshgrpc proxy`
processes, so that no proxy sees the whole load; an open-loop client (Poisson
arrivals, a deadline per call) sends through each proxy. Every policy has its own
cluster over the same backends and the client picks it per run with a header, so
no config changes during the benchmark. Scenarios, each at 60% and 90% of the
capacity left to the clients:
- homogeneous: every backend alike;
- heterogeneous: one backend twice as slow, one frozen 200 ms in every 2 s;
- antagonist: a second client, through a proxy of its own, loads one backend
  with half its capacity; the other proxies cannot see that load in their counters.
Per scenario, load and policy: client p50 / p99 / p99.9 (failed calls count at the
time they failed), error rate, the backends' max and mean utilization (busy share
of their slots), the proxies' CPU per call and PREQUAL's probe RPCs per call.
PREQUAL runs twice: probing by RPC, and with probes answered from a 100 ms
out-of-band report stream (PREQUAL+OOB).
Results: bench/results/balancing-<timestamp>.json, bench/results/balancing.md and a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import grpc
import uvloop

from bench import mesh, procstat
from tests.support.procs import Proc

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# What each compared policy's cluster says beyond its endpoints: every policy at its
# defaults; WEIGHTED_ROUND_ROBIN with the out-of-band reports it weighs by; PREQUAL
# twice, probing by RPC (the paper's way) and answering probes from a 100 ms
# out-of-band stream.
POLICIES = {
    "ROUND_ROBIN": {"lb_policy": "ROUND_ROBIN"},
    "LEAST_REQUEST": {"lb_policy": "LEAST_REQUEST"},
    "PEAK_EWMA": {"lb_policy": "PEAK_EWMA"},
    "WEIGHTED_ROUND_ROBIN": {"lb_policy": "WEIGHTED_ROUND_ROBIN", "out_of_band_load_reports": {}},
    "PREQUAL": {"lb_policy": "PREQUAL"},
    "PREQUAL+OOB": {"lb_policy": "PREQUAL", "out_of_band_load_reports": {"interval": "0.1s"}},
}
SHORT = {"ROUND_ROBIN": "rr", "LEAST_REQUEST": "lr", "PEAK_EWMA": "ewma", "WEIGHTED_ROUND_ROBIN": "wrr",
         "PREQUAL": "prequal", "PREQUAL+OOB": "prequal-oob"}
ANTAGONIST = "antagonist"
WORK = "/bench.Fleet/Work"
HEADER = "x-policy"
DEADLINE = 2.0  # seconds per call
MAX_OUTSTANDING = 5000  # per stream: an overloaded path fails calls instead of growing without bound


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.balancing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", type=int, default=6)
    ap.add_argument("--service-ms", type=float, default=50.0, help="mean service time of a backend")
    ap.add_argument("--concurrency", type=int, default=3, help="calls a backend serves at once")
    ap.add_argument("--proxies", type=int, default=3, help="proxies the clients spread over")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before each measurement")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per scenario, load and policy")
    ap.add_argument("--rounds", type=int, default=1, help="passes over the policies (the order rotates)")
    ap.add_argument("--loads", default="0.6,0.9", help="shares of the capacity offered")
    ap.add_argument("--scenarios", default="homogeneous,heterogeneous,antagonist")
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"of {', '.join(POLICIES)}")
    ap.add_argument("--prequal", default="{}", help='PREQUAL tuning as JSON, e.g. \'{"max_probes_per_second": 100}\' '
                                                    "(default: the cluster defaults)")
    ap.add_argument("--quick", action="store_true", help="a short pass (1 s warm-up, 4 s per run) to check the harness")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=RESULTS)
    a = ap.parse_args(argv)
    if a.quick:
        a.warmup, a.seconds = 1.0, 4.0
    return a


# ---------------------------------------------------------------- the mesh

def fleet_mesh(backends: list[str], victim: str, policies: list[str], prequal: dict) -> dict:
    """A cluster per compared policy over every backend (POLICIES; PREQUAL's tuning
    from `prequal`), the antagonist's cluster of the victim alone, and a route per
    cluster chosen by the x-policy header."""
    clusters = [{"name": f"fleet-{SHORT[p]}", **POLICIES[p]} for p in policies]
    for c in clusters:
        if c["lb_policy"] == "PREQUAL" and prequal:
            c["prequal"] = prequal
    clusters.append({"name": ANTAGONIST, "lb_policy": "ROUND_ROBIN"})
    endpoints = [{"cluster": c["name"], "endpoints": [{"address": b} for b in backends]} for c in clusters[:-1]]
    endpoints.append({"cluster": ANTAGONIST, "endpoints": [{"address": victim}]})
    routes = [{"name": c["name"], "match": {"prefix": "/", "headers": [{"name": HEADER, "exact": c["name"]}]},
               "route": {"cluster": c["name"]}} for c in clusters]
    return {"clusters": clusters, "endpoints": endpoints,
            "routes": [{"name": "default", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}]}


class Fleet:
    """The processes: backends, a control plane, the clients' proxies and the antagonist's."""

    def __init__(self, args: argparse.Namespace, workdir: str) -> None:
        self.procs: list[Proc] = []
        self.backends = [self._own(Proc([sys.executable, "-m", "bench.fleet_backend", "--name", f"b{i}",
                                         "--service-ms", str(args.service_ms), "--concurrency",
                                         str(args.concurrency), "--seed", str(args.seed + i)]))
                         for i in range(args.backends)]
        self.addresses = [b.address("backend", 30) for b in self.backends]
        self.victim = self.addresses[0]
        config = mesh.write_config(fleet_mesh(self.addresses, self.victim, args.policies, json.loads(args.prequal)),
                                   os.path.join(workdir, "fleet.json"))
        cp, cp_address = mesh.start_control_plane(config, os.path.join(workdir, "data"))
        self._own(cp)
        self.proxies: list[tuple[Proc, str, str]] = []
        for i in range(args.proxies + 1):  # the last one is the antagonist's
            proc, listen, admin = mesh.start_proxy(cp_address, node_id=f"bench-{i}")
            self._own(proc)
            self.proxies.append((proc, listen, admin))

    def _own(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    @property
    def client_proxies(self) -> list[tuple[Proc, str, str]]:
        return self.proxies[:-1]

    @property
    def antagonist_proxy(self) -> tuple[Proc, str, str]:
        return self.proxies[-1]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


# ---------------------------------------------------------------- scenarios

def scenario_settings(name: str, backends: int) -> list[dict]:
    """Configure requests per backend for a scenario."""
    settings = [{} for _ in range(backends)]
    if name == "heterogeneous":
        settings[1] = {"slowdown": 2.0}
        settings[2] = {"stall_every": 2.0, "stall_for": 0.2}
    return settings


def capacity(name: str, args: argparse.Namespace) -> tuple[float, float]:
    """(calls per second the clients may offer at 100%, the antagonist's rate)."""
    per_backend = args.concurrency / (args.service_ms / 1000)
    total = per_backend * args.backends
    if name == "heterogeneous":
        total -= per_backend / 2 + per_backend * 0.1  # the slow one does half; the stalling one 90%
    antagonist = per_backend / 2 if name == "antagonist" else 0.0
    return total - antagonist, antagonist


# ---------------------------------------------------------------- the client

class Stream:
    """Open-loop calls to one proxy: Poisson arrivals at `rate`, each with a deadline."""

    def __init__(self, target: str, cluster: str, rate: float, rng: random.Random) -> None:
        self.target, self.cluster, self.rate, self.rng = target, cluster, rate, rng
        self.outcomes: list[tuple[float, float, str]] = []  # (start, seconds, status name) of measured calls
        self.by_backend: dict[str, list[float]] = {}  # seconds of the measured calls each backend answered
        self.outstanding = 0

    async def run(self, measure_from: float, until: float) -> None:
        async with grpc.aio.insecure_channel(self.target, options=[("grpc.enable_retries", 0)]) as channel:
            call = channel.unary_unary(WORK)
            metadata = ((HEADER, self.cluster),)
            tasks: set[asyncio.Task] = set()
            loop = asyncio.get_running_loop()
            due = loop.time()
            while due < until:
                due += self.rng.expovariate(self.rate)
                await asyncio.sleep(max(0.0, due - loop.time()))
                task = loop.create_task(self._one(call, metadata, due >= measure_from))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=DEADLINE + 5)

    async def _one(self, call, metadata, measured: bool) -> None:
        loop = asyncio.get_running_loop()
        if self.outstanding >= MAX_OUTSTANDING:
            if measured:
                self.outcomes.append((loop.time(), DEADLINE, "CLIENT_OVERLOAD"))
            return
        self.outstanding += 1
        started = loop.time()
        backend = ""
        try:
            backend = (await call(b"", metadata=metadata, timeout=DEADLINE)).decode()
            status = "OK"
        except grpc.aio.AioRpcError as e:
            status = e.code().name
        finally:
            self.outstanding -= 1
        if measured:
            seconds = loop.time() - started
            self.outcomes.append((started, seconds, status))
            if backend:
                self.by_backend.setdefault(backend, []).append(seconds)


async def backend_stats(addresses: list[str]) -> list[dict]:
    async def one(address: str) -> dict:
        async with grpc.aio.insecure_channel(address) as channel:
            return json.loads(await channel.unary_unary("/bench.Fleet/Stats")(b"", timeout=5))
    return await asyncio.gather(*(one(a) for a in addresses))


async def configure(addresses: list[str], settings: list[dict]) -> None:
    async def one(address: str, s: dict) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            await channel.unary_unary("/bench.Fleet/Configure")(json.dumps(s).encode(), timeout=5)
    await asyncio.gather(*(one(a, s) for a, s in zip(addresses, settings)))


def probe_counts(fleet: Fleet, cluster: str) -> int:
    """PREQUAL probes the client proxies sent for `cluster`, so far."""
    sent = 0
    for _, _, admin in fleet.client_proxies:
        _, body = mesh.admin_get(admin, "/clusters")
        for c in json.loads(body)["clusters"]:
            if c["name"] == cluster and c.get("balancer", {}).get("probes"):
                sent += c["balancer"]["probes"]["sent"]
    return sent  # probe RPCs only: answers from an out-of-band stream cost none


async def run_one(fleet: Fleet, args, scenario: str, load: float, policy: str, rng: random.Random) -> dict:
    """One measured run: warm-up, then `args.seconds` of calls at `load`."""
    cluster = f"fleet-{SHORT[policy]}"
    rate, antagonist_rate = capacity(scenario, args)
    rate *= load
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + args.warmup
    until = measure_from + args.seconds
    streams = [Stream(listen, cluster, rate / len(fleet.client_proxies), random.Random(rng.random()))
               for _, listen, _ in fleet.client_proxies]
    extra = [Stream(fleet.antagonist_proxy[1], ANTAGONIST, antagonist_rate, random.Random(rng.random()))] \
        if antagonist_rate else []
    runs = [loop.create_task(s.run(measure_from, until)) for s in streams + extra]
    await asyncio.sleep(max(0.0, measure_from - loop.time()))
    before = await backend_stats(fleet.addresses)
    cpu_before = [procstat.cpu_seconds(p.pid) for p, _, _ in fleet.client_proxies]
    probes_before = await loop.run_in_executor(None, probe_counts, fleet, cluster)
    await asyncio.sleep(max(0.0, until - loop.time()))
    after = await backend_stats(fleet.addresses)
    cpu_after = [procstat.cpu_seconds(p.pid) for p, _, _ in fleet.client_proxies]
    probes_after = await loop.run_in_executor(None, probe_counts, fleet, cluster)
    await asyncio.gather(*runs)
    return summarize(streams, before, after, sum(cpu_after) - sum(cpu_before),
                     probes_after - probes_before, scenario, load, policy, rate)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def summarize(streams, before, after, proxy_cpu, probes, scenario, load, policy, rate) -> dict:
    outcomes = [o for s in streams for o in s.outcomes]
    latencies = sorted(seconds for _, seconds, _ in outcomes)
    errors = sum(1 for _, _, status in outcomes if status != "OK")
    # Each backend's busy share of its slots, over its own clock between the two readings.
    utilization = [(a["busy_slot_seconds"] - b["busy_slot_seconds"]) / ((a["clock"] - b["clock"]) * a["concurrency"])
                   for b, a in zip(before, after)]
    calls = len(outcomes) or 1
    return {
        "scenario": scenario, "load": load, "policy": policy, "offered_per_s": rate, "calls": len(outcomes),
        "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
        "p999_ms": percentile(latencies, 99.9) * 1e3, "error_rate": errors / calls,
        "errors": sorted({status for _, _, status in outcomes if status != "OK"}),
        "utilization_max": max(utilization), "utilization_mean": statistics.fmean(utilization),
        "utilization": utilization, "proxy_cpu_us_per_call": proxy_cpu / calls * 1e6,
        "probes_per_call": probes / calls,
        "backend_calls": [a["calls"] - b["calls"] for b, a in zip(before, after)],
        "backend_p50_ms": {name: statistics.median(v) * 1e3 for name, v in sorted(_merged(streams).items())},
    }


def _merged(streams) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for s in streams:
        for name, values in s.by_backend.items():
            out.setdefault(name, []).extend(values)
    return out


async def run_all(fleet: Fleet, args) -> list[dict]:
    rng = random.Random(args.seed)
    results = []
    for scenario in args.scenarios:
        await configure(fleet.addresses, scenario_settings(scenario, args.backends))
        for load in args.loads:
            for round_ in range(args.rounds):
                shift = round_ % len(args.policies)
                for policy in args.policies[shift:] + args.policies[:shift]:
                    result = await run_one(fleet, args, scenario, load, policy, rng)
                    result["round"] = round_
                    results.append(result)
                    print(f"{scenario:<14} {load:.0%} {policy:<21} p50 {result['p50_ms']:7.1f}  "
                          f"p99 {result['p99_ms']:7.1f}  p99.9 {result['p999_ms']:7.1f} ms  "
                          f"errors {result['error_rate']:6.2%}  util max/mean {result['utilization_max']:.2f}/"
                          f"{result['utilization_mean']:.2f}  probes/call {result['probes_per_call']:.2f}  "
                          f"proxy {result['proxy_cpu_us_per_call']:.0f} µs/call", flush=True)
    await configure(fleet.addresses, [{}] * args.backends)
    return results


# ---------------------------------------------------------------- the report

def medians(results: list[dict]) -> dict[tuple[str, float, str], dict]:
    """One row per (scenario, load, policy): the median over rounds of each number."""
    grouped: dict[tuple[str, float, str], list[dict]] = {}
    for r in results:
        grouped.setdefault((r["scenario"], r["load"], r["policy"]), []).append(r)
    keys = ("p50_ms", "p99_ms", "p999_ms", "error_rate", "utilization_max", "utilization_mean",
            "proxy_cpu_us_per_call", "probes_per_call", "calls", "offered_per_s")
    return {k: {key: statistics.median(r[key] for r in rs) for key in keys} for k, rs in grouped.items()}


def markdown(result: dict, chart: str | None) -> str:
    cfg, env = result["config"], result["environment"]
    rows = medians(result["runs"])
    lines = [f"# meshgrpc balancing benchmark — {result['timestamp']}", "",
             f"{env['cpus']} CPUs (shared; load average {env['loadavg_start']} at the start, "
             f"{env['loadavg_end']} at the end), Python {env['python']}, commit {env['commit']}. "
             f"{cfg['backends']} backends (exponential service times, mean {cfg['service_ms']:g} ms, "
             f"{cfg['concurrency']} at once each), {cfg['proxies']} client proxies (+1 for the antagonist), "
             f"open-loop Poisson clients with a {DEADLINE:g} s deadline; {cfg['warmup']:g} s warm-up and "
             f"{cfg['seconds']:g} s measured per run, {cfg['rounds']} round(s) (medians). "
             "Failed calls count in the percentiles at the time they failed.", "",
             "| scenario | load | policy | calls/s | p50 (ms) | p99 (ms) | p99.9 (ms) | errors | util max / mean "
             "| proxy CPU/call (µs) | probes/call | p99 vs ROUND_ROBIN |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (scenario, load, policy), row in rows.items():
        rr = rows.get((scenario, load, "ROUND_ROBIN"))
        versus = f"{row['p99_ms'] / rr['p99_ms']:.2f}×" if rr and rr["p99_ms"] > 0 else "—"
        lines.append(f"| {scenario} | {load:.0%} | {policy} | {row['offered_per_s']:.0f} | {row['p50_ms']:.1f} "
                     f"| {row['p99_ms']:.1f} | {row['p999_ms']:.1f} | {row['error_rate']:.2%} "
                     f"| {row['utilization_max']:.2f} / {row['utilization_mean']:.2f} "
                     f"| {row['proxy_cpu_us_per_call']:.0f} | {row['probes_per_call']:.2f} | {versus} |")
    lines += ["", *verdict(rows)]
    if chart:
        lines += ["", f"![p99 per scenario and policy]({os.path.basename(chart)})"]
    lines += ["", f"Raw numbers per run: `{os.path.basename(result['json'])}`."]
    return "\n".join(lines) + "\n"


def verdict(rows: dict[tuple[str, float, str], dict], load: float = 0.9) -> list[str]:
    """Issue 14's test of a default policy, read off the medians at `load`: where
    backends differ (heterogeneous, antagonist) a p99 at most half ROUND_ROBIN's and
    below PEAK_EWMA's (the default it would replace); where they do not, at most 10%
    above ROUND_ROBIN's. Lines for the report: each policy's p99 as a multiple of
    ROUND_ROBIN's and PEAK_EWMA's, whether it passes, and the policy these numbers
    recommend: of those that pass, the lowest geometric-mean p99 over the uneven
    scenarios; PEAK_EWMA (kept) when none does."""
    def p99(scenario: str, policy: str) -> float | None:
        row = rows.get((scenario, load, policy))
        return row["p99_ms"] if row else None

    uneven = [s for s in ("heterogeneous", "antagonist") if p99(s, "ROUND_ROBIN") and p99(s, "PEAK_EWMA")]
    if not uneven:
        return [f"No verdict: ROUND_ROBIN and PEAK_EWMA did not both run at {load:.0%} in an uneven scenario."]
    policies = sorted({p for s, l, p in rows if l == load and s in uneven} - {"ROUND_ROBIN", "PEAK_EWMA"})
    lines = [f"Verdict at {load:.0%} load, p99 as a multiple of ROUND_ROBIN's / PEAK_EWMA's (issue 14 asks of a "
             "new default at most 0.5× / below 1× where backends differ, at most 1.1× ROUND_ROBIN's where "
             "they do not):", ""]
    passing: dict[str, float] = {}
    for policy in ["PEAK_EWMA", *policies]:
        parts, ok = [], True
        for s in uneven:
            mine = p99(s, policy)
            if mine is None:
                ok = False
                continue
            versus_rr, versus_ewma = mine / p99(s, "ROUND_ROBIN"), mine / p99(s, "PEAK_EWMA")
            parts.append(f"{s} {versus_rr:.2f}× / {versus_ewma:.2f}×")
            ok &= versus_rr <= 0.5 and versus_ewma < 1.0
        homogeneous, rr_homogeneous = p99("homogeneous", policy), p99("homogeneous", "ROUND_ROBIN")
        if homogeneous and rr_homogeneous:
            parts.append(f"homogeneous {homogeneous / rr_homogeneous:.2f}× ROUND_ROBIN's")
            ok &= homogeneous <= 1.1 * rr_homogeneous
        if policy == "PEAK_EWMA":
            lines.append(f"- PEAK_EWMA (the default today): {'; '.join(parts)}")
            continue
        if ok:
            passing[policy] = statistics.geometric_mean([p99(s, policy) for s in uneven])
        lines.append(f"- {policy}: {'; '.join(parts)} — {'passes' if ok else 'does not pass'}")
    best = min(passing, key=passing.get) if passing else None
    # One run decides nothing on a shared machine: the default changes only on what
    # several runs agree on (the README says which policy is recommended where).
    lines += ["", f"Best passing policy in this run: {best}." if best else
              "No policy passes every test in this run: PEAK_EWMA stays the default."]
    return lines


def plot(result: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = medians(result["runs"])
    groups = sorted({(s, l) for s, l, _ in rows}, key=lambda g: (result["config"]["scenarios"].index(g[0]), g[1]))
    policies = result["config"]["policies"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(policies)
    for ax, key, title in ((axes[0], "p99_ms", "client p99 (ms)"), (axes[1], "p999_ms", "client p99.9 (ms)")):
        for i, policy in enumerate(policies):
            values = [rows.get((s, l, policy), {}).get(key, 0) for s, l in groups]
            ax.bar([g + i * width for g in range(len(groups))], values, width, label=policy)
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
        ax.set_xticklabels([f"{s}\n{l:.0%}" for s, l in groups], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def environment() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(RESULTS)).stdout.strip()
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "commit": commit or "?",
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    args.loads = [float(x) for x in args.loads.split(",")]
    args.scenarios = args.scenarios.split(",")
    args.policies = args.policies.split(",")
    env = environment()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="meshgrpc-balancing-") as workdir:
        fleet = Fleet(args, workdir)
        try:
            time.sleep(2.0)  # the out-of-band streams open and the first reports arrive
            runs = uvloop.run(run_all(fleet, args))
        finally:
            fleet.stop()
    env["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    os.makedirs(args.out, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    result = {"timestamp": stamp, "environment": env, "config": config, "runs": runs,
              "json": os.path.join(args.out, f"balancing-{stamp}.json")}
    with open(result["json"], "w") as f:
        json.dump(result, f, indent=1)
    chart = plot(result, os.path.join(args.out, f"balancing-{stamp}.png"))
    with open(os.path.join(args.out, "balancing.md"), "w") as f:
        f.write(markdown(result, chart))
    print(f"\nresults: {result['json']}, {os.path.join(args.out, 'balancing.md')}" + (f", {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
