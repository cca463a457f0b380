"""Resilience through a real control plane, proxy and backends (issue "Resilience
that does what the API says", "Done when"): retries with budgets, hedging,
circuit breakers, fault injection, rate limits, what is never retried, per-try
and connect timeouts, and mirroring. Numbers are the issue's; randomness is
seeded (the proxy's --seed, the backends' --seed).

Backends are tests/support/interop_server.py processes: --delay-ms adds latency,
--fail-code/--fail-percent fail a share of calls, --pushback-ms adds
grpc-retry-pushback-ms to failures, and each logs how many calls it received and
how many its client cancelled when it stops (Mesh.backend_stats)."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.support.mesh import CHANNEL_OPTIONS, Load, Mesh, backend_of, interop_unary, route_config
from tests.support.procs import poll_until

CLUSTER = "svc"


def mesh_of(endpoints: dict[str, list[str]], action: dict | None = None, lb_policy: str = "ROUND_ROBIN",
            cluster: dict | None = None, extra_routes: list[dict] | None = None) -> dict:
    """A MeshConfig dict: clusters over `endpoints` (the first is the routed one, with
    `cluster` fields), one catch-all route to it with `action` fields."""
    names = list(endpoints)
    clusters = [{"name": n, "lb_policy": lb_policy, **((cluster or {}) if n == names[0] else {})} for n in names]
    route = {"name": "all", "match": {"prefix": "/"}, "route": {"cluster": names[0], **(action or {})}}
    return {
        "clusters": clusters,
        "endpoints": [{"cluster": n, "endpoints": [{"address": a} for a in addrs]} for n, addrs in endpoints.items()],
        "routes": [route_config((extra_routes or []) + [route])],
    }


def run_calls(address: str, n: int, call: Callable[[grpc.Channel], object], threads: int = 8) -> list:
    """`n` calls spread over `threads` client threads (one channel each); returns each
    call's outcome: its result, or the grpc.RpcError it raised."""
    outcomes: list = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker():
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                try:
                    result = call(channel)
                except grpc.RpcError as e:
                    result = e
                with lock:
                    outcomes.append(result)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return outcomes


def failures(outcomes: list) -> list[grpc.RpcError]:
    return [o for o in outcomes if isinstance(o, grpc.RpcError)]


def timed_unary(channel: grpc.Channel, metadata=(), timeout: float = 5.0) -> tuple[str, float]:
    start = time.monotonic()
    return interop_unary_with(channel, metadata, timeout), time.monotonic() - start


def interop_unary_with(channel: grpc.Channel, metadata=(), timeout: float = 5.0) -> str:
    _, call = test_pb2_grpc.TestServiceStub(channel).UnaryCall.with_call(
        messages_pb2.SimpleRequest(response_size=10), metadata=metadata, timeout=timeout)
    return backend_of(call)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# ---------------------------------------------------------------- 1. a killed endpoint

def server_id(channel: grpc.Channel) -> str:
    """One UnaryCall; the answering backend's name from the response message."""
    return test_pb2_grpc.TestServiceStub(channel).UnaryCall(messages_pb2.SimpleRequest(response_size=10),
                                                            timeout=5).server_id


def test_killed_endpoint_with_retries_on_loses_no_call(tmp_path):
    # The backends answer as a plain unary handler does: headers, message and trailers
    # together. A call whose response headers the proxy already relayed is committed
    # (gRFC A6) and cannot be retried; here none is caught between them.
    with Mesh(tmp_path) as mesh:
        addresses = [mesh.start_backend(n, "interop", "--lazy-headers") for n in ("a", "b", "c")]
        mesh.start_control_plane(mesh_of(
            {CLUSTER: addresses}, {"retry_policy": {"retry_on": ["UNAVAILABLE", "reset"], "num_retries": 2}},
            lb_policy="PEAK_EWMA"))
        proxy = mesh.start_proxy()
        with Load(proxy.address, server_id, threads=16) as load:
            load.wait_calls(300)
            os.kill(mesh.backend_procs["a"].pid, signal.SIGKILL)
            killed = time.monotonic()
            load.wait_calls(1500, after=killed, timeout=30)
        assert load.failures == []
        assert set(load.labels(after=killed + 1.0)) <= {"b", "c"}
        assert proxy.metric("meshgrpc_proxy_retries_total", cluster=CLUSTER) > 0


