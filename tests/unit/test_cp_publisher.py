"""Publishing: debounce decisions on a fake clock, version bumps only on content
change, versions committed before the snapshot is set."""

from __future__ import annotations

import asyncio
import dataclasses

from meshgrpc.config.loader import parse_text
from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, LISTENER, ROUTES
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.publisher import Debouncer, Publisher, next_versions
from meshgrpc.controlplane.state import MeshState
from meshgrpc.controlplane.store import SqliteStore, TypeVersion
from meshgrpc.xds.cache import SnapshotCache


def test_nothing_pending_means_nothing_due():
    d = Debouncer(0.1)
    assert d.due_at() is None and not d.take(100.0)


def test_a_burst_inside_the_window_makes_one_push_after_it_goes_quiet():
    d = Debouncer(0.1)
    for i in range(100):               # 100 changes within 99 ms
        d.changed(10.0 + i * 0.001)
        assert not d.take(10.0 + i * 0.001)
    assert d.due_at() == 10.099 + 0.1
    assert not d.take(10.19)
    assert d.take(10.2)
    assert not d.take(10.3)            # taken: nothing pending any more


def test_a_steady_trickle_is_pushed_at_the_cap_of_ten_windows():
    d = Debouncer(0.1)
    t = 0.0
    while not d.take(t):
        d.changed(t)
        t = round(t + 0.05, 3)         # a change every 50 ms never leaves a quiet window
    assert t == 1.0                    # 10 x 100 ms after the first change


def test_versions_bump_only_for_types_whose_digest_changed():
    current = {CLUSTER: TypeVersion("4", "a"), ENDPOINTS: TypeVersion("9", "b")}
    bumped = next_versions(current, {CLUSTER: "a", ENDPOINTS: "changed", ROUTES: "new"})
    assert bumped == {ENDPOINTS: TypeVersion("10", "changed"), ROUTES: TypeVersion("1", "new")}


class RecordingStore(SqliteStore):
    """The real store, also recording the order of version records relative to cache sets."""

    def __init__(self, path, events):
        super().__init__(path)
        self.events = events

    def record_versions(self, versions):
        super().record_versions(versions)
        self.events.append(("commit", dict(versions)))


def test_publish_commits_versions_before_the_snapshot_is_set_and_skips_no_ops(tmp_path):
    async def scenario():
        events = []
        store = RecordingStore(str(tmp_path), events)
        cache = SnapshotCache()
        cache.add_listener(lambda: events.append(("set", cache.current.versions())))
        controller = Controller(store, MeshState.empty())
        await controller.apply(parse_text("clusters: [{name: a}]"), replace=False)
        publisher = Publisher(lambda: controller.state, store.record_versions, cache, {}, window=0.1)
        events.clear()
        assert publisher.publish()
        assert [e[0] for e in events] == ["commit", "set"]
        assert cache.current.versions()[CLUSTER] == "1"
        assert not publisher.publish()           # same content: no new version, no push
        await controller.apply(parse_text("clusters: [{name: b}]"), replace=False)
        assert publisher.publish()
        assert cache.current.versions() == {CLUSTER: "2", ENDPOINTS: "1", ROUTES: "1", LISTENER: "1", AUTHZ: "1"}
        assert store.read().versions[CLUSTER].version == "2"

    asyncio.run(scenario())


def test_versions_the_store_derives_are_served_as_they_are_and_unsettled_states_wait():
    async def scenario():
        cache = SnapshotCache()
        recorded = []
        current = [dataclasses.replace(MeshState.empty(), versions={CLUSTER: "7", ENDPOINTS: "9", ROUTES: "3", LISTENER: "2", AUTHZ: "1"})]
        publisher = Publisher(lambda: current[0], recorded.append, cache, {}, window=0.1)
        assert publisher.publish()
        assert cache.current.versions() == {CLUSTER: "7", ENDPOINTS: "9", ROUTES: "3", LISTENER: "2", AUTHZ: "1"} and recorded == []
        assert not publisher.publish()                     # same versions: nothing new to serve
        current[0] = dataclasses.replace(current[0], versions={CLUSTER: "7", ENDPOINTS: "12", ROUTES: "3", LISTENER: "2", AUTHZ: "1"},
                                         settled=False)
        assert not publisher.publish()                     # a lease expired, not versioned yet
        current[0] = dataclasses.replace(current[0], settled=True)
        assert publisher.publish() and cache.current.versions()[ENDPOINTS] == "12"

    asyncio.run(scenario())
