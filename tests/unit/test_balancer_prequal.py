"""PREQUAL at the picker level on a fake clock and seeded rng, with a fake prober
standing in for the probes' I/O: the hot-cold rule, probe age and reuse, the probe
rate and its cap, the proxy's own view for endpoints that do not answer, and the
fallback to PEAK_EWMA."""

from __future__ import annotations

import random

import pytest

from meshgrpc.proxy.balancer import PickerEnv, build_picker
from meshgrpc.proxy.balancer.prequal import PrequalPicker, reuse_budget
from meshgrpc.proxy.balancer.probe_pool import HOT, Answer, ProbePool, quantile
from meshgrpc.proxy.orca.report import LoadReport
from tests.unit.balancer_helpers import FakeClock, cluster, endpoints


class FakeProber:
    """Records probes; `answer()` delivers them, as the real prober's workers would."""

    def __init__(self, refusing: tuple[str, ...] = ()) -> None:
        self.refusing = set(refusing)
        self.queued: list = []
        self.sent = 0

    def probe(self, endpoint, reply_to, index: int) -> bool:
        if endpoint.host in self.refusing:
            return False
        self.queued.append((endpoint, reply_to, index))
        self.sent += 1
        return True

    def answer(self, reports: dict[str, LoadReport | None]) -> None:
        queued, self.queued = self.queued, []
        for endpoint, reply_to, index in queued:
            reply_to.on_probe(index, reports[endpoint.host])


def prequal(**tuning):
    return cluster("PREQUAL", prequal=tuning)


def picker_for(eps, clock, prober=None, seed: int = 0, **tuning) -> PrequalPicker:
    env = PickerEnv(rng=random.Random(seed), clock=clock, prober=prober)
    picker = build_picker(prequal(**tuning), eps, env)
    assert isinstance(picker, PrequalPicker)
    return picker


def rif(n: float, latency_ms: float) -> LoadReport:
    return LoadReport(rif=n, latency_s=latency_ms / 1000)


# ---------------------------------------------------------------- the hot-cold rule

def test_quantile_interpolates_between_sorted_values():
    assert quantile([2, 3, 10], 0.84) == pytest.approx(3 + 0.68 * 7)
    assert quantile([5], 0.84) == 5 and quantile([1, 2], 1.0) == 2 and quantile([4, 1, 9], 0.0) == 1


def test_lowest_latency_cold_answer_wins_over_a_faster_hot_one():
    pool = ProbePool(16, 0.84)
    for i, (n, latency) in enumerate([(10, 0.001), (2, 0.050), (3, 0.020)]):
        pool.add(Answer(i, n, latency, 0.0, 5), 0.0, 1.0)
    assert pool.threshold == pytest.approx(7.76)
    assert pool.best(0.0, 1.0).index == 2  # cold and the fastest cold one; #0 is faster but hot


def test_when_every_answer_is_hot_the_fewest_in_flight_wins():
    pool = ProbePool(16, 0.0)  # quantile 0: anything above the least loaded is hot
    pool.add(Answer(0, 4, 0.001, 0.0, 5), 0.0, 1.0)
    pool.add(Answer(1, 3, 0.090, 0.0, 5), 0.0, 1.0)
    pool.add(Answer(2, 5, 0.002, 0.0, 5), 0.0, 1.0)
    first = pool.best(0.0, 1.0)
    assert first.index == 1  # the only cold one
    pool.use(first)  # its rif goes to 4: now hot too
    assert first.rif == 4 and pool.best(0.0, 1.0).index in (0, 1)
    keys = {a.index: a.rif for a in pool.answers()}
    assert pool.best(0.0, 1.0).rif == min(keys.values())  # all hot: lowest rif
    assert HOT > 1e6


def test_hot_rif_quantile_is_read_from_config():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", "d", clock=clock)
    prober = FakeProber()
    reports = {"a": rif(1, 90), "b": rif(2, 80), "c": rif(3, 70), "d": rif(8, 1)}
    for q, expected in ((0.84, "c"), (1.0, "d")):  # d is fastest but hot below the top quantile
        picker = picker_for(eps, clock, prober, hot_rif_quantile=q, probes_per_call=4)
        picker.pick()
        prober.answer(reports)
        assert picker.pick().host == expected, f"hot_rif_quantile={q}"


# ---------------------------------------------------------------- probing

def test_each_call_probes_probes_per_call_distinct_endpoints():
    clock = FakeClock()
    eps = endpoints(*"abcdef", clock=clock)
    prober = FakeProber()
    picker = picker_for(eps, clock, prober)
    picker.pick()
    assert len(prober.queued) == 3 and len({e.host for e, _, _ in prober.queued}) == 3
    half = picker_for(eps, clock, FakeProber(), probes_per_call=0.5)
    for _ in range(10):
        half.pick()
    assert half.counts.probes == 5


