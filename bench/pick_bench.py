"""Micro-benchmark (not a test): the cost of one ClusterState-level pick for each
balancing policy at 10, 100 and 1,000 endpoints. Target: under 5 µs at 1,000.

    .venv/bin/python bench/pick_bench.py [--picks N]

Each policy runs over real EndpointStates (equal weights, then weights 1-4), with
a few calls in flight so the P2C policies compare real numbers. WEIGHTED_ROUND_ROBIN
runs on load reports (one per endpoint, utilizations spread), its schedule rebuilt
every weight_update_period of real time as in the proxy. PREQUAL sends 3 probes
per pick (no rate cap) to a sink that queues them as the prober does; between
batches of 4 timed picks the queued probes are answered from the endpoints'
reports, untimed, so the pool stays full and every pick goes through the hot-cold
rule. An answer joining the pool is the prober's work on the event loop, not the
pick's: it is timed on its own. Also prints the relay's per-call bookkeeping
(on_start, on_first_response, on_finish).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from meshgrpc.config import specs
from meshgrpc.proxy.balancer import PickerEnv, build_picker
from meshgrpc.proxy.endpoint import EndpointState, EndpointStats
from meshgrpc.proxy.orca.report import LoadReport
from meshgrpc.proxy.outlier import OutlierDetector

POLICIES = ["ROUND_ROBIN", "LEAST_REQUEST", "PEAK_EWMA", "RING_HASH", "RANDOM", "WEIGHTED_ROUND_ROBIN", "PREQUAL"]
SIZES = [10, 100, 1000]


class QueueingProber:
    """Queues PREQUAL's probes (a deque append, as the prober's put_nowait);
    `answer()` delivers them from each endpoint's latest report."""

    def __init__(self) -> None:
        self.queued: deque = deque()

    def probe(self, endpoint, reply_to, index: int) -> bool:
        self.queued.append((endpoint, reply_to, index))
        return True

    def answer(self) -> None:
        queued = self.queued
        while queued:
            endpoint, reply_to, index = queued.popleft()
            reply_to.on_probe(index, endpoint.stats.load.report)


def cluster_spec(policy: str) -> specs.ClusterSpec:
    return specs.ClusterSpec(name="bench", lb_policy=policy,
                             weighted_round_robin=specs.WeightedRoundRobinSpec(blackout_period=0.0),
                             prequal=specs.PrequalSpec(max_probes_per_second=100_000))


def prequal_pick_us(eps: tuple[EndpointState, ...], picks: int) -> float:
    """Best of three runs, like per_pick_us: the least disturbed."""
    return min(_prequal_run(eps, picks) for _ in range(3))


def _prequal_run(eps: tuple[EndpointState, ...], picks: int) -> float:
    prober = QueueingProber()
    # Picks run on a clock that moves 100 µs a pick (30,000 probes a second, within the
    # rate cap): on real time the picks come faster than any cap allows, and capped
    # picks would measure the fallback instead of the pool.
    now = [0.0]
    picker = build_picker(cluster_spec("PREQUAL"), eps,
                          PickerEnv(rng=random.Random(1), prober=prober, clock=lambda: now[0]))
    pick, batch, timed = picker.pick, 4, 0.0  # answers arrive as fast as probes go out, as in steady state
    for _ in range(picks // batch):
        now[0] += batch * 100e-6
        prober.answer()
        start = time.perf_counter()
        for _ in range(batch):
            pick(None)
        timed += time.perf_counter() - start
    assert picker.counts.pooled > picker.counts.fallback * 10, picker.counts.describe()
    return timed / (picks // batch * batch) * 1e6


def make_endpoints(n: int, weighted: bool, rng: random.Random) -> tuple[EndpointState, ...]:
    eps = []
    for i in range(n):
        host = f"10.{i // 250}.{i % 250}.1"
        spec = specs.EndpointSpec(f"{host}:8080", host, 8080, weight=1 + i % 4 if weighted else 1)
        ep = EndpointState("bench", spec, EndpointStats(), detector=OutlierDetector())
        for _ in range(rng.randrange(4)):
            ep.on_start()
        ep.on_load_report(LoadReport(application_utilization=0.2 + 0.6 * rng.random(), qps=100.0,
                                     rif=float(rng.randrange(8)), latency_s=0.001 + 0.02 * rng.random()))
        eps.append(ep)
    return tuple(eps)


def per_pick_us(picker, keys: list[bytes | None], picks: int) -> float:
    pick = picker.pick
    best = float("inf")
    for _ in range(3):  # best of three: the least disturbed run
        start = time.perf_counter()
        for k in keys * (picks // len(keys)):
            pick(k)
        best = min(best, time.perf_counter() - start)
    return best / picks * 1e6


def bookkeeping_us(ep: EndpointState, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        ep.on_start()
        ep.on_first_response(0.001)
        ep.on_finish(True, 0.002, 0, responded=True)
    return (time.perf_counter() - start) / calls * 1e6


def answer_us(eps: tuple[EndpointState, ...], answers: int) -> float:
    picker = build_picker(cluster_spec("PREQUAL"), eps, PickerEnv(rng=random.Random(1)))
    report = LoadReport(rif=3.0, latency_s=0.005)
    start = time.perf_counter()
    for i in range(answers):
        picker.on_probe(i % len(eps), report)
    return (time.perf_counter() - start) / answers * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(0)
    keys_none: list[bytes | None] = [None] * 1000
    keys_hashed: list[bytes | None] = [f"user-{i}".encode() for i in range(1000)]
    print(f"{'policy':<20} {'weights':<8}" + "".join(f"{n:>10} eps" for n in SIZES) + "   (µs per pick)")
    for policy in POLICIES:
        cluster = cluster_spec(policy)
        for weighted in (False, True):
            row = []
            for n in SIZES:
                eps = make_endpoints(n, weighted, rng)
                if policy == "PREQUAL":
                    row.append(prequal_pick_us(eps, args.picks))
                    continue
                picker = build_picker(cluster, eps, PickerEnv(rng=random.Random(1)))
                keys = keys_hashed if policy == "RING_HASH" else keys_none
                row.append(per_pick_us(picker, keys, args.picks))
            print(f"{policy:<20} {'1-4' if weighted else 'equal':<8}" + "".join(f"{c:>14.3f}" for c in row))
    print("\npicker build (on config, health or ejection change), 1,000 endpoints:")
    eps = make_endpoints(1000, True, rng)
    for policy in POLICIES:
        start = time.perf_counter()
        build_picker(cluster_spec(policy), eps, PickerEnv(rng=random.Random(1)))
        print(f"  {policy:<20} {(time.perf_counter() - start) * 1e3:8.2f} ms")
    print(f"\nPREQUAL: one probe answer joining a full pool of 16: {answer_us(eps, args.picks // 10):.3f} µs")
    ep = make_endpoints(1, False, rng)[0]
    print(f"\nrelay bookkeeping per call (on_start + on_first_response + on_finish, outlier on): "
          f"{bookkeeping_us(ep, args.picks):.3f} µs")


if __name__ == "__main__":
    main()
