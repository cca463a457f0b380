"""The resilience decisions on a fake clock and a seeded rng: retry budgets,
breakers, retry and hedge decisions with back-off and pushback, token buckets,
fault draws and mirror admission."""

from __future__ import annotations

import random

import pytest

from meshgrpc.config.specs import CircuitBreakerSpec, FaultSpec, HedgeSpec, MirrorSpec, RateLimitSpec, RetryBudgetSpec
from meshgrpc.config.specs.routes import CONNECT_FAILURE, RESET, RetrySpec
from meshgrpc.proxy.resilience.breaker import ClusterLoad
from meshgrpc.proxy.resilience.budget import RetryBudget
from meshgrpc.proxy.resilience.fault import FaultInjector
from meshgrpc.proxy.resilience.hedge import HedgeState
from meshgrpc.proxy.resilience.mirror import MirrorPolicy
from meshgrpc.proxy.resilience.rate_limit import RateLimiter
from meshgrpc.proxy.resilience.retry import NO_RETRY, TRANSPARENT, Failure, Kind, RetryState, pushback_of
from tests.unit.balancer_helpers import FakeClock

UNAVAILABLE, INTERNAL, NOT_FOUND = 14, 13, 5


# ---------------------------------------------------------------- retry budget

def test_budget_allows_ratio_of_calls_plus_the_reserve():
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetSpec(retry_ratio=0.2, min_retries_per_second=1, ttl=10.0), clock)
    for _ in range(100):
        budget.deposit()
    allowed = sum(budget.withdraw() for _ in range(100))
    assert allowed == 30  # 0.2 x 100 calls + 1/s x 10 s


def test_budget_window_slides_so_old_calls_and_retries_are_forgotten():
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetSpec(retry_ratio=0.5, min_retries_per_second=0, ttl=10.0), clock)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(10)) == 5
    clock.advance(10.5)
    assert not budget.withdraw()  # the deposits left the window with the withdrawals
    budget.deposit()
    budget.deposit()
    assert budget.withdraw() and not budget.withdraw()


def test_budget_with_no_reserve_and_no_calls_refuses():
    budget = RetryBudget(RetryBudgetSpec(retry_ratio=0.2, min_retries_per_second=0, ttl=1.0), FakeClock())
    assert not budget.withdraw()


# ---------------------------------------------------------------- circuit breakers

def test_breakers_name_the_limit_and_the_cluster():
    load = ClusterLoad("greeter")
    limits = CircuitBreakerSpec(max_requests=2, max_retries=1, max_pending_requests=1)
    assert load.admit_request(limits) is None
    load.requests = 2
    assert load.admit_request(limits) == "cluster greeter: max_requests 2 reached"
    load.pending = 1
    assert load.admit_pending(limits) == "cluster greeter: max_pending_requests 1 reached"
    budget = RetryBudget(RetryBudgetSpec(min_retries_per_second=1), FakeClock())
    assert load.admit_retry(limits, budget) is None
    load.retries = 1
    assert load.admit_retry(limits, budget) == "cluster greeter: max_retries 1 reached"


def test_retry_over_the_budget_is_refused_after_the_breaker_allows_it():
    load = ClusterLoad("c")
    budget = RetryBudget(RetryBudgetSpec(retry_ratio=0.0, min_retries_per_second=0), FakeClock())
    assert load.admit_retry(CircuitBreakerSpec(), budget) == "cluster c: retry budget exhausted"


# ---------------------------------------------------------------- retry decisions

def status(code: int, pushback=None) -> Failure:
    return Failure(Kind.STATUS, "failed", code, pushback)


def test_never_received_calls_are_retried_at_once_without_a_policy_up_to_twice():
    state = RetryState(None)
    refused = Failure(Kind.CONNECT, "no connection")
    assert [state.decide(refused, random.Random(0)) for _ in range(TRANSPARENT + 1)] == \
        [(0.0, True)] * TRANSPARENT + [None]
    assert state.decide(status(UNAVAILABLE), random.Random(0)) is None  # no policy: nothing else


