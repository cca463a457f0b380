"""SqliteStore: what is written comes back, atomically, and survives a killed process.
(The contract every store keeps is in tests/integration/test_store_contract.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES
from meshgrpc.controlplane.store import Commit, SqliteStore, TypeVersion


def _cluster(name: str, policy=resources_pb2.Cluster.ROUND_ROBIN) -> resources_pb2.Cluster:
    return resources_pb2.Cluster(name=name, lb_policy=policy)


def test_round_trip_of_every_kind_of_record(tmp_path):
    store = SqliteStore(str(tmp_path))
    instance = management_pb2.Instance(cluster="a", address="127.0.0.1:1", weight=2, metadata={"k": "v"})
    store.write(Commit(
        resources={(CLUSTER, "a"): _cluster("a"), (ROUTES, "r"): resources_pb2.RouteConfig(name="r")},
        registrations={("a", "127.0.0.1:1"): instance},
        versions={CLUSTER: TypeVersion("3", "d1")},
        config_digest="abc"))
    asyncio.run(store.close())

    loaded = SqliteStore(str(tmp_path)).read()
    assert loaded.resources == {(CLUSTER, "a"): _cluster("a"), (ROUTES, "r"): resources_pb2.RouteConfig(name="r")}
    assert loaded.registrations == {("a", "127.0.0.1:1"): instance}
    assert loaded.versions == {CLUSTER: TypeVersion("3", "d1")}
    assert loaded.config_digest == "abc"


def test_none_deletes_and_absent_keys_are_untouched(tmp_path):
    store = SqliteStore(str(tmp_path))
    store.write(Commit(resources={(CLUSTER, "a"): _cluster("a"), (CLUSTER, "b"): _cluster("b")},
                        registrations={("a", "h:1"): management_pb2.Instance(cluster="a", address="h:1")},
                        config_digest="one"))
    store.write(Commit(resources={(CLUSTER, "a"): None}, registrations={("a", "h:1"): None}))
    loaded = store.read()
    assert set(loaded.resources) == {(CLUSTER, "b")}
    assert loaded.registrations == {}
    assert loaded.config_digest == "one"


def test_a_failing_commit_leaves_nothing_of_itself(tmp_path):
    store = SqliteStore(str(tmp_path))
    store.write(Commit(resources={(CLUSTER, "a"): _cluster("a")}))

    class Broken:
        def SerializeToString(self, deterministic=False):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        # The first write succeeds inside the transaction, the second fails: neither may stay.
        store.write(Commit(resources={(CLUSTER, "b"): _cluster("b"), (ENDPOINTS, "a"): Broken()}))
    assert set(store.read().resources) == {(CLUSTER, "a")}
    store.write(Commit(resources={(CLUSTER, "c"): _cluster("c")}))  # the store is still usable
    assert set(store.read().resources) == {(CLUSTER, "a"), (CLUSTER, "c")}


def test_the_store_uses_wal_with_full_sync(tmp_path):
    store = SqliteStore(str(tmp_path))
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_commit_survives_sigkill_right_after_it_returns(tmp_path):
    # A child commits, then kills itself with SIGKILL before any clean shutdown.
    script = textwrap.dedent(f"""
        import os, signal
        from meshapi.v1 import resources_pb2
        from meshgrpc.config.resources import CLUSTER
        from meshgrpc.controlplane.store import Commit, SqliteStore, TypeVersion
        store = SqliteStore({str(tmp_path)!r})
        for i in range(20):
            store.write(Commit(resources={{(CLUSTER, f"c{{i}}"): resources_pb2.Cluster(name=f"c{{i}}")}},
                                versions={{CLUSTER: TypeVersion(str(i + 1), f"d{{i}}")}}))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    child = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert child.returncode == -signal.SIGKILL
    loaded = SqliteStore(str(tmp_path)).read()
    assert len(loaded.resources) == 20
    assert loaded.versions[CLUSTER] == TypeVersion("20", "d19")
    assert os.path.exists(os.path.join(tmp_path, SqliteStore.FILENAME))