def test_max_probes_per_second_caps_the_probes_and_counts_the_rest():
    clock = FakeClock()
    eps = endpoints(*"abcdef", clock=clock)
    prober = FakeProber()
    picker = picker_for(eps, clock, prober, max_probes_per_second=100)  # a burst of 10, then 100/s
    for _ in range(1000):  # 1000 calls over one second: 3000 probes wanted
        picker.pick()
        clock.advance(0.001)
    assert 100 <= prober.sent <= 111
    assert picker.counts.capped == 3000 - prober.sent


def test_answers_arrive_asynchronously_and_route_the_next_calls():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    prober = FakeProber()
    picker = picker_for(eps, clock, prober)
    picker.pick()  # nothing pooled yet: PEAK_EWMA chooses, the probes go out
    assert picker.counts.fallback == 1
    prober.answer({"a": rif(5, 10), "b": rif(1, 30), "c": rif(2, 20)})
    assert picker.pick().host == "c"  # cold (threshold 4.36) and faster than b
    assert picker.counts.pooled == 1


def test_answers_older_than_max_probe_age_are_not_used():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    prober = FakeProber()
    picker = picker_for(eps, clock, prober, max_probe_age="0.5s", probes_per_call=0)
    for i, host in enumerate("abc"):
        picker.on_probe(i, rif(1, 10 * (i + 1)))
    clock.advance(0.4)
    assert picker.pick().host == "a"
    clock.advance(0.2)
    picker.pick()
    assert picker.counts.fallback == 1 and len(picker._pool) == 0


def test_an_answer_routes_at_most_its_reuse_budget_and_counts_each_call():
    clock = FakeClock()
    eps = endpoints(*"abcdefgh", clock=clock)
    picker = picker_for(eps, clock, FakeProber(), max_reuse=1, probes_per_call=0)
    for i in range(3):
        picker.on_probe(i, rif(0, 1 + i))
    assert [picker.pick().host for _ in range(2)] == ["a", "b"]  # each used once, then gone
    assert picker.counts.pooled == 2 and len(picker._pool) == 1
    picker.pick()
    assert picker.counts.fallback == 1  # one answer left is too few to choose from


def test_using_an_answer_counts_the_call_in_its_requests_in_flight():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    picker = picker_for(eps, clock, FakeProber(), probes_per_call=0, max_reuse=10)
    for i, (n, latency) in enumerate([(0, 1), (3, 9), (3, 8)]):
        picker.on_probe(i, rif(n, latency))
    hosts = [picker.pick().host for _ in range(6)]
    assert hosts[0] == "a" and "a" in hosts[1:]  # a is picked until its counted rif makes it hot
    assert max(a.rif for a in picker._pool.answers() if a.index == 0) >= 3


def test_reuse_budget_follows_the_paper_and_is_capped():
    spec = prequal().prequal
    assert reuse_budget(spec, 100) == pytest.approx(1 + 1 / ((1 - 16 / 100) * 3 - 1))
    assert reuse_budget(spec, 16) == 16  # probes cannot keep the pool fresh: the cap
    assert reuse_budget(prequal(max_reuse=3).prequal, 16) == 3


def test_pool_keeps_one_answer_per_endpoint_and_at_most_pool_size():
    pool = ProbePool(3, 0.84)
    for t, i in enumerate([0, 1, 0, 2, 3]):
        pool.add(Answer(i, 1, 0.01, float(t), 5), float(t), 100.0)
    assert sorted(a.index for a in pool.answers()) == [0, 2, 3]  # 1 was the oldest when 3 came
    clock = FakeClock()
    picker = picker_for(endpoints(*"abcdefgh", clock=clock), clock, FakeProber(), pool_size=4, probes_per_call=0)
    for i in range(8):
        picker.on_probe(i, rif(1, 10))
    assert len(picker._pool) == 4


def test_removals_owed_by_picks_make_room_on_arrivals_oldest_then_worst():
    pool = ProbePool(4, 0.84)
    for i, (n, latency) in enumerate([(1, 0.010), (9, 0.001), (1, 0.020), (2, 0.005)]):
        pool.add(Answer(i, n, latency, float(i), 5), float(i), 100.0)
    pool.owe_removals(1.0)
    pool.add(Answer(7, 1, 0.030, 10.0, 5), 10.0, 100.0)
    assert sorted(a.index for a in pool.answers()) == [1, 2, 3, 7]  # #0 was the oldest
    pool.owe_removals(1.0)
    pool.add(Answer(8, 1, 0.030, 11.0, 5), 11.0, 100.0)
    assert sorted(a.index for a in pool.answers()) == [2, 3, 7, 8]  # #1 the worst: the hottest