def test_policy_retries_only_the_statuses_and_conditions_it_names():
    policy = RetrySpec(codes=frozenset({UNAVAILABLE}), conditions=frozenset({RESET}), num_retries=10)
    state = RetryState(policy)
    rng = random.Random(0)
    assert state.decide(status(UNAVAILABLE), rng) is not None
    assert state.decide(status(INTERNAL), rng) is None
    assert state.decide(Failure(Kind.RESET, "reset"), rng) is not None
    assert state.decide(Failure(Kind.PER_TRY_TIMEOUT, "slow"), rng) is not None  # always
    for _ in range(TRANSPARENT):
        state.decide(Failure(Kind.REFUSED, "refused"), rng)
    assert state.decide(Failure(Kind.REFUSED, "refused"), rng) is None  # refused-stream not named


def test_connect_failure_condition_lets_the_policy_retry_beyond_the_transparent_ones():
    state = RetryState(RetrySpec(conditions=frozenset({CONNECT_FAILURE}), num_retries=1))
    failure = Failure(Kind.CONNECT, "no connection")
    results = [state.decide(failure, random.Random(0)) for _ in range(TRANSPARENT + 2)]
    assert [r[1] if r else None for r in results] == [True] * TRANSPARENT + [False, None]


def test_num_retries_bounds_the_policy_retries():
    state = RetryState(RetrySpec(num_retries=2))
    rng = random.Random(0)
    assert [state.decide(status(UNAVAILABLE), rng) is not None for _ in range(3)] == [True, True, False]
    assert state.attempts == 2


def test_back_off_is_exponential_with_full_jitter_and_capped():
    policy = RetrySpec(num_retries=10, base_interval=0.025, max_interval=0.25)
    delays = {n: [] for n in range(1, 6)}
    for seed in range(300):
        state = RetryState(policy)
        rng = random.Random(seed)
        for n in range(1, 6):
            delays[n].append(state.decide(status(UNAVAILABLE), rng)[0])
    for n, values in delays.items():
        ceiling = min(0.25, 0.025 * 2 ** (n - 1))
        assert all(0 <= v < ceiling for v in values)
        assert max(values) > 0.8 * ceiling and min(values) < 0.2 * ceiling  # spread over [0, ceiling)


def test_pushback_replaces_the_back_off_and_a_negative_one_forbids_retrying():
    state = RetryState(RetrySpec(num_retries=5))
    assert state.decide(status(UNAVAILABLE, pushback=0.5), random.Random(0)) == (0.5, False)
    assert state.decide(status(UNAVAILABLE, pushback=NO_RETRY), random.Random(0)) is None
    assert state.decide(Failure(Kind.CONNECT, "x", pushback=NO_RETRY), random.Random(0)) is None


@pytest.mark.parametrize("value, parsed", [(b"500", 0.5), (b"0", 0.0), (b"-1", NO_RETRY), (b"soon", NO_RETRY),
                                           (b" 20 ", 0.02)])
def test_pushback_header_values(value, parsed):
    assert pushback_of([(b"grpc-status", b"14"), (b"grpc-retry-pushback-ms", value)]) == parsed
    assert pushback_of([(b"grpc-status", b"14")]) is None


# ---------------------------------------------------------------- hedging

def test_hedges_stop_at_max_attempts_and_non_fatal_statuses_let_others_go_on():
    hedge = HedgeState(HedgeSpec(hedge_after=0.02, max_attempts=3, non_fatal_codes=frozenset({UNAVAILABLE})))
    assert hedge.may_start()
    hedge.started = 3
    assert not hedge.may_start()
    assert not hedge.fatal(UNAVAILABLE) and hedge.fatal(NOT_FOUND) and hedge.fatal(0)
    assert hedge.next_delay(None) is None  # no attempts left


