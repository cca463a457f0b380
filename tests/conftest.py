"""Fixtures shared by the suites: a real etcd cluster per test module, and the
store a control plane under test runs on (SQLite or etcd), parametrized."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tests.support import etcd


@pytest.fixture(scope="module")
def etcd_cluster():
    """Three etcd members on loopback, shared by the tests of one module (each
    test works under its own key prefix), stopped by PID at the end."""
    if not etcd.available():
        pytest.fail(f"etcd is not installed at {etcd.ETCD}: `make test` installs Debian's etcd-server")
    cluster = etcd.EtcdCluster().start()
    yield cluster
    cluster.stop()


@dataclasses.dataclass(frozen=True)
class Backing:
    """Where a control plane keeps the mesh: the flags that say so, the same for
    every process of a test (a restart finds what the previous one committed)."""

    kind: str
    args: tuple[str, ...]
    cluster: etcd.EtcdCluster | None = None


@pytest.fixture(params=["sqlite", "etcd"])
def backing(request, tmp_path) -> Backing:
    if request.param == "sqlite":
        return Backing("sqlite", ("--data-dir", str(tmp_path / "data")))
    cluster = request.getfixturevalue("etcd_cluster")
    prefix = f"/test-{uuid.uuid4().hex[:12]}"
    # The data dir still holds the control plane's CA and tokens.
    return Backing("etcd", ("--store", cluster.url(), "--etcd-prefix", prefix, "--data-dir", str(tmp_path / "data")),
                   cluster)
