"""SnapshotCache: consistent snapshots only, change notification with deadlines."""

import asyncio

import pytest

from meshgrpc.errors import ConfigError
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.snapshot import Snapshot
from tests.unit.xds_builders import mesh, route_config, snap


def inconsistent():
    m = mesh(["a"])
    m.routes.append(route_config("r", ["ghost"]))
    return Snapshot.from_mesh(m)


def test_set_refuses_an_inconsistent_snapshot_and_keeps_the_current_one():
    cache = SnapshotCache()
    good = snap("1", ["a"])
    cache.set(good)
    with pytest.raises(ConfigError, match="ghost"):
        cache.set(inconsistent())
    assert cache.current is good


def test_wait_for_change_returns_at_once_when_already_changed():
    async def main():
        cache = SnapshotCache()
        cache.set(s := snap("1", ["a"]))
        assert await cache.wait_for_change(None, timeout=5) is s
    asyncio.run(main())


def test_wait_for_change_wakes_on_set():
    async def main():
        cache = SnapshotCache()
        cache.set(first := snap("1", ["a"]))
        waiter = asyncio.create_task(cache.wait_for_change(first, timeout=5))
        await asyncio.sleep(0)
        assert not waiter.done()
        cache.set(second := snap("2", ["a"]))
        assert await asyncio.wait_for(waiter, 1) is second
    asyncio.run(main())


def test_wait_for_change_gives_up_after_its_timeout():
    async def main():
        cache = SnapshotCache()
        cache.set(first := snap("1", ["a"]))
        assert await cache.wait_for_change(first, timeout=0.01) is first
    asyncio.run(main())


def test_listeners_are_called_on_set_until_removed():
    cache, calls = SnapshotCache(), []
    remove = cache.add_listener(lambda: calls.append(1))
    cache.set(snap("1", ["a"]))
    remove()
    cache.set(snap("2", ["a"]))
    assert calls == [1]