# ---------------------------------------------------------------- 2. a flaky endpoint and the budget

def test_flaky_endpoint_with_two_retries_costs_the_client_under_one_percent(tmp_path):
    with Mesh(tmp_path) as mesh:
        good = mesh.start_backend("good")
        flaky = mesh.start_backend("flaky", "interop", "--fail-code", "14", "--fail-percent", "50", "--seed", "1")
        mesh.start_control_plane(mesh_of({CLUSTER: [good, flaky]}, {"retry_policy": {"num_retries": 2}}))
        proxy = mesh.start_proxy("proxy-1", "--seed", "1")
        outcomes = run_calls(proxy.address, 600, interop_unary, threads=2)
        assert len(failures(outcomes)) < 6, failures(outcomes)[:3]


def test_retry_budget_bounds_the_extra_load_on_the_backends(tmp_path):
    with Mesh(tmp_path) as mesh:
        good = mesh.start_backend("good")
        flaky = mesh.start_backend("flaky", "interop", "--fail-code", "14", "--fail-percent", "50", "--seed", "2")
        budget = {"retry_ratio": 0.2, "min_retries_per_second": 10, "ttl": "2s"}
        mesh.start_control_plane(mesh_of({CLUSTER: [good, flaky]}, {"retry_policy": {"num_retries": 2}},
                                         cluster={"retry_budget": budget,
                                                  "circuit_breaker": {"max_retries": 1000}}))
        proxy = mesh.start_proxy("proxy-1", "--seed", "2")
        start = time.monotonic()
        with Load(proxy.address, interop_unary, threads=8) as load:
            poll_until(lambda: time.monotonic() - start > 4.0, 10, "4 s of load")
        elapsed = time.monotonic() - start
        offered = load.ok + len(load.failures)
        received = mesh.backend_stats("good")["calls"] + mesh.backend_stats("flaky")["calls"]
        extra = received - offered
        # In any 2 s window retries stay within 0.2 x its calls + 10/s x 2 s; over the
        # whole run that is 20% + 10/s, plus one window's reserve at the start.
        assert 0 < extra <= 0.2 * offered + 10 * (elapsed + 2), (offered, received, elapsed)
        assert proxy.metric("meshgrpc_proxy_retries_refused_total", limit="retry_budget") > 0


# ---------------------------------------------------------------- 3. hedging

def test_hedging_cuts_the_tail_of_a_slow_endpoint_and_cancels_every_loser(tmp_path):
    with Mesh(tmp_path) as mesh:
        # The slow endpoint is far slower than any scheduling delay of a shared
        # machine, so "no call waited for it" is a bound with a wide margin.
        slow = mesh.start_backend("slow", "interop", "--delay-ms", "2000")
        fast = [mesh.start_backend(n, "interop", "--delay-ms", "2") for n in ("f1", "f2")]
        mesh.start_control_plane(mesh_of({CLUSTER: [slow, *fast]}, {"hedge_policy": {"hedge_after": "0.020s"}},
                                         cluster={"circuit_breaker": {"max_retries": 100}}))
        proxy = mesh.start_proxy()
        outcomes = run_calls(proxy.address, 200, timed_unary, threads=2)
        assert not failures(outcomes)
        assert {label for label, _ in outcomes} == {"f1", "f2"}  # the slow one never wins
        latencies = [seconds for _, seconds in outcomes]
        # Without hedging a third of the calls would take two seconds.
        assert max(latencies) < 1.0 and p99(latencies) < 0.500, sorted(latencies)[-5:]
        hedges = proxy.metric("meshgrpc_proxy_hedges_total", cluster=CLUSTER)
        stats = mesh.backend_stats("slow")
        assert stats["calls"] > 50 and stats["cancelled"] == stats["calls"] <= hedges


# ---------------------------------------------------------------- 4. circuit breaker

