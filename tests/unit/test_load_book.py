"""The control plane's load book: a bounded window per proxy, proxies forgotten
when their stream ends, a bound on reporting proxies, and time series that
spread each report over the time it covers."""

from __future__ import annotations

import pytest

from meshapi.v1 import load_pb2
from meshgrpc.config.specs import duration
from meshgrpc.controlplane.load_book import LoadBook
from meshgrpc.errors import ResourceExhausted
from tests.support.clock import FakeClock


def report(window_s: float, calls: int, p50: float = 0.002, p99: float = 0.010, address: str = "a:1",
           cluster: str = "svc") -> load_pb2.LoadReport:
    endpoint = load_pb2.EndpointLoad(address=address, calls=calls, latency_p50=duration(p50),
                                     latency_p99=duration(p99), rtt_estimate=duration(p50), health="HEALTHY")
    return load_pb2.LoadReport(window=duration(window_s), clusters=[load_pb2.ClusterLoad(name=cluster,
                                                                                          endpoints=[endpoint])])


def test_each_proxy_keeps_a_fixed_window_of_reports():
    clock = FakeClock(10_000.0)
    book = LoadBook(interval=2.0, clock=clock, history_s=10.0)
    window = book.open("p1", "z")
    for i in range(8):
        clock.advance(2.0)
        book.add(window, report(2.0, i))
    assert [r.endpoints[0].calls for r in window.reports] == [3, 4, 5, 6, 7]   # 10 s / 2 s
    assert window.latest.endpoints[0].calls == 7


def test_a_proxy_whose_stream_ends_is_forgotten_unless_it_reconnected_first():
    book = LoadBook(interval=2.0, clock=FakeClock())
    old = book.open("p1", "")
    new = book.open("p1", "")      # the proxy reconnected before the old stream was noticed dead
    book.close(old)
    assert book.proxies() == [new]
    book.close(new)
    assert book.proxies() == [] and len(book) == 0


def test_reports_older_than_three_intervals_do_not_describe_now():
    clock = FakeClock()
    book = LoadBook(interval=2.0, clock=clock)
    window = book.open("p1", "")
    book.add(window, report(2.0, 10))
    clock.advance(6.0)
    assert len(book.current()) == 1
    clock.advance(0.1)
    assert book.current() == []


def test_past_the_bound_on_proxies_a_new_one_is_refused_and_a_known_one_is_not():
    book = LoadBook(interval=2.0, clock=FakeClock(), max_proxies=2)
    book.open("p1", "")
    book.open("p2", "")
    with pytest.raises(ResourceExhausted, match="2 proxies already report"):
        book.open("p3", "")
    book.open("p2", "")


def test_series_spread_a_report_over_the_slots_it_covers():
    clock = FakeClock(1000.0)
    book = LoadBook(interval=2.0, clock=clock, history_s=20.0)
    window = book.open("p1", "")
    clock.now = 1003.0
    book.add(window, report(2.0, 20))        # covers [1001, 1003]: half in slot 1000, half in 1002
    clock.now = 1005.0
    book.add(window, report(2.0, 40, p99=0.050))   # covers [1003, 1005]
    clock.now = 1006.5
    points = {p["t"]: p["endpoints"].get("a:1") for p in book.series.points("svc", clock())}
    assert points[1000.0]["calls_per_s"] == pytest.approx(5.0)      # 10 calls in 2 s
    assert points[1002.0]["calls_per_s"] == pytest.approx(15.0)     # 10 + 20 calls
    assert points[1004.0]["calls_per_s"] == pytest.approx(10.0)     # the other 20
    assert points[1004.0]["p99_s"] == pytest.approx(0.050)
    assert 1006.0 not in points                                      # not finished yet
    assert len(points) == 10                                         # 20 s of 2 s slots
    clock.now = 1040.0
    assert all(not p["endpoints"] for p in book.series.points("svc", clock()))   # aged out
