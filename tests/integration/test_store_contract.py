"""What every store keeps (SQLite and a real 3-member etcd): a commit comes back
whole after a restart, None deletes and absent keys stay, and a commit planned on
a state that is no longer current is refused with nothing of it applied."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.config.resources import CLUSTER, ROUTES
from meshgrpc.controlplane.etcd_client import EtcdClient
from meshgrpc.controlplane.etcd_store import EtcdStore
from meshgrpc.controlplane.store import Commit, Conflict, SqliteStore


@pytest.fixture(params=["sqlite", "etcd"])
def open_store(request, tmp_path):
    """A function that opens the store (again, after a 'restart') on the same data."""
    if request.param == "sqlite":
        return lambda: SqliteStore(str(tmp_path))
    cluster = request.getfixturevalue("etcd_cluster")
    prefix = f"/contract-{uuid.uuid4().hex[:8]}"
    return lambda: EtcdStore(EtcdClient(cluster.endpoints.split(",")), prefix)


async def _opened(open_store):
    store = open_store()
    state = store.initial_state(await store.load())
    store.follow(lambda newer: None)   # as the control plane does: commits return the state caught up
    return store, state


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 30))


def test_what_is_committed_comes_back_after_a_restart(open_store):
    async def main():
        store, state = await _opened(open_store)
        instance = management_pb2.Instance(cluster="a", address="127.0.0.1:1", weight=2, metadata={"k": "v"})
        lease = await store.grant_lease(10)
        cluster, route = resources_pb2.Cluster(name="a"), resources_pb2.RouteConfig(name="r")
        await store.commit(Commit(resources={(CLUSTER, "a"): cluster, (ROUTES, "r"): route}, config_digest="abc"),
                           state, state)
        state = await store.commit(Commit(registrations={("a", "127.0.0.1:1"): instance}, lease=lease), state, state)
        await store.close()
        store, _ = await _opened(open_store)
        loaded = await store.load()
        assert loaded.resources == {(CLUSTER, "a"): cluster, (ROUTES, "r"): route}
        assert loaded.registrations == {("a", "127.0.0.1:1"): instance}
        assert loaded.config_digest == "abc"
        await store.close()
    run(main())


def test_none_deletes_and_absent_keys_are_untouched(open_store):
    async def main():
        store, state = await _opened(open_store)
        two = {(CLUSTER, "a"): resources_pb2.Cluster(name="a"), (CLUSTER, "b"): resources_pb2.Cluster(name="b")}
        state = await store.commit(Commit(resources=two, config_digest="one"), state, state)
        state = await store.commit(Commit(resources={(CLUSTER, "a"): None}), state, state)
        await store.close()
        store, _ = await _opened(open_store)
        loaded = await store.load()
        assert set(loaded.resources) == {(CLUSTER, "b")} and loaded.config_digest == "one"
        await store.close()
    run(main())


def test_a_commit_planned_on_an_old_state_is_refused_when_another_replica_wrote_first(etcd_cluster):
    # (A SQLite store has one writer, its process: it has no other writer to race.)
    prefix = f"/contract-{uuid.uuid4().hex[:8]}"

    def open_store():
        return EtcdStore(EtcdClient(etcd_cluster.endpoints.split(",")), prefix)

    async def main():
        store, base = await _opened(open_store)
        other, other_state = await _opened(open_store)
        await other.commit(Commit(resources={(CLUSTER, "x"): resources_pb2.Cluster(name="x")}), other_state,
                           other_state)
        with pytest.raises(Conflict) as refused:
            await store.commit(Commit(resources={(CLUSTER, "y"): resources_pb2.Cluster(name="y")}), base, base)
        assert f"planned at {base.revision}" in str(refused.value)
        assert (CLUSTER, "y") not in (await store.load()).resources
        await store.close()
        await other.close()
    run(main())
