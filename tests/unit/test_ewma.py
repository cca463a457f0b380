"""Peak-EWMA maths: peaks, decay towards samples in wall time, idle decay."""

from __future__ import annotations

import math

import pytest

from meshgrpc.proxy import ewma


def test_a_sample_above_the_estimate_replaces_it():
    assert ewma.observe(0.010, at=0.0, sample=0.050, now=0.001, decay=10.0) == 0.050


def test_a_sample_below_pulls_by_elapsed_time():
    # one time constant later, the estimate has moved 1 - 1/e of the way
    got = ewma.observe(0.050, at=0.0, sample=0.010, now=10.0, decay=10.0)
    assert got == pytest.approx(0.010 + 0.040 / math.e)


def test_pull_depends_on_time_not_on_the_number_of_samples():
    many, t = 0.050, 0.0
    for _ in range(1000):  # 1000 samples over one second
        many = ewma.observe(many, t, 0.010, t + 0.001, 10.0)
        t += 0.001
    one = ewma.observe(0.050, 0.0, 0.010, 1.0, 10.0)  # one sample after one second
    assert many == pytest.approx(one, rel=1e-6)


def test_same_instant_sample_below_changes_nothing():
    assert ewma.observe(0.050, at=5.0, sample=0.001, now=5.0, decay=10.0) == 0.050


def test_idle_estimate_decays_towards_zero():
    assert ewma.current(0.030, at=0.0, now=0.0, decay=10.0) == 0.030
    assert ewma.current(0.030, at=0.0, now=10.0, decay=10.0) == pytest.approx(0.030 / math.e)
    assert ewma.current(0.030, at=0.0, now=100.0, decay=10.0) < 0.030 * 1e-4


def test_failure_without_response_only_raises():
    assert ewma.failed(0.030, 0.0, 0.0001, 0.5, 10.0) == (0.030, 0.0)  # fast failure: no credit
    assert ewma.failed(0.030, 0.0, 2.0, 0.5, 10.0) == (2.0, 0.5)  # a timeout: a peak
    decayed = ewma.current(0.030, 0.0, 30.0, 10.0)
    assert ewma.failed(0.030, 0.0, decayed * 2, 30.0, 10.0) == (decayed * 2, 30.0)