def test_a_pool_with_room_owes_no_removals():
    pool = ProbePool(16, 0.84)
    for i in range(3):
        pool.owe_removals(1.0)
        pool.add(Answer(i, 1, 0.01, float(i), 5), float(i), 100.0)
    assert len(pool) == 3


def test_with_out_of_band_reports_a_fresh_report_answers_the_probe_without_an_rpc():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    prober = FakeProber()
    env = PickerEnv(rng=random.Random(0), clock=clock, prober=prober)
    spec = cluster("PREQUAL", prequal={"probes_per_call": 3}, out_of_band_load_reports={"interval": "0.1s"})
    picker = build_picker(spec, eps, env)
    eps[0].on_load_report(rif(1, 10))
    clock.advance(0.2)  # older than 1.5 intervals: the stream may be stuck, so a probe goes out
    eps[1].on_load_report(rif(2, 20))
    eps[2].on_load_report(rif(0, 30))
    clock.advance(0.1)
    picker.pick()
    assert picker.counts.streamed == 2 and [e.host for e, _, _ in prober.queued] == ["a"]
    assert sorted(eps[a.index].host for a in picker._pool.answers()) == ["b", "c"]
    assert {a.at for a in picker._pool.answers()} == {clock() - 0.1}  # aged from when the reports came
    chosen = picker.pick()
    picker.pick()  # the same reports are not pooled again: the calls counted against them stand
    assert picker.counts.streamed == 2
    assert max(a.rif for a in picker._pool.answers() if eps[a.index] is chosen) >= 1


# ---------------------------------------------------------------- falling back

def test_endpoints_that_do_not_answer_probes_are_pooled_with_the_proxys_own_view():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    for _ in range(4):
        eps[0].on_start()  # a has 4 calls pending here
    prober = FakeProber(refusing=("a", "b", "c"))
    picker = picker_for(eps, clock, prober, probes_per_call=3)
    picker.pick()
    assert picker.counts.local == 3 and prober.sent == 0
    answers = {eps[a.index].host: a.rif for a in picker._pool.answers()}
    assert answers["a"] >= 4 and answers["b"] <= 1


def test_an_answer_without_requests_in_flight_counts_as_no_answer():
    clock = FakeClock()
    eps = endpoints("a", "b", clock=clock)
    picker = picker_for(eps, clock, FakeProber(), probes_per_call=0)
    picker.on_probe(0, LoadReport(qps=10.0))  # an ORCA server that does not send rif
    picker.on_probe(1, None)  # the prober found it does not answer probes
    assert picker.counts.local == 2 and len(picker._pool) == 2


def test_fewer_than_two_answers_fall_back_to_peak_ewma():
    clock = FakeClock()
    eps = endpoints("fast", "slow", clock=clock)
    eps[1].stats.rtt = 1.0  # PEAK_EWMA sees it as very slow
    picker = picker_for(eps, clock, FakeProber(), probes_per_call=0)
    picker.on_probe(1, rif(0, 1))  # one answer only, and for the slow one
    assert {picker.pick().host for _ in range(20)} == {"fast"}
    assert picker.counts.fallback == 20


def test_answers_of_pushed_back_or_failing_endpoints_are_skipped():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    picker = picker_for(eps, clock, FakeProber(), probes_per_call=0, max_reuse=100)
    for i in range(3):
        picker.on_probe(i, rif(0, 1 + i))
    eps[0].pushed_back(1.0)
    eps[1].on_start()
    eps[1].on_finish(False, 0.001, grpc_status=14)  # failed fast: its short latency is no evidence
    assert picker.pick().host == "c"


def test_a_cluster_of_one_needs_no_probes():
    clock = FakeClock()
    prober = FakeProber()
    single = build_picker(prequal(), endpoints("a", clock=clock), PickerEnv(clock=clock, prober=prober))
    assert single.pick().host == "a" and prober.sent == 0


def test_pooled_lists_the_pool_best_first_and_explain_takes_the_best_cold_one():
    clock = FakeClock()
    eps = endpoints("a", "b", "c", clock=clock)
    picker = picker_for(eps, clock, FakeProber(), probes_per_call=0)
    for i, (n, latency) in enumerate([(10, 1), (2, 50), (3, 20)]):
        picker.on_probe(i, rif(n, latency))
    rows = picker.pooled()
    assert [r["address"] for r in rows] == ["c:1", "b:1", "a:1"] and rows[2]["hot"]
    assert picker.explain().chosen is eps[2]
    assert picker.describe()["picks"]["picks"] == 0
