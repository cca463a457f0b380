"""The etcd store's pure parts: key layout, the mirror kept from watch events,
versions from revisions, and the endpoints version left unsettled by a lease that
expired until a replica bumps it."""

from __future__ import annotations

from etcdapi import rpc_pb2
from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.config.resources import AUTHZ, CLUSTER, ENDPOINTS, LISTENER, ROUTES
from meshgrpc.controlplane.etcd_client import prefix_end
from meshgrpc.controlplane.etcd_mirror import Keys, Mirror, fingerprint_bytes
from meshgrpc.controlplane.etcd_store import parse_store_url
from meshgrpc.controlplane.store import Commit

KEYS = Keys("/mesh")


def put(key: bytes, value: bytes, revision: int, lease: int = 0) -> rpc_pb2.Event:
    return rpc_pb2.Event(type=rpc_pb2.Event.PUT, kv=rpc_pb2.KeyValue(key=key, value=value, mod_revision=revision,
                                                                     lease=lease))


def delete(key: bytes, revision: int) -> rpc_pb2.Event:
    return rpc_pb2.Event(type=rpc_pb2.Event.DELETE, kv=rpc_pb2.KeyValue(key=key, mod_revision=revision))


def instance(address: str) -> management_pb2.Instance:
    return management_pb2.Instance(cluster="web", address=address)


def registration(address: str, revision: int, lease: int = 7) -> rpc_pb2.Event:
    return put(KEYS.registration("web", address), instance(address).SerializeToString(deterministic=True),
               revision, lease)


def test_keys_round_trip_names_with_slashes_and_odd_characters():
    for type_url, name in ((CLUSTER, "a/b"), (ROUTES, "r%20x"), (ENDPOINTS, "ünï")):
        assert KEYS.parse(KEYS.resource(type_url, name)) == ("resource", (type_url, name))
    assert KEYS.parse(KEYS.registration("c/1", "[::1]:80")) == ("registration", ("c/1", "[::1]:80"))
    assert KEYS.parse(b"/mesh/something-else") == ("", ())


def test_prefix_end_selects_exactly_the_prefix():
    assert prefix_end(b"/mesh/") == b"/mesh0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


def test_versions_are_the_revisions_of_the_type_heads_the_same_for_any_replica():
    events = [put(KEYS.resource(CLUSTER, "web"), resources_pb2.Cluster(name="web").SerializeToString(), 5),
              put(KEYS.type_head(CLUSTER), b"", 5), put(KEYS.head, b"id-1", 5)]
    replicas = [Mirror(KEYS), Mirror(KEYS)]
    replicas[0].apply(5, events)
    replicas[1].load(5, [e.kv for e in events])           # one watched, one loaded at start-up
    states = [m.state() for m in replicas]
    assert states[0].versions == states[1].versions == {CLUSTER: "5", ENDPOINTS: "0", ROUTES: "0", LISTENER: "0", AUTHZ: "0"}
    assert states[0].revision == states[1].revision == 5
    assert "web" in states[0].configured[CLUSTER]


def test_a_registration_deleted_by_lease_expiry_leaves_the_state_unsettled_until_a_bump():
    mirror = Mirror(KEYS)
    mirror.apply(3, [registration("10.0.0.1:80", 3)])
    mirror.apply(3, [put(KEYS.type_head(ENDPOINTS), fingerprint_bytes(mirror.fingerprint), 3)])
    assert mirror.settled and mirror.leases[("web", "10.0.0.1:80")] == 7
    mirror.apply(9, [delete(KEYS.registration("web", "10.0.0.1:80"), 9)])   # etcd expired the lease
    assert not mirror.state().settled and mirror.state().registrations == {}
    mirror.apply(10, [put(KEYS.type_head(ENDPOINTS), fingerprint_bytes(mirror.fingerprint), 10)])
    assert mirror.state().settled and mirror.state().versions[ENDPOINTS] == "10"


def test_the_fingerprint_a_commit_records_is_the_one_its_events_lead_to():
    mirror = Mirror(KEYS)
    mirror.apply(2, [registration("10.0.0.1:80", 2), registration("10.0.0.2:80", 2)])
    change = Commit(registrations={("web", "10.0.0.3:80"): instance("10.0.0.3:80"), ("web", "10.0.0.1:80"): None})
    expected = mirror.fingerprint_after(change, set())
    mirror.apply(3, [registration("10.0.0.3:80", 3), delete(KEYS.registration("web", "10.0.0.1:80"), 3)])
    assert mirror.fingerprint == expected
    assert mirror.fingerprint_after(Commit(), {"web"}) == 0   # the cluster deleted takes every registration


def test_store_urls_name_every_endpoint():
    assert parse_store_url("etcd://a:2379,b:2379") == ["a:2379", "b:2379"]
    for bad in ("etcd://", "etcd://a", "http://a:1", "a:1"):
        try:
            parse_store_url(bad)
        except ValueError as e:
            assert bad in str(e)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_the_mirror_shows_where_it_stands():
    mirror = Mirror(KEYS)
    mirror.apply(4, [registration("10.0.0.1:80", 4)])
    assert repr(mirror) == ("Mirror('/mesh/' revision=4 head=0 {'clusters': 0, 'endpoints': 0, 'routes': 0, 'listeners': 0, 'authorization_policies': 0}"
                            " registrations=1 settled=False)")
