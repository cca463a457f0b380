"""Registration leases on a fake clock: heartbeats keep them, silence expires them,
a newer registration takes over, restored ones get a fresh TTL, a broken stream
resumes its lease."""

from __future__ import annotations

import asyncio

import pytest

from meshapi.v1 import management_pb2
from meshgrpc.config.loader import parse_text
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.registry import Leases, Registry
from meshgrpc.controlplane.state import MeshState
from meshgrpc.controlplane.store import SqliteStore
from meshgrpc.errors import FailedPrecondition, NotFound


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coro):
    return asyncio.run(coro)


class SyncRegistry:
    """The registry's coroutines run to completion, one per call (the tests' clock is fake)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.leases = registry.leases

    def __getattr__(self, name):
        method = getattr(self.registry, name)
        return lambda *args, **kwargs: run(method(*args, **kwargs))


def make(tmp_path, ttl=10.0):
    clock = FakeClock()
    store = SqliteStore(str(tmp_path))
    controller = Controller(store, MeshState.empty())
    run(controller.apply(parse_text("clusters: [{name: web}]"), replace=False))
    return clock, store, controller, SyncRegistry(Registry(controller, store, ttl, clock))


def registered(controller) -> set[str]:
    return set(controller.state.registrations.get("web", {}))


INSTANCE = management_pb2.Instance(cluster="web", address="10.0.0.1:80")


def test_silence_for_the_ttl_expires_the_registration_and_commits_its_removal(tmp_path):
    clock, store, controller, registry = make(tmp_path)
    registry.register(INSTANCE)
    clock.advance(9.9)
    assert registry.sweep() == [] and registered(controller) == {"10.0.0.1:80"}
    clock.advance(0.1)
    assert registry.sweep() == [("web", "10.0.0.1:80")]
    assert registered(controller) == set()
    assert store.read().registrations == {}


def test_heartbeats_keep_the_lease(tmp_path):
    clock, _, controller, registry = make(tmp_path)
    lease = registry.register(INSTANCE)
    for _ in range(5):
        clock.advance(6)
        registry.heartbeat(lease)
        assert registry.sweep() == []
    assert registered(controller) == {"10.0.0.1:80"}


def test_release_at_stream_end_removes_at_once(tmp_path):
    _, _, controller, registry = make(tmp_path)
    registry.release(registry.register(INSTANCE))
    assert registered(controller) == set()


def test_a_newer_registration_takes_the_lease_over(tmp_path):
    clock, _, controller, registry = make(tmp_path)
    old = registry.register(INSTANCE)
    new = registry.register(INSTANCE)
    registry.release(old)                           # the old stream ending must not unregister
    assert registered(controller) == {"10.0.0.1:80"}
    with pytest.raises(NotFound):
        registry.heartbeat(old)
    registry.heartbeat(new)


def test_heartbeat_after_expiry_is_not_found(tmp_path):
    clock, _, _, registry = make(tmp_path)
    lease = registry.register(INSTANCE)
    clock.advance(11)
    registry.sweep()
    with pytest.raises(NotFound):
        registry.heartbeat(lease)


def test_registration_for_a_missing_cluster_is_refused_and_holds_no_lease(tmp_path):
    _, _, _, registry = make(tmp_path)
    with pytest.raises(FailedPrecondition):
        registry.register(management_pb2.Instance(cluster="nope", address="10.0.0.1:80"))
    assert len(registry.leases) == 0


def test_restored_registrations_get_a_fresh_ttl(tmp_path):
    clock, store, _, registry = make(tmp_path)
    registry.register(INSTANCE)
    # A restart: state and registrations come back from the store, with new leases.
    stored = store.read()
    controller = Controller(store, MeshState.from_stored(stored))
    restarted = Registry(controller, store, 10.0, clock)
    clock.advance(60)
    restarted.restore(stored.registrations)
    restarted = SyncRegistry(restarted)
    clock.advance(9)
    assert restarted.sweep() == []
    assert registered(controller) == {"10.0.0.1:80"}
    clock.advance(1)
    assert restarted.sweep() == [("web", "10.0.0.1:80")]


def test_leases_table_expires_exactly_at_the_deadline():
    leases = Leases(ttl=1.0)
    lease = leases.grant(("c", "a:1"), now=0.0)
    assert leases.expire(0.999) == []
    assert leases.renew(lease, now=0.5)
    assert leases.expire(1.4) == []
    assert leases.expire(1.5) == [("c", "a:1")]
    assert not leases.renew(lease, now=1.6)


def test_a_stream_that_breaks_resumes_its_lease_without_a_commit(tmp_path):
    _, _, controller, registry = make(tmp_path)
    lease = registry.register(INSTANCE)
    state = controller.state
    resumed = registry.register(INSTANCE, resume=lease.token)
    assert resumed == lease and controller.state is state     # nothing committed, nothing to push
    other = management_pb2.Instance(cluster="web", address="10.0.0.1:80", weight=7)
    fresh = registry.register(other, resume=lease.token)       # not the instance the lease holds
    assert fresh.token != lease.token
    assert controller.state.registrations["web"]["10.0.0.1:80"].weight == 7