def test_max_requests_fails_the_calls_over_it_at_once(tmp_path):
    with Mesh(tmp_path) as mesh:
        slow = mesh.start_backend("slow", "interop", "--delay-ms", "1500")
        mesh.start_control_plane(mesh_of({CLUSTER: [slow]}, cluster={"circuit_breaker": {"max_requests": 10}}))
        proxy = mesh.start_proxy()
        channels = [grpc.insecure_channel(proxy.address, options=CHANNEL_OPTIONS) for _ in range(50)]
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=10)
        barrier = threading.Barrier(50)
        results: list = [None] * 50

        def one(i):
            barrier.wait()
            start = time.monotonic()
            try:
                interop_unary(channels[i], timeout=5)
                results[i] = ("ok", time.monotonic() - start, "")
            except grpc.RpcError as e:
                results[i] = (e.code().name, time.monotonic() - start, e.details())

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for ch in channels:
            ch.close()
        refused = [r for r in results if r[0] != "ok"]
        assert len(refused) == 40 and len([r for r in results if r[0] == "ok"]) == 10
        assert {(code, details) for code, _, details in refused} == \
            {("UNAVAILABLE", f"cluster {CLUSTER}: max_requests 10 reached")}
        assert max(seconds for _, seconds, _ in refused) < 1.0  # at once: none waited for the slow calls
        assert proxy.metric("meshgrpc_proxy_breaker_overflows_total", breaker="max_requests") == 40


def test_max_connections_per_endpoint_caps_the_pool_and_calls_wait_for_a_stream(tmp_path):
    # The backend takes one stream per connection: calls beyond the cap wait their turn.
    def four_at_once(address: str) -> float:
        start = time.monotonic()
        outcomes = run_calls(address, 4, interop_unary, threads=4)
        assert not failures(outcomes)
        return time.monotonic() - start

    with Mesh(tmp_path) as mesh:
        slow = mesh.start_backend("slow", "interop", "--delay-ms", "300", "--max-streams", "1")
        config = mesh_of({CLUSTER: [slow]}, cluster={"circuit_breaker": {"max_connections_per_endpoint": 1}})
        mesh.start_control_plane(config)
        proxy = mesh.start_proxy()
        assert four_at_once(proxy.address) >= 4 * 0.3  # one connection, one stream: one call at a time
        config["clusters"][0]["circuit_breaker"]["max_connections_per_endpoint"] = 4
        mesh.apply(config)
        proxy.wait_config(lambda d: d["effective"]["clusters"][CLUSTER]["circuit_breaker"]
                          ["max_connections_per_endpoint"] == 4, what="the new cap")
        assert four_at_once(proxy.address) < 3 * 0.3  # up to four connections: in parallel


# ---------------------------------------------------------------- 5. fault injection

def test_abort_ten_percent_and_the_header_gate(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        abort = {"abort": {"grpc_status": "UNAVAILABLE", "percent": 10}}
        gated = {"name": "gated", "match": {"prefix": "/", "headers": [{"name": "x-route", "exact": "gated"}]},
                 "route": {"cluster": CLUSTER, "fault": {**abort, "header_gate": "x-meshgrpc-fault"}}}
        mesh.start_control_plane(mesh_of({CLUSTER: [backend]}, {"fault": abort}, extra_routes=[gated]))
        proxy = mesh.start_proxy("proxy-1", "--seed", "5")
        outcomes = run_calls(proxy.address, 5000, interop_unary)
        aborted = failures(outcomes)
        assert 0.08 <= len(aborted) / 5000 <= 0.12
        assert {(e.code(), e.details()) for e in aborted} == {(grpc.StatusCode.UNAVAILABLE, "fault injected by proxy")}

        def gated_call(tagged: bool):
            metadata = [("x-route", "gated")] + ([("x-meshgrpc-fault", "1")] if tagged else [])
            return lambda ch: interop_unary_with(ch, metadata)
        assert not failures(run_calls(proxy.address, 500, gated_call(False)))
        assert 25 <= len(failures(run_calls(proxy.address, 500, gated_call(True)))) <= 75


# ---------------------------------------------------------------- 6. rate limit

def test_rate_limit_lets_the_rate_through_and_pushes_back_the_rest(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_of({CLUSTER: [backend]}, {"rate_limit": {"requests_per_second": 100,
                                                                               "burst": 10}}))
        proxy = mesh.start_proxy()
        outcomes, span = paced_calls(proxy.address, rate=300, seconds=5)
        ok = [o for o in outcomes if not isinstance(o, grpc.RpcError)]
        refused = failures(outcomes)
        # The bucket starts full (the burst) and refills at the rate over the span
        # the calls actually took; a loaded client may start them late, and a
        # stalled client leaves the bucket full for a while (tokens over the burst
        # are not kept), so fewer than the rate may pass, never more.
        assert len(outcomes) / span > 150, (len(outcomes), span)  # offered well over the rate
        most = 100 * span + 10
        assert 0.75 * most <= len(ok) <= 1.05 * most, (len(ok), most, len(refused))
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        pushbacks = [dict(e.trailing_metadata()).get("grpc-retry-pushback-ms") for e in refused]
        assert all(p is not None and 1 <= int(p) <= 10 for p in pushbacks), pushbacks[:5]


def paced_calls(address: str, rate: float, seconds: float, threads: int = 6) -> tuple[list, float]:
    """Calls started at `rate` per second for `seconds` (each thread keeps its share
    of the schedule); returns their outcomes and the seconds from the first call's
    start to the last one's."""
    outcomes: list = []
    starts: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.5

    def worker(k: int):
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            i = k
            while i < rate * seconds:
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not synchronisation
                started = time.monotonic()
                try:
                    result = interop_unary(channel)
                except grpc.RpcError as e:
                    result = e
                with lock:
                    outcomes.append(result)
                    starts.append(started)
                i += threads

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 60)
    return outcomes, max(starts) - min(starts)


