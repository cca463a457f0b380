"""meshgrpc.orca's recorder and CPU sampler, on a fake clock: requests in flight,
the latency median, the sliding rates, the application's figures, pausing, and
the OpenRcaService report interval."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration
from xds.service.orca.v3.orca_pb2 import OrcaLoadReportRequest

from meshgrpc.orca.cpu import ProcessCpu, process_cpu_seconds
from meshgrpc.orca.recorder import LatencyByRif, LoadRecorder, SlidingRate
from meshgrpc.orca.service import interval_of
from tests.support.clock import FakeClock


class FakeCpu:
    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def utilization(self) -> float:
        return self.value


def recorder(clock: FakeClock, **kw) -> LoadRecorder:
    return LoadRecorder(clock=clock, cpu=FakeCpu(0.25), **kw)


def test_requests_in_flight_and_the_latency_a_call_arriving_now_may_expect():
    clock = FakeClock()
    r = recorder(clock)
    assert "latency_ms" not in r.report().named_metrics  # nothing finished yet
    first = r.started()  # arrives at rif 0
    clock.advance(0.010)
    r.finished(first, ok=True)
    assert r.report().named_metrics["latency_ms"] == pytest.approx(10.0)
    queued = [r.started() for _ in range(4)]  # arrive at rif 0, 1, 2, 3
    assert r.report().named_metrics["rif"] == 4.0
    # Nobody at rif 4 has finished: the nearest level (0, 10 ms), scaled by 5 calls ahead.
    assert r.report().named_metrics["latency_ms"] == pytest.approx(50.0)
    for latency, start in zip((0.010, 0.020, 0.030, 0.040), queued):
        clock.now = start[0] + latency
        r.finished(start, ok=True)
    assert r.report().named_metrics["rif"] == 0.0
    assert r.report().named_metrics["latency_ms"] == pytest.approx(10.0)  # the level-0 calls' median


def test_latency_by_rif_takes_the_median_of_each_level_and_scales_from_the_nearest():
    latency = LatencyByRif(samples=3, max_rif=8)
    assert latency.estimate(0) is None
    for seconds in (0.010, 0.030, 0.020, 0.500):  # level 2 keeps the last 3: 30, 20, 500 ms
        latency.add(2, seconds)
    assert latency.estimate(2) == pytest.approx(0.030)
    assert latency.estimate(5) == pytest.approx(0.030 * 6 / 3)
    assert latency.estimate(0) == pytest.approx(0.030 / 3)
    latency.add(100, 1.0)  # beyond max_rif: the last level
    assert latency.estimate(50) == pytest.approx(1.0)


def test_qps_and_eps_over_a_sliding_window():
    clock = FakeClock()
    r = recorder(clock, window=1.0)
    for i in range(100):  # 100 calls in one second, every fourth failing
        r.finished(r.started(), ok=i % 4 != 0)
        clock.advance(0.01)
    report = r.report()
    assert (report.rps_fractional, report.eps) == (pytest.approx(100.0), pytest.approx(25.0))
    clock.advance(0.5)  # half of that second is still in the window
    assert r.qps() == pytest.approx(50.0)
    clock.advance(2.0)
    assert r.qps() == 0.0


def test_sliding_rate_weighs_the_previous_bucket_by_its_overlap():
    rate = SlidingRate(1.0, now=0.0)
    for t in (0.1, 0.2, 0.3, 0.4):
        rate.add(t)
    rate.add(1.5)
    assert rate.rate(1.5) == pytest.approx(1 + 4 * 0.5)


def test_application_figures_go_into_every_report():
    r = recorder(FakeClock())
    r.set_utilization(0.4)
    r.set_named("queue", 7)
    report = r.report()
    assert (report.application_utilization, report.cpu_utilization) == (pytest.approx(0.4), 0.25)
    assert report.named_metrics["queue"] == 7.0
    r.set_utilization(-1)
    assert r.report().application_utilization == 0.0


def test_paused_recorder_reports_nothing_but_keeps_counting():
    clock = FakeClock()
    r = recorder(clock)
    r.pause()
    r.finished(r.started(), ok=True)
    assert r.report() is None
    r.resume()
    assert r.report().rps_fractional == pytest.approx(1.0)


def test_cpu_utilization_is_cpu_time_over_wall_time_per_core():
    clock = FakeClock()
    used = [10.0]
    cpu = ProcessCpu(clock=clock, read=lambda: used[0], cores=2, min_interval=0.5)
    assert cpu.utilization() == 0.0  # no interval yet
    clock.advance(1.0)
    used[0] = 11.0  # one core-second in one second on two cores
    assert cpu.utilization() == pytest.approx(0.5)
    clock.advance(0.1)
    used[0] = 20.0
    assert cpu.utilization() == pytest.approx(0.5)  # within min_interval: the last figure


def test_this_process_cpu_seconds_come_from_proc():
    first = process_cpu_seconds()
    sum(i * i for i in range(300_000))  # some work
    assert process_cpu_seconds() >= first > 0.0


def test_report_interval_is_raised_to_the_minimum_and_defaults_when_unset():
    assert interval_of(OrcaLoadReportRequest()) == 1.0
    assert interval_of(OrcaLoadReportRequest(report_interval=Duration(nanos=10_000_000))) == 0.1
    assert interval_of(OrcaLoadReportRequest(report_interval=Duration(seconds=5))) == 5.0
