"""The etcd store against a real 3-member etcd: commits etcd refuses change
nothing and say why, a replica whose watch fell behind etcd's compacted history
reloads, and a control plane that cannot reach etcd says so."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from meshgrpc.config.loader import parse_document, parse_text
from meshgrpc.config.resources import CLUSTER
from meshgrpc.controlplane.controller import Controller
from meshgrpc.controlplane.etcd_client import EtcdClient
from meshgrpc.controlplane.etcd_store import PAGE, EtcdStore
from meshgrpc.errors import FailedPrecondition
from tests.support.procs import meshgrpc


async def _replica(cluster, prefix: str, follow: bool = True) -> tuple[EtcdStore, Controller]:
    store = EtcdStore(EtcdClient(cluster.endpoints.split(",")), prefix)
    controller = Controller(store, store.initial_state(await store.load()))
    if follow:
        store.follow(controller.adopt)
    return store, controller


async def _until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


def test_a_change_larger_than_etcd_takes_is_refused_saying_so_and_changes_nothing(etcd_cluster):
    async def main():
        store, controller = await _replica(etcd_cluster, f"/big-{uuid.uuid4().hex[:8]}")
        try:
            # etcd's default --max-txn-ops is 128: 200 clusters do not fit in one transaction.
            big = parse_document({"clusters": [{"name": f"c{i:03d}"} for i in range(200)]})
            with pytest.raises(FailedPrecondition) as refused:
                await controller.apply(big, replace=False)
            assert "max-txn-ops" in str(refused.value) and "too many operations" in str(refused.value)
            assert controller.state.configured[CLUSTER] == {}
            assert (await store.client.range_prefix(store.keys.prefix)).count == 0
        finally:
            await store.close()
    run(main())


def test_a_replica_behind_the_compacted_history_reloads_the_prefix(etcd_cluster):
    async def main():
        prefix = f"/compact-{uuid.uuid4().hex[:8]}"
        behind, late = await _replica(etcd_cluster, prefix, follow=False)   # loaded, not yet watching
        writer, controller = await _replica(etcd_cluster, prefix)
        try:
            for name in ("a", "b", "c"):
                await controller.apply(parse_text(f"clusters: [{{name: {name}}}]"), replace=False)
            await writer.client.compact(writer.mirror.revision)
            behind.follow(late.adopt)   # its watch starts from a compacted revision
            await _until(lambda: set(late.state.configured[CLUSTER]) == {"a", "b", "c"})
            assert late.state.versions == controller.state.versions
            await controller.apply(parse_text("clusters: [{name: d}]"), replace=False)   # and it follows on
            await _until(lambda: "d" in late.state.configured[CLUSTER])
        finally:
            await writer.close()
            await behind.close()
    run(main())


def test_a_control_plane_that_cannot_reach_etcd_exits_saying_so(tmp_path):
    proc = meshgrpc("control-plane", "--listen", "127.0.0.1:0", "--store", "etcd://127.0.0.1:1,127.0.0.1:2",
                    "--data-dir", str(tmp_path / "data"))
    assert proc.popen.wait(30) == 1
    proc.wait_for_line(r"etcd range failed on 127\.0\.0\.1:1, 127\.0\.0\.1:2 within 5s: UNAVAILABLE", 5)


def test_a_store_url_that_is_not_etcd_is_refused(tmp_path):
    proc = meshgrpc("control-plane", "--listen", "127.0.0.1:0", "--store", "postgres://db:5432",
                    "--data-dir", str(tmp_path / "data"))
    assert proc.popen.wait(20) == 2
    proc.wait_for_line(r"--store 'postgres://db:5432': expected sqlite \(the default\) or etcd://", 5)


def test_a_prefix_larger_than_one_page_loads_whole_at_one_revision(etcd_cluster):
    async def main():
        prefix = f"/paged-{uuid.uuid4().hex[:8]}"
        writer, controller = await _replica(etcd_cluster, prefix)
        try:
            for start in range(0, 600, 100):   # 600 clusters, over etcd's 128 operations per transaction
                batch = {"clusters": [{"name": f"c{i:03d}"} for i in range(start, start + 100)]}
                await controller.apply(parse_document(batch), replace=False)
            reader, loaded = await _replica(etcd_cluster, prefix, follow=False)
            assert len(loaded.state.configured[CLUSTER]) == 600 > PAGE
            assert loaded.state.versions == controller.state.versions
            await reader.close()
        finally:
            await writer.close()
    run(main())