# ---------------------------------------------------------------- 7. what is never retried

RETRY_ALL = {"retry_policy": {"retry_on": ["UNAVAILABLE", "reset"], "num_retries": 3}}


def test_calls_that_must_not_be_retried_are_not(tmp_path):
    with Mesh(tmp_path) as mesh:
        streaming = mesh.start_backend("streaming", "interop", "--fail-code", "14", "--fail-after", "1")
        failing = mesh.start_backend("failing", "interop", "--fail-code", "14")
        forbidding = mesh.start_backend("forbidding", "interop", "--fail-code", "14", "--pushback-ms", "-1")

        def to(cluster: str) -> dict:
            return {"name": cluster, "match": {"prefix": "/", "headers": [{"name": "x-to", "exact": cluster}]},
                    "route": {"cluster": cluster, **RETRY_ALL}}
        config = mesh_of({"streaming": [streaming], "failing": [failing], "forbidding": [forbidding]}, RETRY_ALL,
                         extra_routes=[to("failing"), to("forbidding")])
        mesh.start_control_plane(config)
        proxy = mesh.start_proxy()
        with grpc.insecure_channel(proxy.address, options=CHANNEL_OPTIONS) as channel:
            stub = test_pb2_grpc.TestServiceStub(channel)
            # A server stream that already delivered a message, then failed.
            request = messages_pb2.StreamingOutputCallRequest(
                response_parameters=[messages_pb2.ResponseParameters(size=5)] * 3)
            got = []
            with pytest.raises(grpc.RpcError) as err:
                for response in stub.StreamingOutputCall(request, timeout=5):
                    got.append(response)
            assert len(got) == 1 and err.value.code() == grpc.StatusCode.UNAVAILABLE
            # A client stream over the replay buffer (64 KiB by default).
            chunks = [messages_pb2.StreamingInputCallRequest(payload=messages_pb2.Payload(body=bytes(16 << 10)))] * 6
            with pytest.raises(grpc.RpcError) as err:
                stub.StreamingInputCall(iter(chunks), metadata=[("x-to", "failing")], timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            # A unary call whose server says "do not retry".
            with pytest.raises(grpc.RpcError) as err:
                interop_unary_with(channel, [("x-to", "forbidding")])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert mesh.backend_stats("streaming")["calls"] == 1
        assert mesh.backend_stats("failing")["calls"] == 1
        assert mesh.backend_stats("forbidding")["calls"] == 1


# ---------------------------------------------------------------- 8. per-try timeout

def test_per_try_timeout_moves_a_slow_attempt_to_a_fast_endpoint(tmp_path):
    with Mesh(tmp_path) as mesh:
        slow = mesh.start_backend("slow", "interop", "--delay-ms", "2000")
        fast = mesh.start_backend("fast", "interop", "--delay-ms", "2")
        # Three retries, so a call whose first attempt met a load spike on the fast
        # endpoint still has the fast one left after the slow one.
        policy = {"per_try_timeout": "0.200s", "num_retries": 3, "retry_back_off": {"base_interval": "0.005s"}}
        mesh.start_control_plane(mesh_of({CLUSTER: [slow, fast]}, {"retry_policy": policy}))
        proxy = mesh.start_proxy()
        outcomes = run_calls(proxy.address, 40, timed_unary, threads=1)
        assert not failures(outcomes)
        assert {label for label, _ in outcomes} == {"fast"}
        retried = sorted(seconds for _, seconds in outcomes if seconds > 0.195)
        # A retried call costs the 200 ms per-try timeout and a fast attempt (round
        # robin starts most calls on the slow one); one that waited for the slow
        # endpoint would take two seconds.
        assert len(retried) >= 15 and statistics.median(retried) < 0.300 and max(retried) < 1.5, retried
        assert mesh.backend_stats("slow")["cancelled"] >= 15


# ---------------------------------------------------------------- 9. connect timeout

class Blackhole:
    """A listening socket whose accept queue is full: further SYNs are dropped, so a
    connect to it hangs until the connector gives up (verified in __init__)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.address = "127.0.0.1:%d" % self.server.getsockname()[1]
        self.fill = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(self.server.getsockname())
            except BlockingIOError:
                pass
            self.fill.append(s)
        probe = socket.socket()
        probe.settimeout(0.3)
        with pytest.raises(TimeoutError):
            probe.connect(self.server.getsockname())
        probe.close()

    def close(self) -> None:
        for s in self.fill + [self.server]:
            s.close()


def test_connect_timeout_bounds_a_connect_that_hangs(tmp_path):
    hole = Blackhole()
    try:
        with Mesh(tmp_path) as mesh:
            mesh.start_control_plane(mesh_of({CLUSTER: [hole.address]}, cluster={"connect_timeout": "0.200s"}))
            proxy = mesh.start_proxy()
            with grpc.insecure_channel(proxy.address, options=CHANNEL_OPTIONS) as channel:
                start = time.monotonic()
                with pytest.raises(grpc.RpcError) as err:
                    interop_unary(channel, timeout=10)
                took = time.monotonic() - start
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "cannot connect" in err.value.details()
            assert 0.150 <= took <= 0.250 + 0.1, took  # 200 ms ± 50, plus a loaded machine's call overhead
    finally:
        hole.close()


# ---------------------------------------------------------------- 10. mirroring

def test_mirroring_to_a_stopped_shadow_changes_nothing_for_the_real_calls(tmp_path):
    with Mesh(tmp_path) as mesh:
        real = mesh.start_backend("real")
        shadow = mesh.start_backend("shadow")
        config = mesh_of({CLUSTER: [real], "shadow": [shadow]})
        mesh.start_control_plane(config)
        proxy = mesh.start_proxy()
        before = [s for _, s in run_calls(proxy.address, 2000, timed_unary, threads=4)]
        config["routes"][0]["virtual_hosts"][0]["routes"][0]["route"]["mirror"] = {"cluster": "shadow"}
        mesh.apply(config)
        proxy.wait_config(lambda d: "mirror" in str(d["config"]["routes"]), what="the mirror route")
        os.kill(mesh.backend_procs["shadow"].pid, signal.SIGSTOP)
        try:
            run_calls(proxy.address, 500, timed_unary, threads=4)  # warm: the shadow's copies fill max_in_flight
            rss_before = proxy.rss_bytes()
            outcomes = run_calls(proxy.address, 10_000, timed_unary, threads=4)
            rss_after = proxy.rss_bytes()
        finally:
            os.kill(mesh.backend_procs["shadow"].pid, signal.SIGCONT)
        assert not failures(outcomes)
        during = [s for _, s in outcomes]
        # A mirror that held real calls up would hold them until their 5 s deadline
        # (the shadow never answers); the bound leaves room for a shared machine.
        assert p99(during) < max(3 * p99(before) + 0.010, 0.250), (p99(before), p99(during))
        assert rss_after - rss_before < 10 << 20
        assert proxy.metric("meshgrpc_proxy_mirrored_total", cluster="shadow") >= 100
