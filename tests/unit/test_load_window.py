"""An endpoint's load window: the latency histogram's percentiles, counts by
status and failures, and taking the window resets it."""

from __future__ import annotations

import pytest

from meshgrpc.proxy.endpoint import EndpointStats
from meshgrpc.proxy.load_window import BOUNDS, LoadWindow, percentile


def test_percentiles_are_within_the_histograms_precision():
    window = LoadWindow()
    for i in range(1, 1001):  # 1 ms .. 1000 ms, uniform
        window.record(True, i / 1000, 0)
    assert window.percentile(0.5) == pytest.approx(0.500, rel=0.13)
    assert window.percentile(0.99) == pytest.approx(0.990, rel=0.13)


def test_a_slow_tail_shows_in_p99_not_p50():
    window = LoadWindow()
    for _ in range(98):
        window.record(True, 0.002, 0)
    for _ in range(2):
        window.record(True, 0.250, 0)
    assert window.percentile(0.5) == pytest.approx(0.002, rel=0.13)
    assert window.percentile(0.99) == pytest.approx(0.250, rel=0.13)


def test_an_empty_window_has_no_percentiles():
    assert LoadWindow().percentile(0.5) is None
    assert percentile([0] * (len(BOUNDS) + 1), 0.99) is None


def test_latencies_past_the_last_bucket_are_reported_at_its_bound():
    window = LoadWindow()
    window.record(True, 3600.0, 0)
    assert window.percentile(0.5) == BOUNDS[-1]


def test_statuses_are_counted_by_name_and_failures_as_the_caller_says():
    window = LoadWindow()
    window.record(True, 0.001, 0)
    window.record(True, 0.001, 5)       # NOT_FOUND: not an endpoint failure
    window.record(False, 0.001, 14)     # UNAVAILABLE
    window.record(False, 0.001, None)   # a reset: no status
    window.record(False, 0.001, 99)     # a code gRPC does not define
    assert window.by_status() == {"OK": 1, "NOT_FOUND": 1, "UNAVAILABLE": 1, "NO_STATUS": 2}
    assert (window.calls, window.failures) == (5, 3)


def test_taking_the_window_starts_a_new_one():
    stats = EndpointStats()
    stats.window.record(True, 0.001, 0)
    taken = stats.take_window()
    assert taken.calls == 1 and stats.window.calls == 0
    assert stats.take_window().calls == 0
