"""Convergence: a committed change is timed to the last ACK of the streams it
had to reach; NACKs and disconnects stop the wait; the tracker is bounded."""

from __future__ import annotations

import pytest

from meshgrpc.controlplane.convergence import ConvergenceTracker
from tests.support.clock import FakeClock


def tracker(clock, **kw):
    seen, abandoned = [], []
    return ConvergenceTracker(seen.append, lambda: abandoned.append(1), clock, **kw), seen, abandoned


def test_a_change_converges_at_the_last_ack_of_the_streams_it_had_to_reach():
    clock = FakeClock(100.0)
    t, seen, _ = tracker(clock)
    t.published(99.5, {"a", "b"})
    clock.advance(0.2)
    t.answered("a", synced=True)
    assert seen == []
    clock.advance(0.3)
    t.answered("b", synced=False)    # answered, but not in sync yet (e.g. routes still to come)
    assert seen == []
    t.answered("b", synced=True)
    assert seen == [pytest.approx(1.0)] and t.pending == 0


def test_a_change_no_stream_had_to_receive_is_not_timed():
    t, seen, _ = tracker(FakeClock())
    t.published(0.0, set())
    assert (seen, t.pending) == ([], 0)


def test_nacks_and_disconnects_end_the_wait_for_that_stream():
    clock = FakeClock(10.0)
    t, seen, _ = tracker(clock)
    t.published(10.0, {"a", "b", "c"})
    clock.advance(1.0)
    t.answered("a", synced=False, nacked=True)
    t.gone("b")
    assert seen == []
    t.answered("c", synced=True)
    assert seen == [pytest.approx(1.0)]


def test_a_superseded_change_converges_with_the_newer_one():
    clock = FakeClock(0.0)
    t, seen, _ = tracker(clock)
    t.published(0.0, {"a"})
    clock.advance(1.0)
    t.published(1.0, {"a"})
    clock.advance(1.0)
    t.answered("a", synced=True)
    assert sorted(seen) == [pytest.approx(1.0), pytest.approx(2.0)]


def test_the_tracker_is_bounded_in_changes_and_in_age():
    clock = FakeClock(0.0)
    t, seen, abandoned = tracker(clock, max_pending=2, max_age_s=5.0)
    for i in range(3):
        t.published(float(i), {"slow"})
    assert (t.pending, len(abandoned)) == (2, 1)
    t.published(3.0, {"x"})
    clock.now = 9.0
    t.answered("x", synced=True)     # the x change converged; the old ones are past 5 s
    assert seen == [pytest.approx(6.0)] and len(abandoned) == 3 and t.pending == 0
