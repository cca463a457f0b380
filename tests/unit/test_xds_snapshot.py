"""Snapshots: packing once, consistency, digests, the hand-built wire bytes."""

import pytest

from meshapi.v1 import discovery_pb2, resources_pb2 as r
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, MESH_TYPES, pack
from meshgrpc.errors import ConfigError
from meshgrpc.xds import wire
from meshgrpc.xds.snapshot import Snapshot, mesh_digests
from tests.unit.xds_builders import mesh, route_config, snap


def test_body_plus_nonce_parses_to_the_response_protobuf_would_build():
    s = snap("v1", ["b", "a"], {"default": ["a", "b"]})
    for type_url in MESH_TYPES:
        parsed = discovery_pb2.DiscoveryResponse.FromString(s[type_url].body + wire.nonce_field("42"))
        expected = discovery_pb2.DiscoveryResponse(
            type_url=type_url, version_info="v1", nonce="42",
            resources=[pack(m) for _, m in sorted(s.resources(type_url).items())])
        assert parsed == expected


def test_varint_matches_protobuf_for_long_fields():
    name = "x" * 300  # a length needing a two-byte varint
    s = Snapshot.from_mesh(mesh([name]), {t: "1" for t in MESH_TYPES})
    parsed = discovery_pb2.DiscoveryResponse.FromString(s[CLUSTER].body)
    assert parsed.resources[0] == pack(r.Cluster(name=name))


def test_each_resource_is_packed_once_and_shared():
    s = snap("1", ["a"])
    assert s[CLUSTER].resources["a"].any_bytes is s[CLUSTER].resources["a"].any_bytes
    assert s[CLUSTER].body.count(s[CLUSTER].resources["a"].any_bytes) == 1


def test_versions_and_resources_by_name():
    s = snap("3", ["a", "b"])
    assert s.versions() == {t: "3" for t in MESH_TYPES}
    assert sorted(s.resources(ENDPOINTS)) == ["a", "b"]


def test_consistent_snapshot_has_no_errors():
    assert snap("1", ["a", "b"], {"r1": ["a"], "r2": ["a", "b"]}).consistency_errors() == []


def test_route_to_missing_cluster_is_inconsistent():
    m = mesh(["a"])
    m.routes.append(route_config("split", ["a", "ghost"]))
    assert Snapshot.from_mesh(m).consistency_errors() == ["route config 'split' references unknown cluster 'ghost'"]


def test_endpoint_set_for_missing_cluster_is_inconsistent():
    m = mesh(["a"])
    m.endpoints.append(r.EndpointSet(cluster="ghost"))
    assert Snapshot.from_mesh(m).consistency_errors() == ["endpoint set for unknown cluster 'ghost'"]


def test_digest_depends_on_content_not_version():
    one, two = snap("1", ["a"]), snap("2", ["a"])
    assert all(one.digest(t) == two.digest(t) for t in MESH_TYPES)
    changed = snap("1", ["a", "b"], {"default": ["a"]})
    assert changed.digest(CLUSTER) != one.digest(CLUSTER)
    assert changed.digest(ROUTES) == one.digest(ROUTES)
    assert mesh_digests(mesh(["a"])) == {t: one.digest(t) for t in MESH_TYPES}


def test_digest_ignores_order_in_the_file():
    m1, m2 = mesh(["a", "b"]), mesh(["a", "b"])
    m2.clusters.reverse()
    assert Snapshot.from_mesh(m1).digest(CLUSTER) == Snapshot.from_mesh(m2).digest(CLUSTER)


def test_missing_version_defaults_to_the_digest():
    s = Snapshot.from_mesh(mesh(["a"]), {ROUTES: "7"})
    assert s.versions()[CLUSTER] == s.digest(CLUSTER)[:16] and s.versions()[ROUTES] == "7"


def test_duplicate_names_are_refused_with_their_path():
    m = mesh(["a"])
    m.clusters.append(r.Cluster(name="a"))
    with pytest.raises(ConfigError, match=r"clusters\[1\]\.name: duplicate name 'a'"):
        Snapshot.from_mesh(m)


def test_snapshot_is_read_only():
    s = snap("1", ["a"])
    with pytest.raises(TypeError):
        s[CLUSTER].resources["b"] = None


def test_body_cache_builds_once_and_is_bounded():
    cache, builds = wire.BodyCache(capacity=2), []
    for key in ["a", "a", "b", "c", "a"]:
        cache.get(key, lambda: builds.append(key) or key.encode())
    assert builds == ["a", "b", "c", "a"] and len(cache) == 2