def test_hedge_pushback_delays_the_next_hedge_or_stops_hedging():
    hedge = HedgeState(HedgeSpec(hedge_after=1.0, max_attempts=5))
    assert hedge.next_delay(None) == 0.0  # a non-fatal failure: the next hedge goes at once
    assert hedge.next_delay(0.3) == 0.3
    assert hedge.next_delay(NO_RETRY) is None and not hedge.may_start()


# ---------------------------------------------------------------- rate limits

def test_token_bucket_allows_the_burst_then_the_rate_and_says_when_to_come_back():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSpec(requests_per_second=10, burst=5), clock)
    assert [limiter.admit([]) for _ in range(5)] == [0.0] * 5
    assert limiter.admit([]) == pytest.approx(0.1)
    clock.advance(0.05)
    assert limiter.admit([]) == pytest.approx(0.05)
    clock.advance(0.05)
    assert limiter.admit([]) == 0.0
    clock.advance(100)  # an idle bucket refills to the burst, no more
    assert sum(limiter.admit([]) == 0.0 for _ in range(10)) == 5
    assert limiter.refused == 7


def test_keyed_buckets_are_separate_and_bounded_least_recently_used_first():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSpec(requests_per_second=1, burst=1, key_header="x-user", max_keys=2), clock)
    a, b, c = ([(b"x-user", name)] for name in (b"a", b"b", b"c"))
    assert limiter.admit(a) == 0.0 and limiter.admit(a) > 0
    assert limiter.admit(b) == 0.0  # another key, another bucket
    assert limiter.admit([]) == 0.0 and limiter.admit([]) > 0  # no header: one shared bucket
    assert limiter.admit(c) == 0.0  # a third key evicts the least recently used (a)
    assert limiter.admit(a) == 0.0  # a starts afresh with a full bucket
    assert len(limiter._buckets) == 2


# ---------------------------------------------------------------- faults and mirrors

def test_abort_percent_is_drawn_per_call_and_reproducible_with_a_seed():
    def run(seed):
        injector = FaultInjector(FaultSpec(abort_grpc_status=UNAVAILABLE, abort_percent=10), random.Random(seed).random)
        return [injector.decide([])[1] is not None for _ in range(5000)]
    first = run(7)
    assert first == run(7)
    assert 0.08 < sum(first) / 5000 < 0.12


def test_header_gate_limits_faults_to_tagged_calls_and_statuses_map_both_ways():
    injector = FaultInjector(FaultSpec(abort_http_status=503, abort_percent=100, header_gate="x-fault"),
                             random.Random(0).random)
    assert injector.decide([(b"x-other", b"1")]) == (None, None)
    _, abort = injector.decide([(b"x-fault", b"yes")])
    assert (abort.grpc_status, abort.http_status) == (UNAVAILABLE, 503)
    grpc_abort = FaultInjector(FaultSpec(abort_grpc_status=NOT_FOUND, abort_percent=100), random.Random(0).random)
    assert grpc_abort.decide([])[1].http_status == 404


def test_delay_applies_to_its_share_of_calls():
    injector = FaultInjector(FaultSpec(delay=0.2, delay_percent=50), random.Random(3).random)
    delays = [injector.decide([])[0] for _ in range(1000)]
    assert set(delays) == {None, 0.2} and 400 < delays.count(0.2) < 600


def test_mirror_admits_its_share_and_no_more_than_max_in_flight():
    policy = MirrorPolicy(MirrorSpec(cluster="shadow", percent=100, max_in_flight=2), random.Random(0).random)
    assert [policy.admit() for _ in range(3)] == [True, True, False]
    assert (policy.in_flight, policy.skipped) == (2, 1)
    policy.in_flight -= 1
    assert policy.admit()
    half = MirrorPolicy(MirrorSpec(cluster="shadow", percent=50, max_in_flight=10**6), random.Random(1).random)
    assert 400 < sum(half.admit() for _ in range(1000)) < 600
